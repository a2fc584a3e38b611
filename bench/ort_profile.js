#!/usr/bin/env node
// bench/ort_profile: where onnxruntime-node's time goes for one architecture's inference, in
// bench/profiles.js's groups (the onnxruntime contender of bench/suite, profiled).
//   usage: node bench/ort_profile.js ARCH[/BACKBONE] [--steps 3] [--warmup 2] [--threads N]
//          [--python PATH] [--json out.json]
// The ONNX file is the one bench/suite's onnxruntime column runs: the PyTorch twin exported by
// bench/suite.py (opset 13, --python's torch), or, where PyTorch's exporter refuses the twin,
// segtorch's own export of the same architecture (needs dist/ and an addon). Then onnxruntime-node
// at the suite's settings (graph optimisation 'all', sequential, intra-op threads = --threads) with
// its profiler on: each kernel's time ("Node" events) summed by operator type over the timed runs
// (those after the warm-ups), in ms per 1x3x512x512 image.
'use strict'
const { spawnSync } = require('child_process')
const fs = require('fs')
const os = require('os')
const path = require('path')

const args = process.argv.slice(2)
const opt = (name, def) => { const i = args.indexOf(`--${name}`); return i >= 0 ? args[i + 1] : def }
const [model] = args
if (!model || model.startsWith('--')) {
  console.error('usage: node bench/ort_profile.js ARCH[/BACKBONE] [--steps 3] [--warmup 2] [--threads N] [--python PATH] [--json out.json]')
  process.exit(2)
}
const steps = Number(opt('steps', '3'))
const warmup = Number(opt('warmup', '2'))
const threads = Number(opt('threads', String(os.availableParallelism?.() ?? os.cpus().length)))
const python = opt('python', path.join(os.homedir(), '.cache', 'segtorch-pytorch', 'bin', 'python'))
const SIZE = 512

// onnxruntime's operator types in bench/profiles.js's groups. The NCHWc layout transformer's
// ReorderInput / ReorderOutput belong to its convolutions (as oneDNN's reorders do in op_profile.py).
const GROUP_OF = [
  ['fused', /^(FusedConv|FusedGemm|FusedMatMul|QLinear)/],
  ['conv', /^(Conv|NchwcConv|ConvTranspose|Reorder)/],
  ['resize', /^(Resize|Upsample)/],
  ['norm', /Normalization$/],
  ['pool', /Pool$|^MaxUnpool/],
  ['matmul', /^(MatMul|Gemm)/],
  ['cast', /^Cast$/],
  ['elementwise', /^(Relu|Add|Sum|Mul|Sub|Div|Sigmoid|HardSigmoid|HardSwish|Clip|Tanh|Exp|Max|Min|Where|Erf|Sqrt|Pow|Neg|Abs)$/]
]
const groupOf = (op) => (GROUP_OF.find(([, re]) => re.test(op)) ?? ['other'])[0]

function exportTwin (file) {
  const c = { model, task: 'export', onnx: file, inferSize: SIZE, threads }
  const r = spawnSync(python, [path.join(__dirname, 'suite.py'), JSON.stringify(c)], { encoding: 'utf8' })
  if (r.status === 0 && fs.existsSync(file)) return 'the PyTorch twin (bench/suite.py)'
  const why = ((r.stderr || '').trim().split('\n').filter((l) => /Error|Exception/.test(l)).pop() || 'failed').slice(0, 160)
  // bench/suite.js's own 'export' child (segtorch's exporter, as the suite's onnxruntime column uses).
  const ours = spawnSync(process.execPath, [path.join(__dirname, 'suite.js')],
    { encoding: 'utf8', env: { ...process.env, SEGTORCH_SUITE_CHILD: JSON.stringify({ side: 'export', model, onnx: file, threads }) } })
  if (ours.status !== 0) throw new Error(`export failed: ${why}; segtorch's exporter: ${ours.stderr.trim()}`)
  return `segtorch's exporter (PyTorch's: ${why})`
}

async function main () {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'segtorch-ort-profile-'))
  try {
    const file = path.join(dir, 'model.onnx')
    const exportedBy = exportTwin(file)
    const ort = require('onnxruntime-node')
    const session = await ort.InferenceSession.create(file, {
      intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all',
      enableProfiling: true, profileFilePrefix: path.join(dir, 'trace')
    })
    const x = new ort.Tensor('float32', new Float32Array(3 * SIZE * SIZE).map(() => Math.random()), [1, 3, SIZE, SIZE])
    const times = []
    for (let i = 0; i < warmup + steps; i++) {
      const t0 = process.hrtime.bigint()
      await session.run({ [session.inputNames[0]]: x })
      if (i >= warmup) times.push(Number(process.hrtime.bigint() - t0) / 1e6)
    }
    session.endProfiling()
    await session.release?.()
    const trace = fs.readdirSync(dir).find((f) => f.startsWith('trace') && f.endsWith('.json'))
    if (!trace) throw new Error('onnxruntime wrote no profile')
    const events = JSON.parse(fs.readFileSync(path.join(dir, trace), 'utf8'))
    // The timed runs' windows: the last `steps` model_run events.
    const runs = events.filter((e) => e.cat === 'Session' && e.name === 'model_run').sort((a, b) => a.ts - b.ts).slice(-steps)
    if (runs.length !== steps) throw new Error(`expected ${steps} timed runs in the profile, found ${runs.length}`)
    const inRun = (e) => runs.some((r) => e.ts >= r.ts && e.ts <= r.ts + r.dur)
    const groupsMs = {}
    const byOp = {}
    for (const e of events) {
      if (e.cat !== 'Node' || !e.name.endsWith('_kernel_time') || !inRun(e)) continue
      const op = e.args?.op_name ?? 'unknown'
      const ms = e.dur / 1000 / steps
      groupsMs[groupOf(op)] = (groupsMs[groupOf(op)] ?? 0) + ms
      byOp[op] = (byOp[op] ?? 0) + ms
    }
    const topMs = Object.fromEntries(Object.entries(byOp).sort((a, b) => b[1] - a[1]))
    times.sort((a, b) => a - b)
    const out = { groupsMs, topMs, exportedBy, msProfiled: times, msMedian: times[times.length >> 1], ort: require('onnxruntime-node/package.json').version }
    const json = opt('json', '')
    if (json) fs.writeFileSync(json, JSON.stringify(out, null, 1))
    console.log(`${model}: onnxruntime ${out.ort}, ${out.msMedian.toFixed(0)} ms per image while profiled (${exportedBy})`)
    for (const [op, ms] of Object.entries(topMs).slice(0, 12)) console.log(`  ${op.padEnd(24)} ${ms.toFixed(1)} ms`)
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

main().catch((e) => { console.error(e.stack || e.message); process.exit(1) })
