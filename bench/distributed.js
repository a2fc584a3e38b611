#!/usr/bin/env node
// bench/distributed: data-parallel training on this machine, 2 processes x 1 thread (Gloo over
// loopback, launched by `segtorch launch`) against 1 process x 2 threads, at the same global batch:
// images/s, bytes all-reduced per step, seconds per step spent in the gradient all-reduce.
//   node bench/distributed.js [--arch unet] [--backbone none] [--size 128] [--batch 4] [--steps 6]
// Needs the build (dist/). Writes bench/results/distributed.json.
'use strict'
const fs = require('fs')
const os = require('os')
const path = require('path')
const { spawnSync } = require('child_process')

const ROOT = path.join(__dirname, '..')
const args = process.argv.slice(2)
const opt = (name, def) => {
  const i = args.indexOf(`--${name}`)
  return i >= 0 ? args[i + 1] : def
}
const ARCH = opt('arch', 'unet')
const BACKBONE = opt('backbone', ARCH === 'unet' ? 'none' : 'resnet18')
const SIZE = Number(opt('size', '128'))
const BATCH = Number(opt('batch', '4')) // global batch per step
const STEPS = Number(opt('steps', '6')) // timed steps (after 1 warm-up)
const CLASSES = 21

async function child () {
  const st = require(path.join(ROOT, 'dist'))
  const world = Number(process.env.WORLD_SIZE || 1)
  if (world > 1) await st.distributed.init()
  else st.setNumThreads(Number(process.env.BENCH_THREADS || 2))
  const rank = st.distributed.rank
  const model = await st.createModel({ arch: ARCH, ...(BACKBONE !== 'none' ? { backbone: BACKBONE } : {}), numClasses: CLASSES, ...(ARCH === 'unet' ? { baseChannels: 16, dropout: 0 } : {}) })
  if (world > 1) await model.distribute()
  const n = BATCH / world
  const x = st.tensor(new Float32Array(n * 3 * SIZE * SIZE).map((_, i) => Math.sin(i * (rank + 1))), [n, 3, SIZE, SIZE])
  const y = st.tensor(new Uint8Array(n * SIZE * SIZE).map((_, i) => (i * 7 + rank) % CLASSES), [n, SIZE, SIZE])
  const options = { optimizer: { type: 'sgd', lr: 0.01, momentum: 0.9 }, precision: 'fp32', channelsLast: false }
  await model.trainStep(x, y, options) // warm-up
  const s0 = world > 1 ? st.distributed.stats() : { reducedBytes: 0, reduceSeconds: 0, overlappedBytes: 0 }
  const t0 = process.hrtime.bigint()
  for (let i = 0; i < STEPS; i++) await model.trainStep(x, y, options)
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9
  const s1 = world > 1 ? st.distributed.stats() : { reducedBytes: 0, reduceSeconds: 0, overlappedBytes: 0 }
  const info = model.info()
  const out = {
    rank,
    world,
    threads: st.backend().threads,
    parameters: info.trainableParameters,
    imagesPerSecond: (BATCH * STEPS) / seconds,
    secondsPerStep: seconds / STEPS,
    bytesPerStep: (s1.reducedBytes - s0.reducedBytes) / STEPS,
    allReduceSecondsPerStep: (s1.reduceSeconds - s0.reduceSeconds) / STEPS,
    overlappedFraction: s1.reducedBytes > s0.reducedBytes ? (s1.overlappedBytes - s0.overlappedBytes) / (s1.reducedBytes - s0.reducedBytes) : 0
  }
  if (rank === 0) fs.writeFileSync(process.env.BENCH_OUT, JSON.stringify(out))
  model.dispose()
  if (world > 1) await st.distributed.destroy()
}

function parent () {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-dist-'))
  const runOne = (label, cmd, env) => {
    const out = path.join(tmp, `${label}.json`)
    const r = spawnSync(cmd[0], cmd.slice(1), { env: { ...process.env, ...env, BENCH_OUT: out, BENCH_CHILD: '1' }, stdio: 'inherit' })
    if (r.status !== 0) throw new Error(`${label} failed (${r.status})`)
    return JSON.parse(fs.readFileSync(out, 'utf8'))
  }
  const me = [process.execPath, __filename, ...args]
  const single = runOne('single', me, { BENCH_THREADS: '2', OMP_NUM_THREADS: '2' })
  const multi = runOne('multi', [process.execPath, path.join(ROOT, 'dist', 'cli', 'index.js'), 'launch', '--nproc-per-node', '2', '--', ...me], {})
  const load = os.loadavg().map((l) => l.toFixed(1)).join(' ')
  const result = {
    date: new Date().toISOString(),
    cpu: os.cpus()[0].model,
    cores: os.cpus().length,
    load,
    model: `${ARCH}/${BACKBONE}`,
    input: `global batch ${BATCH} x 3x${SIZE}x${SIZE}, ${CLASSES} classes, SGD, fp32, ${STEPS} timed steps`,
    single,
    multi
  }
  fs.mkdirSync(path.join(__dirname, 'results'), { recursive: true })
  fs.writeFileSync(path.join(__dirname, 'results', 'distributed.json'), JSON.stringify(result, null, 2))
  const row = (name, r) => `| ${name} | ${r.threads} | ${r.imagesPerSecond.toFixed(2)} | ${r.secondsPerStep.toFixed(3)} | ${(r.bytesPerStep / 1e6).toFixed(2)} | ${r.allReduceSecondsPerStep.toFixed(4)} | ${(100 * r.overlappedFraction).toFixed(0)} % |`
  console.log(`\nbench/distributed: ${result.date}, ${result.cpu} (${result.cores} cores), load ${load}; ${result.model}, ${single.parameters.toLocaleString('en')} trainable parameters; ${result.input}\n`)
  console.log('| run | threads per process | images/s | s/step | MB all-reduced per step (per rank) | s/step waiting for all-reduce | bytes started during the backward |')
  console.log('|---|---|---|---|---|---|---|')
  console.log(row('1 process x 2 threads', single))
  console.log(row('2 processes x 1 thread (Gloo, loopback)', multi))
  console.log(`\nratio 2 procs / 1 proc: ${(multi.imagesPerSecond / single.imagesPerSecond).toFixed(2)}`)
}

if (process.env.BENCH_CHILD === '1') child().catch((err) => { console.error(err); process.exit(1) })
else parent()
