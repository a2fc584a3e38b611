#!/usr/bin/env node
/**
 * bench/suite (`npm run bench`): segtorch against PyTorch (Python) and onnxruntime-node, side by side
 * in one run, so that machine noise cancels in the ratios.
 *
 * Models: fcn/resnet50, deeplabv3/resnet50, pspnet/resnet50, lwrefinenet/mobilenetv2, icnet/resnet50,
 * unet (21 classes, no auxiliary heads). The PyTorch side runs the same architectures
 * (bench/torch_twins.py: torchvision's fcn_resnet50 and deeplabv3_resnet50, layer-for-layer twins of the
 * rest; the parameter counts are compared and printed) on /usr/bin/python3 (Debian's python3-torch: the
 * same libtorch 1.13) with the same thread count.
 *
 *  - training: images/s, batch 4 of 3x256x256, SGD lr 0.01 momentum 0.9, cross-entropy; warm-up
 *    steps, then timed steps. segtorch 'fp32' (fp32, NCHW: PyTorch's default) and 'defaults' (what
 *    trainStep does without options: bf16 autocast where the CPU has native bf16, channels-last with
 *    oneDNN); PyTorch 'default' (fp32, NCHW, eager) and 'best' (channels_last + bf16 autocast).
 *  - inference: ms per image (median), batch 1, 3x512x512, to a class map. segtorch predict() 'fp32'
 *    and 'defaults' (BatchNorm folding and inference mode in both); PyTorch 'default' (no_grad) and
 *    'best' (inference_mode + channels_last + bf16); onnxruntime-node (all graph optimisations, same
 *    intra-op threads) on the ONNX graph exported from the torchvision twin (fcn, deeplabv3).
 *  - peak RSS of each measurement (each runs in its own child process), the Node event loop's
 *    largest delay while segtorch trains, and the boundary round trip of an empty job.
 *
 * Prints one table, writes bench/results/suite.json.
 * usage: node bench/suite.js [--models a,b] [--steps 2] [--warmup 1] [--runs 3] [--threads N] [--python P]
 */
'use strict'
const { spawnSync } = require('child_process')
const fs = require('fs')
const os = require('os')
const path = require('path')

const args = process.argv.slice(2)
const opt = (name, def) => { const i = args.indexOf(`--${name}`); return i >= 0 ? args[i + 1] : def }
const THREADS = Number(opt('threads', String(typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length)))
const CONFIG = {
  threads: THREADS,
  warmup: Number(opt('warmup', '1')),
  steps: Number(opt('steps', '2')),
  runs: Number(opt('runs', '3')),
  batch: 4,
  trainSize: 256,
  inferSize: 512
}
const PYTHON = opt('python', '/usr/bin/python3')
const MODELS = ['fcn/resnet50', 'deeplabv3/resnet50', 'pspnet/resnet50', 'lwrefinenet/mobilenetv2', 'icnet/resnet50', 'unet']
const ONNX_TWINS = new Set(['fcn/resnet50', 'deeplabv3/resnet50'])

function peakRssMiB () { return process.resourceUsage().maxRSS / 1024 }

// ------------------------------------------------------------------------------------------------
// Child: one segtorch or onnxruntime measurement
// ------------------------------------------------------------------------------------------------
async function child (c) {
  if (c.side === 'ort') {
    const ort = require('onnxruntime-node')
    const session = await ort.InferenceSession.create(c.onnx, {
      intraOpNumThreads: c.threads, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all'
    })
    const s = c.inferSize
    const x = new ort.Tensor('float32', new Float32Array(3 * s * s).map(() => Math.random()), [1, 3, s, s])
    const times = []
    for (let i = 0; i < c.warmup + c.runs; i++) {
      const t0 = process.hrtime.bigint()
      await session.run({ [session.inputNames[0]]: x })
      if (i >= c.warmup) times.push(Number(process.hrtime.bigint() - t0) / 1e6)
    }
    times.sort((a, b) => a - b)
    return { medianMs: times[times.length >> 1], minMs: times[0], peakRssMiB: peakRssMiB() }
  }
  const st = require('../dist/index.js')
  const { monitorEventLoopDelay } = require('perf_hooks')
  st.setNumThreads(c.threads)
  const [arch, backbone] = c.model.split('/')
  const m = await st.createModel({ arch, ...(backbone ? { backbone } : {}), numClasses: 21, aux: false })
  const out = { params: m.info().parameters }
  const opts = c.variant === 'fp32' ? { precision: 'fp32', channelsLast: false } : {}
  if (c.task === 'train') {
    const n = c.batch, s = c.trainSize
    const x = st.tensor(new Float32Array(n * 3 * s * s).map(() => Math.random()), [n, 3, s, s])
    const y = st.tensor(new Uint8Array(n * s * s).map(() => Math.floor(Math.random() * 21)), [n, s, s])
    const o = { optimizer: { type: 'sgd', lr: 0.01, momentum: 0.9 }, ...opts }
    for (let i = 0; i < c.warmup; i++) await m.trainStep(x, y, o)
    const loop = monitorEventLoopDelay({ resolution: 1 })
    loop.enable()
    const t0 = process.hrtime.bigint()
    for (let i = 0; i < c.steps; i++) await m.trainStep(x, y, o)
    const dt = Number(process.hrtime.bigint() - t0) / 1e9
    loop.disable()
    Object.assign(out, { imagesPerSecond: n * c.steps / dt, msPerStep: dt * 1000 / c.steps, eventLoopMaxDelayMs: loop.max / 1e6 })
  } else {
    const s = c.inferSize
    const x = st.tensor(new Float32Array(3 * s * s).map(() => Math.random()), [1, 3, s, s])
    const times = []
    for (let i = 0; i < c.warmup + c.runs; i++) {
      const t0 = process.hrtime.bigint()
      const labels = await m.predict(x, c.variant === 'fp32' ? { ...opts, foldBatchNorm: true } : opts)
      if (i >= c.warmup) times.push(Number(process.hrtime.bigint() - t0) / 1e6)
      labels.dispose()
    }
    times.sort((a, b) => a - b)
    Object.assign(out, { medianMs: times[times.length >> 1], minMs: times[0] })
    if (c.boundary) {
      // Boundary + executor round trip: a job with no tensor work (set eval mode), awaited each time.
      const calls = 2000
      const per = []
      for (let i = 0; i < calls; i++) {
        const t0 = process.hrtime.bigint()
        await m.train(false)
        per.push(Number(process.hrtime.bigint() - t0) / 1e3)
      }
      per.sort((a, b) => a - b)
      out.emptyJobUs = per[per.length >> 1]
    }
  }
  out.peakRssMiB = peakRssMiB()
  return out
}

if (process.env.SEGTORCH_SUITE_CHILD) {
  child(JSON.parse(process.env.SEGTORCH_SUITE_CHILD))
    .then((r) => process.stdout.write(JSON.stringify(r) + '\n'))
    .catch((e) => { console.error(e.stack || e.message); process.exit(1) })
  return
}

// ------------------------------------------------------------------------------------------------
// Driver
// ------------------------------------------------------------------------------------------------
function lastJson (r, what) {
  if (r.status !== 0) {
    const msg = ((r.stderr || '') + (r.error ? r.error.message : '')).trim().split('\n').slice(-3).join(' | ')
    process.stderr.write(`  ${what} failed: ${msg}\n`)
    return { error: msg || 'failed' }
  }
  return JSON.parse(r.stdout.trim().split('\n').pop())
}

function runNode (c) {
  const env = { ...process.env, SEGTORCH_SUITE_CHILD: JSON.stringify({ ...CONFIG, ...c }) }
  return lastJson(spawnSync(process.execPath, [__filename], { env, encoding: 'utf8', timeout: 900000 }), `${c.side} ${c.model} ${c.task} ${c.variant}`)
}

function runPython (c) {
  const env = { ...process.env, OMP_NUM_THREADS: String(THREADS) }
  return lastJson(spawnSync(PYTHON, [path.join(__dirname, 'suite.py'), JSON.stringify({ ...CONFIG, ...c })], { env, encoding: 'utf8', timeout: 900000 }), `pytorch ${c.model} ${c.task} ${c.variant}`)
}

function main () {
  const only = opt('models', '')
  const models = MODELS.filter((m) => !only || only.split(',').includes(m))
  const started = Date.now()
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'segtorch-suite-'))
  const rows = []
  try {
    for (const model of models) {
      process.stderr.write(`${model}\n`)
      const r = { model }
      r.train = {
        pytorchDefault: runPython({ model, task: 'train', variant: 'default' }),
        pytorchBest: runPython({ model, task: 'train', variant: 'best' }),
        segtorchFp32: runNode({ side: 'segtorch', model, task: 'train', variant: 'fp32' }),
        segtorchDefaults: runNode({ side: 'segtorch', model, task: 'train', variant: 'defaults' })
      }
      r.infer = {
        pytorchDefault: runPython({ model, task: 'infer', variant: 'default' }),
        pytorchBest: runPython({ model, task: 'infer', variant: 'best' }),
        segtorchFp32: runNode({ side: 'segtorch', model, task: 'infer', variant: 'fp32' }),
        segtorchDefaults: runNode({ side: 'segtorch', model, task: 'infer', variant: 'defaults', boundary: model === models[0] })
      }
      if (ONNX_TWINS.has(model)) {
        const onnx = path.join(tmp, model.replace('/', '_') + '.onnx')
        const e = runPython({ model, task: 'export', onnx })
        r.infer.onnxruntime = e.error ? e : runNode({ side: 'ort', model, task: 'infer', onnx })
        fs.rmSync(onnx, { force: true })
      }
      rows.push(r)
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true })
  }
  report(rows, (Date.now() - started) / 1000)
}

const fmt = (v, d = 2) => (typeof v === 'number' && Number.isFinite(v) ? v.toFixed(d) : 'n/a')
const ratio = (a, b) => (typeof a === 'number' && typeof b === 'number' ? a / b : NaN)

function report (rows, seconds) {
  const st = require('../dist/index.js')
  const b = st.backend()
  let commit = ''
  try { commit = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: __dirname, encoding: 'utf8' }).stdout.trim() } catch {}
  const header = `bench/suite: ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC, commit ${commit}, ${os.cpus()[0].model} ` +
    `(${os.cpus().length} cores; native bf16: ${b.bf16}, oneDNN: ${b.mkldnn}), libtorch ${b.libtorch}, ${THREADS} threads, ` +
    `load ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}, OMP_WAIT_POLICY=${process.env.OMP_WAIT_POLICY ?? '(unset)'}; ` +
    `training ${CONFIG.warmup} warm-up + ${CONFIG.steps} timed steps, inference ${CONFIG.warmup} warm-up + median of ${CONFIG.runs}; ${seconds.toFixed(0)} s`
  const lines = [header, '',
    '**Training** (images/s, batch 4 x 3x256x256, SGD; higher is better; ratios = segtorch / other)', '',
    '| model | params (ours = PyTorch) | PyTorch default | PyTorch best | segtorch fp32 | segtorch defaults | fp32 / PT default (>= 0.97) | defaults / PT best (>= 0.97) | defaults / PT default (>= 1.8) | event loop max ms | peak RSS MiB: PT default / PT best / st fp32 / st defaults |',
    '|---|---|---|---|---|---|---|---|---|---|---|']
  for (const r of rows) {
    const t = r.train
    const same = t.segtorchFp32.params === t.pytorchDefault.params ? '=' : `!= ${t.pytorchDefault.params}`
    lines.push(`| ${r.model} | ${(t.segtorchFp32.params ?? 0).toLocaleString('en')} ${same} | ${fmt(t.pytorchDefault.imagesPerSecond)} | ${fmt(t.pytorchBest.imagesPerSecond)} | ` +
      `${fmt(t.segtorchFp32.imagesPerSecond)} | ${fmt(t.segtorchDefaults.imagesPerSecond)} | ` +
      `${fmt(ratio(t.segtorchFp32.imagesPerSecond, t.pytorchDefault.imagesPerSecond))} | ${fmt(ratio(t.segtorchDefaults.imagesPerSecond, t.pytorchBest.imagesPerSecond))} | ` +
      `${fmt(ratio(t.segtorchDefaults.imagesPerSecond, t.pytorchDefault.imagesPerSecond))} | ` +
      `${fmt(Math.max(t.segtorchFp32.eventLoopMaxDelayMs ?? NaN, t.segtorchDefaults.eventLoopMaxDelayMs ?? NaN), 1)} | ` +
      `${[t.pytorchDefault, t.pytorchBest, t.segtorchFp32, t.segtorchDefaults].map((x) => fmt(x.peakRssMiB, 0)).join(' / ')} |`)
  }
  lines.push('', '**Inference** (ms per 1x3x512x512 image to a class map, median; lower is better; ratios = speed-up of segtorch)', '',
    '| model | PyTorch default | PyTorch best | onnxruntime | segtorch fp32 | segtorch defaults | fp32 vs PT default (>= 0.97) | defaults vs PT best (>= 0.97) | defaults vs PT default (>= 2) | defaults vs onnxruntime (>= 1.5) | peak RSS MiB: PT default / PT best / ORT / st fp32 / st defaults |',
    '|---|---|---|---|---|---|---|---|---|---|---|')
  for (const r of rows) {
    const i = r.infer
    const ort = i.onnxruntime ?? {}
    lines.push(`| ${r.model} | ${fmt(i.pytorchDefault.medianMs, 0)} | ${fmt(i.pytorchBest.medianMs, 0)} | ${fmt(ort.medianMs, 0)} | ${fmt(i.segtorchFp32.medianMs, 0)} | ${fmt(i.segtorchDefaults.medianMs, 0)} | ` +
      `${fmt(ratio(i.pytorchDefault.medianMs, i.segtorchFp32.medianMs))} | ${fmt(ratio(i.pytorchBest.medianMs, i.segtorchDefaults.medianMs))} | ` +
      `${fmt(ratio(i.pytorchDefault.medianMs, i.segtorchDefaults.medianMs))} | ${fmt(ratio(ort.medianMs, i.segtorchDefaults.medianMs))} | ` +
      `${[i.pytorchDefault, i.pytorchBest, ort, i.segtorchFp32, i.segtorchDefaults].map((x) => fmt(x.peakRssMiB, 0)).join(' / ')} |`)
  }
  const boundary = rows.map((r) => r.infer.segtorchDefaults.emptyJobUs).find((v) => typeof v === 'number')
  lines.push('', `Boundary: empty job round trip (schedule on the model's executor, settle the Promise), median of 2000: ${fmt(boundary, 1)} us (target < 50 us).`)
  console.log(lines.join('\n'))
  fs.mkdirSync(path.join(__dirname, 'results'), { recursive: true })
  fs.writeFileSync(path.join(__dirname, 'results', 'suite.json'), JSON.stringify({ date: new Date().toISOString(), commit, config: CONFIG, backend: b, load: os.loadavg(), cpu: os.cpus()[0].model, seconds, rows, table: lines }, null, 2))
}

main()
