#!/usr/bin/env node
'use strict'
// bench/cuda.js: segtorch against PyTorch on a GPU, side by side in one run (bench/README.md, "On a GPU").
//
//   node bench/cuda.js [--models fcn/resnet50,...] [--batch 8] [--train-size 512] [--infer-size 1024]
//                      [--python python3] [--addon build-cuda/Release/segtorch.node] [--out FILE.json]
//
// segtorch: its defaults on CUDA (precision 'auto' = fp16 autocast with the loss scaler, channels-last,
// cuDNN benchmark mode), trainStep (SGD lr 0.01 momentum 0.9, the loss returned: a host sync) and
// predict (labels, copied to the host). PyTorch (bench/suite_cuda.py, one process): its eager default (fp32,
// TF32 convolutions) and its AMP recipe (channels_last + fp16 autocast + GradScaler), the same twins
// as bench/suite.js. torch.compile is not measured on the GPU. Needs dist/ (npm run build) and a CUDA
// build of segtorch against the same torch (scripts/check-cuda.sh builds one).
const { spawnSync } = require('child_process')
const fs = require('fs')
const path = require('path')

const ROOT = path.join(__dirname, '..')
const DEFAULT_MODELS = ['fcn/resnet50', 'deeplabv3/resnet50', 'pspnet/resnet50', 'deeplabv3plus/resnet50', 'unet/none', 'lraspp/mobilenetv3_large']

function args () {
  const a = { models: DEFAULT_MODELS, batch: 8, trainSize: 512, inferSize: 1024, warmup: 3, steps: 10, runs: 10, device: 'cuda', python: 'python3', addon: 'build-cuda/Release/segtorch.node', out: '' }
  const v = process.argv.slice(2)
  for (let i = 0; i < v.length; i += 2) {
    const k = v[i].replace(/^--/, '').replace(/-([a-z])/g, (_, c) => c.toUpperCase())
    if (!(k in a)) throw new Error(`unknown option ${v[i]}`)
    a[k] = k === 'models' ? v[i + 1].split(',') : typeof a[k] === 'number' ? Number(v[i + 1]) : v[i + 1]
  }
  return a
}

async function segtorchSide (c) {
  const st = require('../dist/index.js')
  const results = []
  for (const name of c.models) {
    const [arch, backbone] = name.split('/')
    const r = { model: name, variant: 'segtorch' }
    let m
    try {
      m = await st.createModel({ arch, ...(backbone !== 'none' ? { backbone } : {}), numClasses: 21, aux: false, device: c.device })
      const n = c.batch, s = c.trainSize
      const x = await st.tensor(new Float32Array(n * 3 * s * s).map(() => Math.random()), [n, 3, s, s]).to(c.device)
      const y = await st.tensor(new Uint8Array(n * s * s).map(() => Math.floor(Math.random() * 21)), [n, s, s]).to(c.device)
      const o = { optimizer: { type: 'sgd', lr: 0.01, momentum: 0.9 } }
      let skipped = 0
      for (let i = 0; i < c.warmup; i++) await m.trainStep(x, y, o)
      const t0 = process.hrtime.bigint()
      for (let i = 0; i < c.steps; i++) if ((await m.trainStep(x, y, o)).skipped) skipped++
      const dt = Number(process.hrtime.bigint() - t0) / 1e9
      r.train = { imagesPerSecond: n * c.steps / dt, msPerStep: dt * 1000 / c.steps, skippedSteps: skipped }
      await m.eval()
      const xi = await st.tensor(new Float32Array(3 * c.inferSize * c.inferSize).map(() => Math.random()), [1, 3, c.inferSize, c.inferSize]).to(c.device)
      const times = []
      for (let i = 0; i < c.warmup + c.runs; i++) {
        const t1 = process.hrtime.bigint()
        const labels = await m.predict(xi)
        await labels.data()
        if (i >= c.warmup) times.push(Number(process.hrtime.bigint() - t1) / 1e6)
        labels.dispose()
      }
      times.sort((a, b) => a - b)
      r.infer = { medianMs: times[times.length >> 1], minMs: times[0] }
    } catch (e) {
      r.error = String(e.message).split('\n')[0].slice(0, 300)
    } finally {
      m?.dispose()
    }
    process.stderr.write(JSON.stringify(r) + '\n')
    results.push(r)
  }
  const b = st.backend()
  return { libtorch: b.libtorch, cuda: b.cuda, results }
}

function fmt (x, d = 1) { return x === undefined ? '-' : x.toFixed(d) }

async function main () {
  const c = args()
  if (process.env.SEGTORCH_CUDA_BENCH_CHILD) {
    process.stdout.write(JSON.stringify(await segtorchSide(c)) + '\n')
    return
  }
  const addon = path.resolve(ROOT, c.addon)
  const env = { ...process.env, SEGTORCH_ADDON: addon, SEGTORCH_CUDA_BENCH_CHILD: '1' }
  const cfg = { models: c.models, batch: c.batch, trainSize: c.trainSize, inferSize: c.inferSize, warmup: c.warmup, steps: c.steps, runs: c.runs }
  const last = (r, what) => {
    if (r.status !== 0) throw new Error(`${what} failed (${r.status}):\n${r.stderr}`)
    return JSON.parse(r.stdout.trim().split('\n').pop())
  }
  const ours = last(spawnSync(process.execPath, [__filename, ...process.argv.slice(2)], { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 1 << 26 }), 'segtorch')
  const py = last(spawnSync(c.python, [path.join(__dirname, 'suite_cuda.py'), JSON.stringify(cfg)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 1 << 26 }), 'PyTorch')
  const rec = { date: new Date().toISOString(), gpu: py.gpu, torch: py.torch, segtorchLibtorch: ours.libtorch, config: cfg, segtorch: ours.results, pytorch: py.results }
  if (c.out) fs.writeFileSync(c.out, JSON.stringify(rec, null, 2))
  const get = (name, variant) => py.results.find((r) => r.model === name && r.variant === variant) || {}
  const lines = []
  lines.push(`${py.gpu}, PyTorch ${py.torch}, segtorch on libtorch ${ours.libtorch}; training batch ${c.batch} x ${c.trainSize}^2 (images/s), inference 1 x ${c.inferSize}^2 (median ms)`)
  lines.push('| model | train: segtorch | PyTorch default | PyTorch AMP | vs default | vs AMP | infer: segtorch | PyTorch default | PyTorch AMP | vs default | vs AMP |')
  lines.push('|---|---|---|---|---|---|---|---|---|---|---|')
  for (const r of ours.results) {
    const d = get(r.model, 'default'); const b = get(r.model, 'best')
    const ti = r.train?.imagesPerSecond; const td = d.train?.imagesPerSecond; const tb = b.train?.imagesPerSecond
    const ii = r.infer?.medianMs; const id = d.infer?.medianMs; const ib = b.infer?.medianMs
    lines.push(`| ${r.model} | ${fmt(ti)} | ${fmt(td)} | ${fmt(tb)} | ${ti && td ? fmt(ti / td, 2) + 'x' : '-'} | ${ti && tb ? fmt(ti / tb, 2) + 'x' : '-'} | ${fmt(ii)} | ${fmt(id)} | ${fmt(ib)} | ${ii && id ? fmt(id / ii, 2) + 'x' : '-'} | ${ii && ib ? fmt(ib / ii, 2) + 'x' : '-'} |` +
      (r.error || d.error || b.error ? ` errors: ${[r.error, d.error, b.error].filter(Boolean).join('; ')}` : ''))
  }
  console.log(lines.join('\n'))
}

main().catch((e) => { console.error(e.stack || e.message); process.exit(1) })
