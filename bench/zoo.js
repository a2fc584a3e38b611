#!/usr/bin/env node
// bench/zoo: forward time and peak memory of every architecture at 512x512, batch 1, on this
// machine, each in its own process (so peak RSS is the model's own). Prints a table and writes
// bench/results/zoo.json.   usage: node bench/zoo.js [--runs N] [--size S] [--arch a,b,...]
'use strict'
const { spawnSync } = require('child_process')
const fs = require('fs')
const os = require('os')
const path = require('path')

const args = process.argv.slice(2)
const opt = (name, def) => { const i = args.indexOf(`--${name}`); return i >= 0 ? args[i + 1] : def }
const runs = Number(opt('runs', '3'))
const size = Number(opt('size', '512'))

if (process.env.SEGTORCH_ZOO_CHILD) {
  const st = require('../dist/index.js')
  const { arch, backbone } = JSON.parse(process.env.SEGTORCH_ZOO_CHILD)
  ;(async () => {
    const m = await st.createModel({ arch, ...(backbone ? { backbone } : {}), numClasses: 21 })
    const x = st.tensor(new Float32Array(3 * size * size).map((_, i) => Math.sin(i)), [1, 3, size, size])
    await m.predict(x) // warm-up
    const times = []
    for (let i = 0; i < runs; i++) {
      const t0 = process.hrtime.bigint()
      const out = await m.forward(x)
      times.push(Number(process.hrtime.bigint() - t0) / 1e6)
      out.dispose()
    }
    times.sort((a, b) => a - b)
    const info = m.info()
    process.stdout.write(JSON.stringify({ arch, backbone: info.backbone, parameters: info.parameters, medianMs: times[times.length >> 1], minMs: times[0], peakRssMiB: process.resourceUsage().maxRSS / 1024 }) + '\n')
  })().catch((e) => { console.error(e.message); process.exit(1) })
  return
}

const st = require('../dist/index.js')
const only = opt('arch', '')
const archs = Object.keys(st.ARCHITECTURES).filter((a) => !only || only.split(',').includes(a))
const rows = []
const started = Date.now()
for (const arch of archs) {
  const r = spawnSync(process.execPath, [__filename, ...args], { env: { ...process.env, SEGTORCH_ZOO_CHILD: JSON.stringify({ arch }) }, encoding: 'utf8', timeout: 600000 })
  if (r.status !== 0) { rows.push({ arch, error: (r.stderr || 'failed').trim().split('\n').pop() }); continue }
  rows.push(JSON.parse(r.stdout.trim().split('\n').pop()))
  process.stderr.write(`${arch} done\n`)
}
const b = st.backend()
const header = `bench/zoo: forward (eval, fp32, NCHW) of 1x3x${size}x${size}, 21 classes, default backbone; median of ${runs} after a warm-up; ` +
  `libtorch ${b.libtorch}, ${b.threads} threads, ${os.cpus()[0].model}, load ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`
const lines = [header, '', '| arch | backbone | parameters | forward ms (median) | peak RSS MiB |', '|---|---|---|---|---|']
for (const r of rows) {
  lines.push(r.error ? `| ${r.arch} | | | failed: ${r.error} | |` : `| ${r.arch} | ${r.backbone} | ${r.parameters.toLocaleString('en')} | ${r.medianMs.toFixed(0)} | ${r.peakRssMiB.toFixed(0)} |`)
}
console.log(lines.join('\n'))
fs.mkdirSync(path.join(__dirname, 'results'), { recursive: true })
fs.writeFileSync(path.join(__dirname, 'results', 'zoo.json'), JSON.stringify({ date: new Date().toISOString(), size, runs, backend: b, seconds: (Date.now() - started) / 1000, rows }, null, 2))
