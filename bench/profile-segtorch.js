#!/usr/bin/env node
// bench/profile-segtorch: one architecture's training steps or predictions under SEGTORCH_PROFILE
// (libtorch's profiler, one Chrome trace per native job), at bench/suite's settings and segtorch's
// defaults, then bench/op_profile.py's summary of the measured jobs (warm-up jobs left out).
//   usage: node bench/profile-segtorch.js ARCH[/BACKBONE] train|infer [--steps 3] [--warmup 2]
//          [--addon path/segtorch.node] [--json out.json]
// The addon comes from SEGTORCH_ADDON (e.g. build-lt2's, built against PyPI torch 2.x, to set
// beside bench/op_profile.py's profile of the PyTorch twin under the same libtorch).
'use strict'
const { spawnSync } = require('child_process')
const fs = require('fs')
const os = require('os')
const path = require('path')
const args = process.argv.slice(2)
const opt = (name, def) => { const i = args.indexOf(`--${name}`); return i >= 0 ? args[i + 1] : def }
const [model, task] = args
if (!model || !['train', 'infer'].includes(task)) {
  console.error('usage: node bench/profile-segtorch.js ARCH[/BACKBONE] train|infer [--steps 3] [--warmup 2] [--json out.json]')
  process.exit(2)
}
const steps = Number(opt('steps', '3'))
const warmup = Number(opt('warmup', '2'))

if (process.env.SEGTORCH_PROFILE_CHILD) {
  const st = require('../dist/index.js')
  const [arch, backbone] = model.split('/')
  ;(async () => {
    const m = await st.createModel({ arch, ...(backbone ? { backbone } : {}), numClasses: 21 })
    const first = Number(process.env.SEGTORCH_PROFILE_FIRST_JOB || 0)
    process.stdout.write(JSON.stringify({ firstJob: first, backend: st.backend() }) + '\n')
    const times = []
    if (task === 'train') {
      const n = 4; const s = 256
      const x = st.tensor(new Float32Array(n * 3 * s * s).map(() => Math.random()), [n, 3, s, s])
      const y = st.tensor(new Uint8Array(n * s * s).map(() => Math.floor(Math.random() * 21)), [n, s, s])
      for (let i = 0; i < warmup + steps; i++) {
        const t0 = process.hrtime.bigint()
        await m.trainStep(x, y, { optimizer: { type: 'sgd', lr: 0.01, momentum: 0.9 } })
        if (i >= warmup) times.push(Number(process.hrtime.bigint() - t0) / 1e6)
      }
    } else {
      const s = 512
      const x = st.tensor(new Uint8Array(3 * s * s).map(() => Math.floor(Math.random() * 256)), [1, 3, s, s])
      for (let i = 0; i < warmup + steps; i++) {
        const t0 = process.hrtime.bigint()
        const p = await m.predict(x)
        p.dispose()
        if (i >= warmup) times.push(Number(process.hrtime.bigint() - t0) / 1e6)
      }
    }
    m.dispose()
    process.stdout.write(JSON.stringify({ msProfiled: times }) + '\n')
  })()
} else {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'segtorch-profile-'))
  const prefix = path.join(dir, 'job')
  const r = spawnSync(process.execPath, [__filename, ...args], {
    env: { ...process.env, SEGTORCH_PROFILE_CHILD: '1', SEGTORCH_PROFILE: prefix },
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit']
  })
  if (r.status !== 0) process.exit(r.status || 1)
  const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l))
  const b = lines[0].backend
  // Jobs in the order they ran: createModel's, then warm-up, then the measured ones (each
  // trainStep or predict is one job; the last job disposes of the model).
  const files = fs.readdirSync(dir).map((f) => ({ f, n: Number(f.split('.').slice(-2)[0]) })).sort((a, b) => a.n - b.n)
  const jobs = files.filter(({ f }) => fs.statSync(path.join(dir, f)).size > 4)
  const measured = jobs.slice(1 + warmup, 1 + warmup + steps).map(({ f }) => path.join(dir, f))
  const ms = lines[1].msProfiled
  console.log(`segtorch ${model} ${task}: libtorch ${b.libtorch}, ${b.threads} threads, ${b.cpu.model} (${b.cpu.isa}); ` +
    `${ms.map((t) => t.toFixed(0)).join(' / ')} ms per ${task === 'train' ? 'step' : 'image'} while profiled`)
  const json = opt('json', '')
  const py = spawnSync('python3', [path.join(__dirname, 'op_profile.py'), '--trace', ...measured, ...(json ? ['--json', json] : [])], { encoding: 'utf8', stdio: 'inherit' })
  fs.rmSync(dir, { recursive: true, force: true })
  process.exit(py.status || 0)
}
