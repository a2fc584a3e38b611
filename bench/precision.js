#!/usr/bin/env node
// bench/precision: what precision and layout should 'auto' pick on this CPU? For every architecture
// (default backbone, 21 classes), training images/s (batch 4 x 3x256x256, SGD) and inference ms
// (1x3x512x512 to a class map) at fp32 NCHW, fp32 channels-last and bf16 autocast + channels-last,
// each measurement in its own process, the three settings interleaved round by round (the ratios
// come from neighbouring runs), best of the rounds. Prints a table with the CPU kind and writes
// bench/results/precision.json.
//   usage: node bench/precision.js [--rounds N] [--arch a,b] [--train-steps N] [--infer-runs N]
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
  const { arch, setting, steps, runs } = JSON.parse(process.env.SEGTORCH_PRECISION_CHILD)
  const s = SETTINGS[setting]
  ;(async () => {
    const m = await st.createModel({ arch, numClasses: 21 })
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
const rounds = Number(opt('rounds', '2'))
const steps = Number(opt('train-steps', '2'))
const runs = Number(opt('infer-runs', '3'))
const only = opt('arch', '')
const archs = Object.keys(st.ARCHITECTURES).filter((a) => !only || only.split(',').includes(a))
const started = Date.now()
const best = {} // arch -> setting -> { trainImgS (max), inferMs (min) }
for (const arch of archs) {
  best[arch] = {}
  for (let r = 0; r < rounds; r++) {
    for (const setting of Object.keys(SETTINGS)) {
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
const b = st.backend()
const header = `bench/precision: ${new Date().toISOString()}, ${b.cpu.model} (${b.cpu.isa}), BLAS ${b.blas.name}, libtorch ${b.libtorch}, ` +
  `${b.threads} threads, load ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}; best of ${rounds} interleaved rounds; ` +
  `training: batch 4 x 3x256x256, SGD, ${steps} timed steps after a warm-up; inference: 1x3x512x512 to labels, median of ${runs}`
const f = (v, d) => (Number.isFinite(v) ? v.toFixed(d) : 'n/a')
const lines = [header, '',
  '| arch | train img/s fp32 | fp32-cl | bf16-cl | bf16-cl / fp32-cl | infer ms fp32 | fp32-cl | bf16-cl | fp32-cl / bf16-cl |',
  '|---|---|---|---|---|---|---|---|---|']
for (const arch of archs) {
  const r = best[arch]
  const err = Object.values(r).find((x) => x.error)
  if (err) { lines.push(`| ${arch} | failed: ${err.error} |||||||| `); continue }
  lines.push(`| ${arch} | ${f(r.fp32.trainImgS, 2)} | ${f(r['fp32-cl'].trainImgS, 2)} | ${f(r['bf16-cl'].trainImgS, 2)} | ${f(r['bf16-cl'].trainImgS / r['fp32-cl'].trainImgS, 2)} | ` +
    `${f(r.fp32.inferMs, 0)} | ${f(r['fp32-cl'].inferMs, 0)} | ${f(r['bf16-cl'].inferMs, 0)} | ${f(r['fp32-cl'].inferMs / r['bf16-cl'].inferMs, 2)} |`)
}
console.log(lines.join('\n'))
fs.mkdirSync(path.join(__dirname, 'results'), { recursive: true })
fs.writeFileSync(path.join(__dirname, 'results', 'precision.json'), JSON.stringify({ date: new Date().toISOString(), backend: b, rounds, steps, runs, seconds: (Date.now() - started) / 1000, best }, null, 2))
