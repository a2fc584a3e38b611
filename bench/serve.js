#!/usr/bin/env node
// bench/serve: a service calling predict once per request, from 1, 8 and 64 concurrent callers,
// with request batching off and on (model.setBatching). Requests/s and latency percentiles,
// measured in the same run. Prints a table and writes bench/results/serve.json.
// usage: node bench/serve.js [--arch fcn] [--backbone resnet18] [--size 256] [--requests 96]
//                            [--max-batch 8] [--max-delay 5] [--concurrency 1,8,64] [--device cpu]
'use strict'
const fs = require('fs')
const os = require('os')
const path = require('path')
const st = require('../dist/index.js')

const args = process.argv.slice(2)
const opt = (name, def) => { const i = args.indexOf(`--${name}`); return i >= 0 ? args[i + 1] : def }
const arch = opt('arch', 'fcn')
const backbone = opt('backbone', 'resnet18')
const size = Number(opt('size', '256'))
const requests = Number(opt('requests', '96'))
const maxBatch = Number(opt('max-batch', '8'))
const maxDelayMs = Number(opt('max-delay', '5'))
const device = opt('device', 'cpu')
const levels = opt('concurrency', '1,8,64').split(',').map(Number)

function percentile (sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p / 100 * sorted.length) - 1))]
}

async function serve (model, images, concurrency) {
  const latencies = []
  let next = 0
  const t0 = process.hrtime.bigint()
  async function caller () {
    while (next < requests) {
      const x = images[next++ % images.length]
      const s = process.hrtime.bigint()
      const y = await model.predict(x)
      latencies.push(Number(process.hrtime.bigint() - s) / 1e6)
      y.dispose()
    }
  }
  await Promise.all(Array.from({ length: concurrency }, caller))
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9
  latencies.sort((a, b) => a - b)
  return { requestsPerSecond: requests / seconds, p50Ms: percentile(latencies, 50), p99Ms: percentile(latencies, 99), seconds }
}

;(async () => {
  const model = await st.createModel({ arch, ...(backbone === 'default' ? {} : { backbone }), numClasses: 21, device })
  const images = Array.from({ length: 16 }, (_, k) => st.tensor(new Uint8Array(3 * size * size).map((_, i) => (i * 7 + k * 31) % 256), [1, 3, size, size]))
  for (let i = 0; i < 3; i++) (await model.predict(images[i])).dispose() // warm-up
  model.setBatching({ maxBatch, maxDelayMs })
  ;(await Promise.all(images.slice(0, maxBatch).map((x) => model.predict(x)))).forEach((y) => y.dispose()) // warm-up at batch size
  const rows = []
  for (const concurrency of levels) {
    for (const batching of [false, true]) {
      model.setBatching(batching ? { maxBatch, maxDelayMs } : false)
      const before = model.stats()
      const r = await serve(model, images, concurrency)
      const after = model.stats()
      const runs = after.runs - before.runs
      rows.push({ concurrency, batching, ...r, runs, imagesPerRun: requests / runs })
      process.stderr.write(`concurrency ${concurrency}, batching ${batching ? 'on' : 'off'}: ${r.requestsPerSecond.toFixed(1)} req/s\n`)
    }
  }
  model.dispose()
  const b = st.backend()
  const header = `bench/serve: ${arch}/${model.config.backbone}, 21 classes, 1x3x${size}x${size} uint8 per request, predict (labels), ${requests} requests per row; ` +
    `batching { maxBatch: ${maxBatch}, maxDelayMs: ${maxDelayMs} }; ${device}, libtorch ${b.libtorch}, ${b.threads} threads, ${os.cpus()[0].model}, load ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`
  const lines = [header, '', '| callers | batching | requests/s | p50 ms | p99 ms | native runs | images/run | speed-up |', '|---|---|---|---|---|---|---|---|']
  for (const r of rows) {
    const off = rows.find((o) => o.concurrency === r.concurrency && !o.batching)
    lines.push(`| ${r.concurrency} | ${r.batching ? 'on' : 'off'} | ${r.requestsPerSecond.toFixed(1)} | ${r.p50Ms.toFixed(0)} | ${r.p99Ms.toFixed(0)} | ${r.runs} | ${r.imagesPerRun.toFixed(1)} | ${(r.requestsPerSecond / off.requestsPerSecond).toFixed(2)}x |`)
  }
  console.log(lines.join('\n'))
  fs.mkdirSync(path.join(__dirname, 'results'), { recursive: true })
  fs.writeFileSync(path.join(__dirname, 'results', 'serve.json'), JSON.stringify({ date: new Date().toISOString(), arch, backbone: model.config.backbone, size, requests, maxBatch, maxDelayMs, device, backend: b, loadavg: os.loadavg(), rows }, null, 2))
})().catch((e) => { console.error(e); process.exit(1) })
