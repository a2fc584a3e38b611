#!/usr/bin/env node
/**
 * bench/suite (`npm run bench`): segtorch against PyTorch at its best (PyPI's torch 2.x, eager and
 * torch.compile) and onnxruntime-node, every architecture, side by side in one run so that machine
 * noise cancels in the ratios. bench/README.md documents the columns; in short:
 *
 *  - models: every architecture of lib/models.ts ARCHITECTURES at its default backbone (21 classes,
 *    no auxiliary heads), or `--arch a,b` ('arch' or 'arch/backbone', e.g. fcn/vgg16,
 *    deeplabv3/mobilenetv3_large). The PyTorch side runs bench/torch_twins.py's twin of each (same
 *    names, shapes and forward as segtorch's network; the table says `=` when the parameter counts
 *    are equal; `--check-twins` loads segtorch's weights into each twin and compares the outputs).
 *  - training: images/s, batch 4 x 3x256x256, SGD lr 0.01 momentum 0.9, cross-entropy (plus the
 *    architecture's training-only outputs: ICNet's cascade, DFN's deep supervision and border loss);
 *    GCN's gradients clipped to norm 1 on both sides (segtorch's default for it: defaultClipGradNorm).
 *  - inference: ms per 1x3x512x512 image to a class map (median).
 *  - contenders: segtorch 'fp32' (fp32, NCHW) and 'defaults' (no options: bf16 autocast +
 *    channels-last where the CPU has native bf16; predict folds BatchNorm); PyTorch (--python)
 *    'default' (fp32, NCHW, eager), 'best' (channels_last + bf16 autocast by hand, inference_mode) and
 *    'compiled' (torch.compile inductor + channels_last + bf16 autocast; inference with freezing;
 *    on a CPU without native bf16 both stay fp32 + channels_last, as bf16 is emulated there;
 *    compile time reported apart, excluded from the timings); optionally a second PyTorch
 *    (--python2, e.g. Debian's 1.13: default and best); onnxruntime-node on the twin's ONNX export.
 *  - each measurement in its own child process (peak RSS = that process's), contenders interleaved
 *    round by round (--rounds; the order reversed every other round), the median over rounds kept.
 *  - FLOPs of each architecture counted once (bench/suite.py 'flops': FlopCounterMode on the twin)
 *    and the achieved throughput as a fraction of the CPU's peak for the contender's precision
 *    (cores x clock x FLOPs/cycle of the ISA; assumptions in bench/README.md).
 *
 * usage: node bench/suite.js [--arch a,b] [--quick] [--rounds 2] [--steps 2] [--warmup 1] [--runs 3]
 *          [--threads N] [--python P] [--python2 P] [--addon path/segtorch.node] [--compile train,infer] [--no-compile] [--no-ort]
 *          [--clock-mhz M] [--pt-precision auto|bf16|fp32] [--check-twins] [--tasks train,infer] [--out suite] [--report bench/results/suite.json[,more.json]]
 * Prints the tables, writes bench/results/<out>.json (<out>.partial.json as it goes); --report renders
 * saved results again (several files: their rows together).
 */
'use strict'
const { spawnSync } = require('child_process')
const fs = require('fs')
const os = require('os')
const path = require('path')

const ROOT = path.join(__dirname, '..')
const args = process.argv.slice(2)
const opt = (name, def) => { const i = args.indexOf(`--${name}`); return i >= 0 ? args[i + 1] : def }
const flag = (name) => args.includes(`--${name}`)
const QUICK = flag('quick')
const THREADS = Number(opt('threads', String(typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length)))
const CONFIG = {
  threads: THREADS,
  quick: QUICK,
  rounds: Number(opt('rounds', QUICK ? '1' : '2')),
  warmup: Number(opt('warmup', '1')),
  steps: Number(opt('steps', QUICK ? '1' : '2')),
  runs: Number(opt('runs', QUICK ? '1' : '3')),
  batch: QUICK ? 2 : 4,
  trainSize: QUICK ? 64 : 256,
  inferSize: QUICK ? 64 : 512,
  // PyTorch's 'best' / 'compiled' precision: bf16 autocast where the CPU has native bf16 (AVX512-BF16,
  // AMX), else fp32 (bf16 without a native instruction is emulated and slower: bench/README.md,
  // "An AVX2 CPU"); --pt-precision bf16|fp32 forces one.
  ptPrecision: ptPrecision(opt('pt-precision', 'auto'))
}
// Gradient clipping in the training step of `arch`: segtorch's default `clipGradNorm` (ARCHITECTURES' defaultClipGradNorm:
// GCN, whose head has no normalisation, diverges within 4-10 SGD steps without it, PyTorch's twin too), so the twin
// clips as well (torch.nn.utils.clip_grad_norm_ between backward and step, as a PyTorch user must): both sides do the
// same work. The segtorch child checks that its step clipped exactly where this says.
const clipGradNorm = (arch) => require('../dist/models.js').ARCHITECTURES[arch]?.defaultClipGradNorm ?? 0  // the table only: no addon needed
// FLOPs are always also counted at these settings (the table's GFLOPs columns).
const REFERENCE = { batch: 4, trainSize: 256, inferSize: 512 }
const VENV = process.env.SEGTORCH_PY_VENV || path.join(os.homedir(), '.cache', 'segtorch-pytorch')
const PYTHON = opt('python', fs.existsSync(path.join(VENV, 'bin', 'python')) ? path.join(VENV, 'bin', 'python') : '/usr/bin/python3')
const PYTHON2 = opt('python2', '')
const OUT = opt('out', 'suite')  // bench/results/<OUT>.json

/**
 * Whether bf16 is PyTorch's fastest precision here, as segtorch's 'auto' decides (lib/precision.ts
 * bf16FasterOn): AMX, or AVX512-BF16 but not on an Intel CPU without AMX (there PyTorch's bf16 autocast
 * measured slower than its fp32: bench/README "An Intel CPU with AVX512-BF16 and no AMX").
 */
function bf16Fastest () {
  let text = ''
  try { text = fs.readFileSync('/proc/cpuinfo', 'utf8') } catch {}
  if (/ amx_bf16( |$)/m.test(text)) return true
  return / avx512_bf16( |$)/m.test(text) && !/^vendor_id\s*:\s*GenuineIntel/m.test(text)
}

function ptPrecision (value) {
  if (value === 'auto') return bf16Fastest() ? 'bf16' : 'fp32'
  if (value === 'bf16' || value === 'fp32') return value
  throw new RangeError(`Expected --pt-precision auto, bf16 or fp32 but received ${value}`)
}

function pythonTorch (python) {
  const r = spawnSync(python, ['-c', 'import torch; print(torch.__version__.split("+")[0])'], { encoding: 'utf8' })
  return r.status === 0 ? r.stdout.trim() : null
}

// ------------------------------------------------------------------------------------------------
// Child: one segtorch or onnxruntime measurement
// ------------------------------------------------------------------------------------------------
function peakRssMiB () { return process.resourceUsage().maxRSS / 1024 }

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
  const b = st.backend()
  const out = { backend: { libtorch: b.libtorch, bf16: b.bf16, cpu: b.cpu, blas: b.blas, mkldnn: b.mkldnn } }
  if (c.side === 'dump') {
    // --check-twins: segtorch's initial weights and its eval forward (fp32) on one random input.
    const m = await st.createModel({ arch, ...(backbone !== 'none' ? { backbone } : {}), numClasses: 21, aux: false, mean: [0, 0, 0], std: [1, 1, 1] })
    await m.eval()
    const s = c.size
    const x = new Float32Array(3 * s * s).map(() => Math.random())
    const y = await (await m.forward(st.tensor(x, [1, 3, s, s]), { precision: 'fp32' })).data()
    await m.saveStateDict(c.prefix + '.pt')
    fs.writeFileSync(c.prefix + '.in', Buffer.from(x.buffer))
    fs.writeFileSync(c.prefix + '.out', Buffer.from(y.buffer, y.byteOffset, y.byteLength))
    return { params: m.info().parameters }
  }
  if (c.side === 'export') {
    // The onnxruntime contender's model when PyTorch's exporter refuses the twin: segtorch's own ONNX
    // export of the same architecture (lib/export/onnx.ts), logits out, any size.
    const m = await st.createModel({ arch, ...(backbone !== 'none' ? { backbone } : {}), numClasses: 21, aux: false })
    await m.exportOnnx(c.onnx)
    return { params: m.info().parameters }
  }
  const m = await st.createModel({ arch, ...(backbone !== 'none' ? { backbone } : {}), numClasses: 21, aux: false })
  out.params = m.info().parameters
  const opts = c.variant === 'fp32' ? { precision: 'fp32', channelsLast: false } : {}
  if (c.task === 'train') {
    const n = c.batch, s = c.trainSize
    const x = st.tensor(new Float32Array(n * 3 * s * s).map(() => Math.random()), [n, 3, s, s])
    const y = st.tensor(new Uint8Array(n * s * s).map(() => Math.floor(Math.random() * 21)), [n, s, s])
    const o = { optimizer: { type: 'sgd', lr: 0.01, momentum: 0.9 }, ...opts }
    const clip = clipGradNorm(arch)
    for (let i = 0; i < c.warmup; i++) {
      const r = await m.trainStep(x, y, o)
      if ((r.gradNorm !== undefined) !== (clip > 0)) throw new Error(`segtorch's step ${r.gradNorm === undefined ? 'did not clip' : 'clipped'} its gradients where the twin's clip is ${clip}`)
    }
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
      const per = []
      for (let i = 0; i < 2000; i++) {
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
    const lines = ((r.stderr || '') + (r.error ? r.error.message : '')).trim().split('\n').filter((l) => !/warn/i.test(l))
    // The exception's own line (Python: 'XxxError: ...' at the end of the traceback) rather than a dump of the graph.
    const err = lines.filter((l) => /^\s*[\w.]*(Error|Exception)\b/.test(l)).pop()
    const msg = (err ?? lines.slice(-2).join(' | ')).trim().slice(0, 300) || (r.signal ? `killed by ${r.signal}` : 'failed')
    process.stderr.write(`  ${what} failed: ${msg}\n`)
    return { error: msg }
  }
  try { return JSON.parse(r.stdout.trim().split('\n').pop()) } catch (e) { return { error: `no JSON from ${what}` } }
}

const CHILD_TIMEOUT_MS = Number(opt('child-timeout', '1800')) * 1000
// --tasks train,infer (default both): which tables to measure.
const TASKS = opt('tasks', 'train,infer').split(',').filter(Boolean)
if (TASKS.length === 0 || TASKS.some((t) => t !== 'train' && t !== 'infer')) throw new RangeError(`Expected --tasks train, infer or train,infer but received ${opt('tasks', '')}`)

function runNode (c, addon) {
  const env = { ...process.env, SEGTORCH_SUITE_CHILD: JSON.stringify({ ...CONFIG, ...c }) }
  if (addon) env.SEGTORCH_ADDON = addon
  return lastJson(spawnSync(process.execPath, [__filename], { env, encoding: 'utf8', timeout: CHILD_TIMEOUT_MS }), `${c.side} ${c.model} ${c.task ?? ''} ${c.variant ?? ''}`)
}

function runPython (python, c) {
  const env = { ...process.env, OMP_NUM_THREADS: String(THREADS), PYTHONWARNINGS: 'ignore' }
  let cache = null
  if (c.variant === 'compiled') {
    // A cold compile, as a user's first run: an empty inductor cache for this child only.
    cache = fs.mkdtempSync(path.join(os.tmpdir(), 'segtorch-suite-inductor-'))
    env.TORCHINDUCTOR_CACHE_DIR = cache
  }
  try {
    return lastJson(spawnSync(python, [path.join(__dirname, 'suite.py'), JSON.stringify({ ...CONFIG, ...c })], { env, encoding: 'utf8', timeout: CHILD_TIMEOUT_MS }), `pytorch(${python}) ${c.model} ${c.task} ${c.variant ?? ''}`)
  } finally {
    if (cache) fs.rmSync(cache, { recursive: true, force: true })
  }
}

function modelList () {
  const { ARCHITECTURES } = require('../dist/models.js')  // the table only: no addon needed
  const defaults = Object.entries(ARCHITECTURES).map(([a, s]) => `${a}/${s.defaultBackbone}`)
  const only = opt('arch', '')
  if (!only) return defaults
  return only.split(',').map((name) => {
    if (name.includes('/')) return name
    const d = defaults.find((m) => m.startsWith(name + '/'))
    if (!d) throw new RangeError(`Expected --arch among ${Object.keys(ARCHITECTURES).join(', ')} but received ${name}`)
    return d
  })
}

function defaultAddon (torchVersion) {
  const explicit = opt('addon', '')
  if (explicit) return path.resolve(explicit)
  if (process.env.SEGTORCH_ADDON) return process.env.SEGTORCH_ADDON
  // scripts/check-libtorch2.sh builds the addon against the venv's torch 2.x in build-lt2/.
  const lt2 = path.join(ROOT, process.env.SEGTORCH_LT2_BUILD || 'build-lt2', 'Release', 'segtorch.node')
  if (torchVersion && Number(torchVersion.split('.')[0]) >= 2 && fs.existsSync(lt2)) return lt2
  return ''
}

const median = (xs) => { const s = xs.filter((v) => typeof v === 'number' && Number.isFinite(v)).sort((a, b) => a - b); return s.length ? s[s.length >> 1] : undefined }

/** The median over rounds of each number; the first round's other fields; an error only when every round failed. */
function combine (results) {
  const ok = results.filter((r) => !r.error)
  if (!ok.length) return results[0] ?? { error: 'not run' }
  const out = { ...ok[0], rounds: ok.length }
  for (const k of Object.keys(ok[0])) if (typeof ok[0][k] === 'number') out[k] = median(ok.map((r) => r[k]))
  if (ok.length < results.length) out.failedRounds = results.length - ok.length
  return out
}

function checkTwins (models, addon) {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'segtorch-twins-'))
  const lines = ['| model | parameters | names and shapes (load_state_dict strict) | max abs diff / max abs output | argmax agreement |', '|---|---|---|---|---|']
  try {
    for (const model of models) {
      const prefix = path.join(tmp, model.replace('/', '_'))
      const d = runNode({ side: 'dump', model, size: 128, prefix }, addon)
      const p = d.error ? d : runPython(PYTHON, { model, task: 'compare', prefix, size: 128 })
      const row = d.error || p.error
        ? `| ${model} | | failed: ${(d.error || p.error).slice(0, 120)} | | |`
        : `| ${model} | ${d.params.toLocaleString('en')} ${d.params === p.params ? '=' : '!= ' + p.params} | equal | ${p.maxAbsDiff.toExponential(1)} / ${p.maxAbsOut.toExponential(1)} | ${(100 * p.agreement).toFixed(2)}% |`
      process.stderr.write(row + '\n')
      lines.push(row)
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true })
  }
  console.log(lines.join('\n'))
}

function main () {
  if (opt('report', '')) {
    // One or more result files (runs split over several processes: --out a, --out b): rows concatenated.
    // A model measured in several files (a partial file lists every model of its run): the row with results.
    const saved = opt('report').split(',').map((f) => JSON.parse(fs.readFileSync(f, 'utf8')))
    const measured = (r) => Object.keys(r.train ?? {}).length + Object.keys(r.infer ?? {}).length
    const rows = []
    for (const r of saved.flatMap((s) => s.rows)) {
      const i = rows.findIndex((x) => x.model === r.model)
      if (i < 0) rows.push(r)
      else if (measured(r) > measured(rows[i])) rows[i] = r
    }
    // In the order of ARCHITECTURES (then any other backbones), whatever the split.
    const order = Object.keys(require('../dist/models.js').ARCHITECTURES)
    const rank = (r) => { const i = order.indexOf(r.model.split('/')[0]); return (i < 0 ? order.length : i) + (r.model.endsWith('/' + require('../dist/models.js').ARCHITECTURES[r.model.split('/')[0]]?.defaultBackbone) ? 0 : 0.5) }
    rows.sort((a, b) => rank(a) - rank(b))
    const rec = { ...saved[0], rows: rows.filter(measured), seconds: Math.max(...saved.map((s) => s.seconds).filter((v) => typeof v === 'number')) }
    const pending = rows.filter((r) => !measured(r)).map((r) => r.model)
    if (pending.length) process.stderr.write(`not measured in these files: ${pending.join(', ')}\n`)
    if (saved.length > 1) rec.loadEnd = saved.map((s) => s.loadEnd).filter(Boolean).pop()
    console.log(render(rec).join('\n'))
    return
  }
  const models = modelList()
  const torch1 = pythonTorch(PYTHON)
  if (!torch1) throw new Error(`${PYTHON} cannot import torch (--python)`)
  const torch2 = PYTHON2 ? pythonTorch(PYTHON2) : null
  if (PYTHON2 && !torch2) throw new Error(`${PYTHON2} cannot import torch (--python2)`)
  // torch.onnx.export needs the onnx package: without it every export would fall back to segtorch's
  // own exporter and the onnxruntime column would silently measure something else.
  const exporter = PYTHON2 || PYTHON
  if (!flag('no-ort') && spawnSync(exporter, ['-c', 'import onnx'], { encoding: 'utf8' }).status !== 0) {
    throw new Error(`${exporter} cannot import onnx, which torch.onnx.export needs for the onnxruntime column: run scripts/pytorch-venv.sh (it installs onnx), \`pip install onnx\`, or pass --no-ort`)
  }
  const addon = defaultAddon(torch1)
  if (flag('check-twins')) return checkTwins(models, addon)
  // --compile train,infer (default: both), --no-compile: which tasks get the torch.compile contender
  // (a cold compile costs minutes per model and task: a smoke run on a busy machine may keep it to inference).
  const compileTasks = flag('no-compile') ? [] : opt('compile', 'train,infer').split(',').filter((t) => t === 'train' || t === 'infer')
  const compile = compileTasks.length > 0 && Number(torch1.split('.')[0]) >= 2
  const compile2 = compileTasks.length > 0 && torch2 && Number(torch2.split('.')[0]) >= 2
  const contenders = [
    { key: 'ptDefault', py: PYTHON, variant: 'default' },
    { key: 'ptBest', py: PYTHON, variant: 'best' },
    ...(compile ? [{ key: 'ptCompiled', py: PYTHON, variant: 'compiled' }] : []),
    ...(PYTHON2 ? [{ key: 'pt2Default', py: PYTHON2, variant: 'default' }, { key: 'pt2Best', py: PYTHON2, variant: 'best' }] : []),
    ...(compile2 ? [{ key: 'pt2Compiled', py: PYTHON2, variant: 'compiled' }] : []),
    { key: 'stFp32', variant: 'fp32' },
    { key: 'stDefaults', variant: 'defaults' }
  ]
  const started = Date.now()
  const loadStart = os.loadavg()
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'segtorch-suite-'))
  const raw = {}
  const record = { date: new Date().toISOString(), commit: gitCommit(), config: { ...CONFIG, compileTasks }, reference: REFERENCE, python: PYTHON, torch: torch1, python2: PYTHON2 || null, torch2, addon: addon || '(default binding)', compile, loadStart, ompWaitPolicy: process.env.OMP_WAIT_POLICY ?? '(unset)', models, rows: [] }
  const save = (name) => {
    record.machine = machine(record.rows)
    fs.mkdirSync(path.join(__dirname, 'results'), { recursive: true })
    fs.writeFileSync(path.join(__dirname, 'results', `${OUT}${name}`), JSON.stringify(record, null, 2))
  }
  try {
    // Once per model: FLOPs (always with the torch 2.x Python: FlopCounterMode) and the ONNX export.
    const flopsPython = [PYTHON, PYTHON2].find((p, i) => p && Number((i ? torch2 : torch1).split('.')[0]) >= 2)
    const once = {}
    const onnxBy = record.onnxExportedBy = {}
    for (const model of models) {
      process.stderr.write(`${model}: FLOPs, ONNX export\n`)
      const f = flopsPython ? runPython(flopsPython, { model, task: 'flops', ...REFERENCE }) : { error: 'no torch 2.x Python for FlopCounterMode' }
      const fr = flopsPython && (CONFIG.inferSize !== REFERENCE.inferSize || CONFIG.trainSize !== REFERENCE.trainSize || CONFIG.batch !== REFERENCE.batch)
        ? runPython(flopsPython, { model, task: 'flops' })
        : f
      let onnx = null
      if (!flag('no-ort')) {
        onnx = path.join(tmp, model.replace('/', '_') + '.onnx')
        const e = runPython(PYTHON2 || PYTHON, { model, task: 'export', onnx })
        if (e.error) {
          // PyTorch cannot export this twin (SegNet's unpooling, adaptive pooling at sizes that do
          // not divide): segtorch's exporter writes the same architecture, noted in the record.
          const ours = runNode({ side: 'export', model, onnx }, addon)
          onnx = ours.error ? { error: `export: ${e.error}; segtorch's exporter: ${ours.error}` } : onnx
          if (!ours.error) onnxBy[model] = `segtorch's exporter (PyTorch's: ${String(e.error).split('\n')[0].slice(0, 120)})`
        }
      }
      once[model] = { flops: f, flopsRun: fr, onnx }
      raw[model] = { train: {}, infer: {} }
    }
    for (let round = 0; round < CONFIG.rounds; round++) {
      for (const model of models) {
        for (const task of TASKS) {
          const list = [...contenders.filter((c) => c.variant !== 'compiled' || compileTasks.includes(task)), ...(task === 'infer' && once[model].onnx ? [{ key: 'onnxruntime' }] : [])]
          if (round % 2 === 1) list.reverse()
          for (const c of list) {
            let r
            if (c.key === 'onnxruntime') {
              r = typeof once[model].onnx === 'string' ? runNode({ side: 'ort', model, task, onnx: once[model].onnx }) : once[model].onnx
            } else if (c.py) {
              r = runPython(c.py, { model, task, variant: c.variant, clipGradNorm: clipGradNorm(model.split('/')[0]) })
            } else {
              r = runNode({ side: 'segtorch', model, task, variant: c.variant, boundary: task === 'infer' && c.variant === 'defaults' && model === models[0] }, addon)
            }
            ;(raw[model][task][c.key] ??= []).push(r)
            process.stderr.write(`  round ${round + 1} ${model} ${task} ${c.key}: ${summary(r)}\n`)
          }
        }
        record.rows = models.filter((m) => raw[m]).map((m) => row(m, raw[m], once[m]))
        save('.partial.json')
      }
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true })
  }
  record.seconds = (Date.now() - started) / 1000
  record.loadEnd = os.loadavg()
  record.rows = models.map((m) => row(m, raw[m], {}, record.rows.find((r) => r.model === m)))
  record.machine = machine(record.rows)
  const lines = render(record)
  record.table = lines
  save('.json')
  console.log(lines.join('\n'))
}

function row (model, raw, once, previous) {
  const r = previous ?? { model, flops: once.flops, flopsRun: once.flopsRun }
  r.train = Object.fromEntries(Object.entries(raw.train).map(([k, v]) => [k, combine(v)]))
  r.infer = Object.fromEntries(Object.entries(raw.infer).map(([k, v]) => [k, combine(v)]))
  return r
}

function summary (r) {
  if (r.error) return 'error'
  const parts = []
  if (r.imagesPerSecond) parts.push(`${r.imagesPerSecond.toFixed(2)} img/s`)
  if (r.medianMs) parts.push(`${r.medianMs.toFixed(0)} ms`)
  if (r.compileSeconds) parts.push(`compile ${r.compileSeconds.toFixed(0)} s`)
  return parts.join(', ')
}

function gitCommit () {
  try { return spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: __dirname, encoding: 'utf8' }).stdout.trim() } catch { return '' }
}

// ------------------------------------------------------------------------------------------------
// The CPU's peak (bench/README.md: "Fraction of peak")
// ------------------------------------------------------------------------------------------------
function cpuinfo () {
  let text = ''
  try { text = fs.readFileSync('/proc/cpuinfo', 'utf8') } catch {}
  const field = (name) => { const m = text.match(new RegExp(`^${name}\\s*:\\s*(.*)$`, 'm')); return m ? m[1].trim() : '' }
  let maxMHz = 0
  const l = spawnSync('lscpu', [], { encoding: 'utf8' })
  const mm = (l.stdout || '').match(/^CPU max MHz:\s*([\d.]+)/m)
  if (mm) maxMHz = Number(mm[1])
  return { vendor: field('vendor_id'), family: Number(field('cpu family')), modelName: field('model name'), mhz: Number(field('cpu MHz')) || 0, maxMHz }
}

/**
 * FLOPs per cycle per core (dense fused multiply-add throughput, 2 FLOPs per FMA lane) for fp32 and
 * bf16 on each ISA segtorch's backend().cpu.isa reports. bf16 without a native instruction runs in
 * fp32 (conversions), so its peak is the fp32 one.
 */
function flopsPerCycle (isa, vendor, family) {
  const amd = /AMD/i.test(vendor)
  switch (isa) {
    case 'AMX': return { fp32: 64, bf16: 1024, why: 'Intel AMX: 2 AVX-512 FMA ports (fp32 64/cycle); AMX TMUL 512 bf16 multiply-adds/cycle (1024)' }
    case 'AVX512-BF16':
      if (amd && family < 26) return { fp32: 32, bf16: 64, why: 'AMD Zen 4: AVX-512 on 256-bit datapaths, 2 FMA pipes (fp32 32/cycle); VDPBF16PS 2 pipes x 16 bf16 pairs (64)' }
      return amd ? { fp32: 64, bf16: 128, why: 'AMD Zen 5 (family 26): 2 full 512-bit FMA pipes (fp32 64/cycle); VDPBF16PS on both (bf16 128)' }
        : { fp32: 64, bf16: 64, why: 'Intel AVX512-BF16 without AMX: 2 FMA ports (fp32 64/cycle); bf16 taken as no faster (measured: bf16 autocast slower than fp32 for PyTorch and segtorch; bench/README "An Intel CPU with AVX512-BF16 and no AMX")' }
    case 'AVX512': return { fp32: 64, bf16: 64, why: 'AVX-512 with 2 FMA ports (fp32 64/cycle; parts with one port: half); no native bf16' }
    case 'AVX2': return { fp32: 32, bf16: 32, why: 'AVX2 + FMA, 2 ports (fp32 32/cycle); no native bf16' }
    default: return { fp32: 16, bf16: 16, why: 'SSE-class: 16 fp32 FLOPs/cycle assumed' }
  }
}

function machine (rows) {
  const st = rows.map((r) => r.train?.stDefaults?.backend ?? r.infer?.stDefaults?.backend).find(Boolean) ?? {}
  const ci = cpuinfo()
  const isa = st.cpu?.isa ?? 'other'
  const f = flopsPerCycle(isa, ci.vendor, ci.family)
  const mhz = Number(opt('clock-mhz', '')) || ci.maxMHz || ci.mhz
  const cores = Math.min(THREADS, os.cpus().length)
  return {
    cpu: st.cpu?.model ?? ci.modelName, isa, vendor: ci.vendor, family: ci.family, mhz, mhzSource: opt('clock-mhz', '') ? '--clock-mhz' : ci.maxMHz ? 'lscpu CPU max MHz' : '/proc/cpuinfo cpu MHz (a VM\'s nominal clock: a boosting CPU runs faster and the percentages overstate)',
    cores, logicalCpus: os.cpus().length, blas: st.blas?.name ?? '?', libtorch: st.libtorch ?? '?', bf16: st.bf16,
    peak: { fp32: cores * mhz * 1e6 * f.fp32, bf16: cores * mhz * 1e6 * f.bf16, flopsPerCycle: f }
  }
}

// ------------------------------------------------------------------------------------------------
// Tables
// ------------------------------------------------------------------------------------------------
const fmt = (v, d = 2) => (typeof v === 'number' && Number.isFinite(v) ? v.toFixed(d) : 'n/a')
const ratio = (a, b) => (typeof a === 'number' && typeof b === 'number' ? a / b : NaN)
const cell = (x, key, d) => (x && x.error ? 'err' : fmt(x?.[key], d))

function render (rec) {
  const m = rec.machine ?? {}
  const cfg = rec.config
  const has = (k) => rec.rows.some((r) => r.train?.[k] || r.infer?.[k])
  const pt = ['ptDefault', 'ptBest', ...(has('ptCompiled') ? ['ptCompiled'] : [])]
  const pt2 = ['pt2Default', 'pt2Best', 'pt2Compiled'].filter(has)
  const ptp = cfg.ptPrecision && cfg.ptPrecision !== 'bf16' ? ` (${cfg.ptPrecision})` : ''
  const names = { ptDefault: `PT ${rec.torch} default`, ptBest: `PT ${rec.torch} best${ptp}`, ptCompiled: `PT ${rec.torch} compiled${ptp}`, pt2Default: `PT ${rec.torch2} default`, pt2Best: `PT ${rec.torch2} best`, pt2Compiled: `PT ${rec.torch2} compiled`, stFp32: 'segtorch fp32', stDefaults: 'segtorch defaults', onnxruntime: 'onnxruntime' }
  const best = pt.includes('ptCompiled') ? 'ptCompiled' : 'ptBest'
  const head = [
    `bench/suite: ${rec.date.slice(0, 16).replace('T', ' ')} UTC, commit ${rec.commit}${cfg.quick ? ' — **--quick smoke run: tiny sizes, 1 timed step; NOT a measurement**' : ''}`,
    `CPU: ${m.cpu} (ISA ${m.isa}; ${m.vendor} family ${m.family}; ${m.logicalCpus} logical CPUs, ${m.mhz} MHz from ${m.mhzSource}), BLAS ${m.blas}; ` +
      `segtorch on libtorch ${m.libtorch} (${rec.addon}), PyTorch ${rec.torch} (${rec.python})${rec.python2 ? `, PyTorch ${rec.torch2} (${rec.python2})` : ''}; ` +
      `${cfg.threads} threads everywhere; load average ${rec.loadStart.map((l) => l.toFixed(1)).join(' ')} at the start, ${rec.loadEnd ? rec.loadEnd.map((l) => l.toFixed(1)).join(' ') : 'n/a'} at the end; ` +
      `OMP_WAIT_POLICY=${rec.ompWaitPolicy ?? process.env.OMP_WAIT_POLICY ?? '(unset)'}; ${cfg.rounds} round(s) interleaved, median kept; training ${cfg.warmup} warm-up + ${cfg.steps} timed step(s) at batch ${cfg.batch} x 3x${cfg.trainSize}x${cfg.trainSize}; ` +
      `inference ${cfg.warmup} warm-up + median of ${cfg.runs} at 1x3x${cfg.inferSize}x${cfg.inferSize}; torch.compile for ${(cfg.compileTasks ?? ['train', 'infer']).join(' and ') || 'nothing'}; ${fmt(rec.seconds, 0)} s in all.`
  ]
  if (m.libtorch && rec.torch && m.libtorch !== rec.torch) head.push(`**Note:** segtorch's libtorch (${m.libtorch}) is not the Python's torch (${rec.torch}): pass --addon with a build against the same libtorch (scripts/check-libtorch2.sh).`)
  const lines = [...head, '']
  const tcols = [...pt, ...pt2, 'stFp32', 'stDefaults']
  lines.push('**Training** (images/s; higher is better; ratios = segtorch defaults / other unless named)', '',
    `| model | params (ours = twin) | ${tcols.map((k) => names[k]).join(' | ')} | compile s | defaults / PT ${best === 'ptCompiled' ? 'compiled' : 'best'} (>= 1.1) | defaults / PT default (>= 2) | fp32 / PT default | event loop max ms | peak RSS MiB (${tcols.map((k) => names[k]).join(' / ')}) |`,
    `|${'---|'.repeat(tcols.length + 7)}`)
  for (const r of rec.rows) {
    const t = r.train
    const ours = t.stFp32?.params ?? t.stDefaults?.params
    const twin = t.ptDefault?.params ?? t.ptBest?.params
    const same = ours === undefined || twin === undefined ? '?' : ours === twin ? '=' : `!= ${twin.toLocaleString('en')}`
    lines.push(`| ${r.model} | ${(ours ?? 0).toLocaleString('en')} ${same} | ${tcols.map((k) => cell(t[k], 'imagesPerSecond')).join(' | ')} | ${cell(t.ptCompiled, 'compileSeconds', 0)} | ` +
      `${fmt(ratio(t.stDefaults?.imagesPerSecond, t[best]?.imagesPerSecond))} | ${fmt(ratio(t.stDefaults?.imagesPerSecond, t.ptDefault?.imagesPerSecond))} | ` +
      `${fmt(ratio(t.stFp32?.imagesPerSecond, t.ptDefault?.imagesPerSecond))} | ${fmt(Math.max(t.stFp32?.eventLoopMaxDelayMs ?? NaN, t.stDefaults?.eventLoopMaxDelayMs ?? NaN), 1)} | ` +
      `${tcols.map((k) => cell(t[k], 'peakRssMiB', 0)).join(' / ')} |`)
  }
  const icols = [...pt, ...pt2, 'onnxruntime', 'stFp32', 'stDefaults']
  lines.push('', `**Inference** (ms per 1x3x${cfg.inferSize}x${cfg.inferSize} image to a class map, median; lower is better; ratios = speed-up of segtorch defaults unless named)`, '',
    `| model | ${icols.map((k) => names[k]).join(' | ')} | compile s | vs PT ${best === 'ptCompiled' ? 'compiled' : 'best'} (>= 1.1) | vs PT default (>= 2) | vs onnxruntime (>= 1.5) | fp32 vs PT default | peak RSS MiB (${icols.map((k) => names[k]).join(' / ')}) |`,
    `|${'---|'.repeat(icols.length + 7)}`)
  for (const r of rec.rows) {
    const i = r.infer
    lines.push(`| ${r.model} | ${icols.map((k) => cell(i[k], 'medianMs', 0)).join(' | ')} | ${cell(i.ptCompiled, 'compileSeconds', 0)} | ` +
      `${fmt(ratio(i[best]?.medianMs, i.stDefaults?.medianMs))} | ${fmt(ratio(i.ptDefault?.medianMs, i.stDefaults?.medianMs))} | ${fmt(ratio(i.onnxruntime?.medianMs, i.stDefaults?.medianMs))} | ` +
      `${fmt(ratio(i.ptDefault?.medianMs, i.stFp32?.medianMs))} | ${icols.map((k) => cell(i[k], 'peakRssMiB', 0)).join(' / ')} |`)
  }
  const errors = []
  for (const r of rec.rows) {
    for (const task of ['train', 'infer']) for (const [k, v] of Object.entries(r[task] ?? {})) if (v?.error) errors.push(`${r.model} ${task} ${names[k] ?? k}: ${v.error}`)
  }
  if (m.peak) {
    const p = m.peak
    const bf16Native = m.bf16
    const ptp = cfg.ptPrecision ?? 'bf16'
    const prec = { ptDefault: 'fp32', ptBest: ptp, ptCompiled: ptp, stFp32: 'fp32', stDefaults: bf16Native ? 'bf16' : 'fp32', onnxruntime: 'fp32' }
    const pct = (flops, seconds, key) => (flops && seconds ? fmt(100 * flops / seconds / p[prec[key]], 1) : 'n/a')
    const ecols = ['ptDefault', best, 'stFp32', 'stDefaults']
    lines.push('', `**Fraction of peak** (achieved FLOP/s / the CPU's peak for the contender's precision: fp32 ${fmt(p.fp32 / 1e9, 0)} GFLOP/s, bf16 ${fmt(p.bf16 / 1e9, 0)} GFLOP/s = ` +
      `${m.cores} cores x ${m.mhz} MHz x ${p.flopsPerCycle.fp32} / ${p.flopsPerCycle.bf16} FLOPs/cycle: ${p.flopsPerCycle.why}). FLOPs counted on the twin (FlopCounterMode: convolutions and matrix products); ` +
      `GFLOPs columns at the reference settings (inference 1x3x512x512, training step = 3 x the training forward at 4x3x256x256), percentages from the FLOPs at this run's settings.`, '',
      `| model | GFLOPs inference | GFLOPs training step | training %: ${ecols.map((k) => names[k]).join(' / ')} | inference %: ${ecols.map((k) => names[k]).join(' / ')} |`, '|---|---|---|---|---|')
    for (const r of rec.rows) {
      const f = r.flops ?? {}
      const fr = r.flopsRun ?? {}
      lines.push(`| ${r.model} | ${fmt(f.inferFlops / 1e9, 1)} | ${fmt(f.trainFlops / 1e9, 1)} | ` +
        `${ecols.map((k) => pct(fr.trainFlops, r.train[k]?.msPerStep / 1000, k)).join(' / ')} | ${ecols.map((k) => pct(fr.inferFlops, r.infer[k]?.medianMs / 1000, k)).join(' / ')} |`)
    }
  }
  const boundary = rec.rows.map((r) => r.infer?.stDefaults?.emptyJobUs).find((v) => typeof v === 'number')
  lines.push('', `Boundary: empty job round trip (schedule on the model's executor, settle the Promise), median of 2000: ${fmt(boundary, 1)} us (target < 50 us).`)
  const by = Object.entries(rec.onnxExportedBy ?? {})
  if (by.length) lines.push('', 'onnxruntime ran segtorch\'s own ONNX export (same architecture and parameter count) where PyTorch could not export the twin:', ...by.map(([m, why]) => `- ${m}: ${why}`))
  if (errors.length) lines.push('', 'Failures:', ...errors.map((e) => `- ${e}`))
  return lines
}

main()
