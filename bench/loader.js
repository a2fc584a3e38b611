#!/usr/bin/env node
// Loader throughput (issue 5): model.fit fed by the live loader (sharp decoding + native
// augmentation while the model trains) against the same loop fed with batches decoded and
// augmented beforehand. Target: live >= 90% of pre-decoded.
//
// The two alternate in short segments (ABBA order) on one model, so that load from other work on
// the machine falls on both alike; the live loader runs one continuous pass (its prefetch is what
// is being measured), paused while a pre-decoded segment trains. Reports images/s of each (total
// images / total time), the median of the per-pair ratios, and the loader's own CPU cost.
//
// Usage: node bench/loader.js [--pairs 12] [--steps 3] [--batch 4] [--crop 256]
//        [--backbone resnet18] [--os 32] [--data DIR]   (writes bench/results/loader.json)
'use strict'
const fs = require('fs')
const os = require('os')
const path = require('path')
const { createModel, backend } = require('../dist')
const { camvid, loader } = require('../dist/data')

function arg (name, def) {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 ? process.argv[i + 1] : def
}
const root = path.join(__dirname, '..')
const dataDir = arg('data', path.join(root, '..', 'shared', 'data', 'camvid'))
const pairs = Number(arg('pairs', 12))
const steps = Number(arg('steps', 3))
const batchSize = Number(arg('batch', 4))
const crop = Number(arg('crop', 256))
const backbone = arg('backbone', 'resnet18')
const outputStride = Number(arg('os', 32))

const median = (a) => { const s = [...a].sort((x, y) => x - y); return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2 }

async function main () {
  if (!fs.existsSync(path.join(dataDir, 'trainannot'))) {
    console.log(`bench/loader: no CamVid at ${dataDir} (SegNet layout); pass --data DIR`)
    process.exit(1)
  }
  const ds = camvid(dataDir, 'train')
  const options = { batchSize, shuffle: true, seed: 1, augment: { scale: [0.5, 2], crop: [crop, crop], flip: true } }
  const b = backend()
  const load0 = os.loadavg()[0]
  console.log(`bench/loader: CamVid train (${ds.length} images), fcn-${backbone} OS${outputStride}, batch ${batchSize}, crop ${crop}, scale 0.5-2 + flip; ` +
    `libtorch ${b.libtorch}, ${b.threads} threads, ${os.cpus().length} cores, load average ${load0.toFixed(1)}`)

  // The loader's own cost: decoding + augmentation alone, CPU ms per image.
  const c0 = process.cpuUsage()
  const t0 = performance.now()
  const pre = []
  for await (const x of loader(ds, options)) {
    pre.push(x)
    if (pre.length === 24) break
  }
  const c = process.cpuUsage(c0)
  const loaderCpu = (c.user + c.system) / 1000 / (pre.length * batchSize)
  console.log(`  loader alone: ${((performance.now() - t0) / pre.length).toFixed(0)} ms and ${(loaderCpu * batchSize).toFixed(0)} CPU ms per batch`)

  // One continuous live pass (epoch after epoch), taken `steps` batches at a time.
  const live = loader(ds, options)
  const liveBatches = (async function * () { for (;;) yield * live })()
  let preIndex = 0
  let waited = 0 // ms the training loop spent waiting for live batches (timed pairs)
  let timing = false
  const segment = (mode) => ({
    [Symbol.asyncIterator]: () => {
      let n = 0
      return {
        next: async () => {
          if (n++ === steps) return { done: true, value: undefined }
          if (mode !== 'live') return { done: false, value: pre[preIndex++ % pre.length] }
          const t = performance.now()
          const r = await liveBatches.next()
          if (timing) waited += performance.now() - t
          return r
        }
      }
    }
  })

  const model = await createModel({ arch: 'fcn', backbone, numClasses: ds.classes.length, outputStride })
  const run = async (mode) => {
    const start = performance.now()
    await model.fit(segment(mode), { iterations: model.info().steps + steps, optimizer: { type: 'sgd', lr: 0.01, momentum: 0.9 } })
    return steps * batchSize / ((performance.now() - start) / 1000)
  }
  await run('pre')
  await run('live') // warm-up: allocations, the loader's first batches
  timing = true
  const rates = { predecoded: [], live: [] }
  const ratios = []
  for (let p = 0; p < pairs; p++) {
    const order = p % 2 === 0 ? ['predecoded', 'live'] : ['live', 'predecoded']
    for (const k of order) rates[k].push(await run(k === 'live' ? 'live' : 'pre'))
    ratios.push(rates.live[p] / rates.predecoded[p])
    console.log(`  pair ${String(p + 1).padStart(2)}: pre-decoded ${rates.predecoded[p].toFixed(2)}, live ${rates.live[p].toFixed(2)} images/s (${(100 * ratios[p]).toFixed(1)}%), load ${os.loadavg()[0].toFixed(1)}`)
  }
  await liveBatches.return()
  model.dispose()

  const overall = (a) => a.length / a.reduce((s, r) => s + 1 / r, 0) // total images / total time
  const p = overall(rates.predecoded)
  const l = overall(rates.live)
  const ratio = l / p
  const med = median(ratios)
  console.log(`pre-decoded tensors: ${p.toFixed(2)} images/s`)
  console.log(`live loader:         ${l.toFixed(2)} images/s`)
  console.log(`ratio:               ${(100 * ratio).toFixed(1)}% overall, ${(100 * med).toFixed(1)}% median of ${pairs} pairs (target >= 90%)`)
  console.log(`waiting for data:    ${(waited / (pairs * steps)).toFixed(1)} ms per live step (the rest of the difference is CPU shared with decoding)`)
  console.log(`loader alone:        ${loaderCpu.toFixed(1)} CPU ms per image (decode + augment) against ${(1000 * b.threads / p).toFixed(0)} core-ms per image of training; load average ${load0.toFixed(1)} -> ${os.loadavg()[0].toFixed(1)} on ${os.cpus().length} cores`)
  const out = path.join(root, 'bench', 'results', 'loader.json')
  fs.mkdirSync(path.dirname(out), { recursive: true })
  fs.writeFileSync(out, JSON.stringify({
    date: new Date().toISOString(),
    machine: { cores: os.cpus().length, cpu: os.cpus()[0]?.model, libtorch: b.libtorch, threads: b.threads, loadAverage: { start: load0, end: os.loadavg()[0] } },
    config: { data: 'camvid train', model: `fcn ${backbone} OS${outputStride}`, batchSize, crop, scale: [0.5, 2], flip: true, pairs, stepsPerSegment: steps },
    imagesPerSecond: { predecoded: p, live: l },
    ratio,
    medianPairRatio: med,
    loaderCpuMsPerImage: loaderCpu,
    waitForDataMsPerStep: waited / (pairs * steps),
    pairs: rates.predecoded.map((x, i) => ({ predecoded: x, live: rates.live[i] }))
  }, null, 2) + '\n')
  console.log(`wrote ${path.relative(root, out)}`)
}
main().catch((err) => { console.error(err); process.exit(1) })
