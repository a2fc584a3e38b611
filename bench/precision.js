#!/usr/bin/env node
// bench/precision: what precision and layout should 'auto' pick on this CPU? For every architecture
// (default backbone, 21 classes), training images/s (batch 4 x 3x256x256, SGD) and inference ms
// (1x3x512x512 to a class map) at fp32 NCHW, fp32 channels-last and bf16 autocast + channels-last,
// each measurement in its own process, the three settings interleaved round by round (the ratios
// come from neighbouring runs), best of the rounds. Prints a table with the CPU kind and writes
// bench/results/precision.json.
//   usage: node bench/precision.js [--report bench/results/precision.json] [--out precision] [--rounds N] [--arch a,b/backbone] [--settings fp32,fp32-cl,bf16-cl] [--train-steps N] [--infer-runs N]
// --arch takes an architecture (its default backbone) or arch/backbone; --settings measures a subset
// (e.g. the layouts alone on a CPU where bf16 is emulated and slow); the table adds the layout ratios.
'use strict'
const { spawnSync } = require('child_process')
const fs = require('fs')
const os = require('os')
const path = require('path')

const args = process.argv.slice(2)
const opt = (name, def) => { const i = args.indexOf(`--${name}`); return i >= 0 ? args[i + 1] : def }
const SETTINGS = {
  fp32: { precision: 'fp32', channelsLast: false },
  'fp32-cl': { precision: 'fp32', channelsLast: true },
  'bf16-cl': { precision: 'bf16', channelsLast: true }
}

if (process.env.SEGTORCH_PRECISION_CHILD) {
  const st = require('../dist/index.js')
  const { arch: name, setting, steps, runs } = JSON.parse(process.env.SEGTORCH_PRECISION_CHILD)
  const [arch, backbone] = name.split('/')
  const s = SETTINGS[setting]
  ;(async () => {
    const m = await st.createModel({ arch, ...(backbone ? { backbone } : {}), numClasses: 21 })
    const n = 4
    const x = st.tensor(new Uint8Array(n * 3 * 256 * 256).map((_, i) => (i * 2654435761) >>> 24), [n, 3, 256, 256])
    const y = st.tensor(new Uint8Array(n * 256 * 256).map((_, i) => ((i * 40503) >>> 8) % 21), [n, 256, 256])
    const step = { ...s, optimizer: { type: 'sgd', lr: 0.01, momentum: 0.9 } }
    await m.trainStep(x, y, step) // warm-up
    let t0 = process.hrtime.bigint()
    for (let i = 0; i < steps; i++) await m.trainStep(x, y, step)
    const trainImgS = steps * n / (Number(process.hrtime.bigint() - t0) / 1e9)
    const xi = st.tensor(new Uint8Array(3 * 512 * 512).map((_, i) => (i * 2654435761) >>> 24), [1, 3, 512, 512])
    const predict = { precision: s.precision, channelsLast: s.channelsLast }
    await m.predict(xi, predict)
    const times = []
    for (let i = 0; i < runs; i++) {
      t0 = process.hrtime.bigint()
      ;(await m.predict(xi, predict)).dispose()
      times.push(Number(process.hrtime.bigint() - t0) / 1e6)
    }
    times.sort((a, b) => a - b)
    process.stdout.write(JSON.stringify({ trainImgS, inferMs: times[times.length >> 1] }) + '\n')
  })().catch((e) => { console.error(e.message); process.exit(1) })
  return
}

const st = require('../dist/index.js')
// --report FILE: the table again from a saved bench/results/<out>.json (no measurement).
const saved = opt('report', '') ? JSON.parse(fs.readFileSync(opt('report'), 'utf8')) : null
const rounds = saved ? saved.rounds : Number(opt('rounds', '2'))
const steps = saved ? saved.steps : Number(opt('train-steps', '2'))
const runs = saved ? saved.runs : Number(opt('infer-runs', '3'))
const only = opt('arch', '')
const archs = saved ? Object.keys(saved.best) : only ? only.split(',') : Object.keys(st.ARCHITECTURES)
for (const a of archs) if (!st.ARCHITECTURES[a.split('/')[0]]) throw new RangeError(`Expected --arch among ${Object.keys(st.ARCHITECTURES).join(', ')} (optionally /backbone) but received ${a}`)
const settings = opt('settings', Object.keys(SETTINGS).join(',')).split(',')
for (const s of settings) if (!SETTINGS[s]) throw new RangeError(`Expected --settings among ${Object.keys(SETTINGS).join(', ')} but received ${s}`)
const started = Date.now()
const best = saved ? saved.best : {} // arch -> setting -> { trainImgS (max), inferMs (min) }
for (const arch of saved ? [] : archs) {
  best[arch] = {}
  for (let r = 0; r < rounds; r++) {
    for (const setting of (r % 2 ? [...settings].reverse() : settings)) {
      const res = spawnSync(process.execPath, [__filename], {
        env: { ...process.env, SEGTORCH_PRECISION_CHILD: JSON.stringify({ arch, setting, steps, runs }) }, encoding: 'utf8', timeout: 900000
      })
      const cur = best[arch][setting] || (best[arch][setting] = { trainImgS: 0, inferMs: Infinity })
      if (res.status !== 0) { cur.error = (res.stderr || 'failed').trim().split('\n').pop(); continue }
      const o = JSON.parse(res.stdout.trim().split('\n').pop())
      cur.trainImgS = Math.max(cur.trainImgS, o.trainImgS)
      cur.inferMs = Math.min(cur.inferMs, o.inferMs)
    }
  }
  process.stderr.write(`${arch} done (${((Date.now() - started) / 1000).toFixed(0)} s)\n`)
}
const b = saved ? saved.backend : st.backend()
const load = saved ? saved.load : os.loadavg()
const header = `bench/precision: ${saved ? saved.date : new Date().toISOString()}, ${b.cpu.model} (${b.cpu.isa}), BLAS ${b.blas.name}, libtorch ${b.libtorch}, ` +
  `${b.threads} threads, load ${load ? load.map((l) => l.toFixed(1)).join(' ') : 'n/a'}; best of ${rounds} interleaved rounds; ` +
  `training: batch 4 x 3x256x256, SGD, ${steps} timed steps after a warm-up; inference: 1x3x512x512 to labels, median of ${runs}`
const f = (v, d) => (Number.isFinite(v) ? v.toFixed(d) : 'n/a')
const errors = []
const lines = [header, '',
  '| arch | train img/s fp32 | fp32-cl | bf16-cl | bf16-cl / fp32-cl | fp32-cl / fp32 | infer ms fp32 | fp32-cl | bf16-cl | fp32-cl / bf16-cl | fp32 / fp32-cl |',
  '|---|---|---|---|---|---|---|---|---|---|---|']
for (const arch of archs) {
  // A setting that failed (or was stopped) reads 'err'; its message goes under the table.
  const r = Object.fromEntries(Object.keys(SETTINGS).map((k) => [k, best[arch][k]?.error ? {} : (best[arch][k] ?? {})]))
  for (const [k, x] of Object.entries(best[arch])) if (x.error) errors.push(`${arch} ${k}: ${x.error}`)
  lines.push(`| ${arch} | ${f(r.fp32.trainImgS, 2)} | ${f(r['fp32-cl'].trainImgS, 2)} | ${f(r['bf16-cl'].trainImgS, 2)} | ${f(r['bf16-cl'].trainImgS / r['fp32-cl'].trainImgS, 2)} | ${f(r['fp32-cl'].trainImgS / r.fp32.trainImgS, 2)} | ` +
    `${f(r.fp32.inferMs, 0)} | ${f(r['fp32-cl'].inferMs, 0)} | ${f(r['bf16-cl'].inferMs, 0)} | ${f(r['fp32-cl'].inferMs / r['bf16-cl'].inferMs, 2)} | ${f(r.fp32.inferMs / r['fp32-cl'].inferMs, 2)} |`)
}
if (errors.length) lines.push('', 'Failed (n/a above):', ...errors.map((e) => `- ${e}`))
console.log(lines.join('\n'))
if (saved) process.exit(0)
fs.mkdirSync(path.join(__dirname, 'results'), { recursive: true })
fs.writeFileSync(path.join(__dirname, 'results', opt('out', 'precision') + '.json'), JSON.stringify({ date: new Date().toISOString(), backend: b, load, rounds, steps, runs, settings, seconds: (Date.now() - started) / 1000, best }, null, 2))
