#!/usr/bin/env node
/**
 * bench/overhead: what segtorch costs on top of libtorch.
 *
 *  1. Boundary + executor: a tiny forward (FCN-ResNet18, output stride 32, 2 classes, a batch of two
 *     3x32x32 float32 images; bench/overhead.cc says why two) called many times from Node (awaiting
 *     each call) against the same loop in C++ through segtorch::Segmenter (bench/overhead.cc, no
 *     Node-API). The difference of the per-call medians is the cost of crossing the boundary and of
 *     the per-model executor thread; the C++ loop that posts each call to a segtorch::Executor splits
 *     it into the thread hop and the Node-API/JS part. An empty job (model.eval(), which only sets the
 *     mode on the executor) measures the round trip with no tensor work at all.
 *  2. Training step: FCN-ResNet18 (output stride 32, 21 classes), batch 4 of 3x256x256 float32 images,
 *     SGD lr 0.01 momentum 0.9, cross-entropy ignoring 255; segtorch from Node against torchvision's
 *     FCN in PyTorch (/usr/bin/python3, Debian's python3-torch: the same libtorch 1.13), same threads.
 *     segtorch's Segmenter::TrainStep from C++ is timed too, to tell the core from the boundary.
 *
 * One command runs everything: this process only drives. Every contender is a child process that waits
 * on stdin (the C++ binary twice, two Node workers, Python), and the measurements are interleaved in
 * rounds with the order rotating, so that changes in machine load hit every contender alike. Each child
 * runs libtorch on exactly one thread (one OpenMP master), as a Node process training one model and a
 * Python script do: libgomp spins much less once several threads of a process have run parallel regions,
 * which would otherwise make the comparison depend on what else a process did before (bench/overhead.cc).
 * Nothing is asserted: this prints a table with the ratios and writes bench/results/overhead.json.
 *
 * Usage: node bench/overhead.js [--calls 1000] [--rounds 20] [--steps 15] [--warmup 3] [--budget 150]
 *                               [--threads N] [--python /usr/bin/python3] [--no-build] [--out FILE]
 * --threads defaults to os.availableParallelism(), what segtorch uses. --budget caps the measuring time
 * in seconds (a third for part 1, the rest for part 2): on a busy machine the run stops after the round
 * in progress, with fewer calls/steps (the table shows the counts).
 *
 * On a machine that other work keeps busy, libgomp's default spin-waiting makes multi-threaded libtorch
 * erratic (a tiny forward can take 10x longer, a training step 5x, on every side alike);
 * OMP_WAIT_POLICY=PASSIVE in the environment (inherited by every child) steadies it. The table prints
 * the load average and the policy in use.
 * The C++ side is built on demand in build-bench/ (SEGTORCH_BENCH_BUILD_DIR overrides), never in build/.
 */
'use strict'

const { spawn, spawnSync } = require('child_process')
const fs = require('fs')
const os = require('os')
const path = require('path')
const readline = require('readline')

const ROOT = path.join(__dirname, '..')
const DEFAULT_THREADS = typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length

// --------------------------------------------------------------------------------------------------
// Options
// --------------------------------------------------------------------------------------------------
function parseArgs (argv) {
  const o = {
    calls: 1000,
    rounds: 20,
    steps: 15,
    warmup: 3,
    budget: 150,
    threads: DEFAULT_THREADS,
    python: '/usr/bin/python3',
    build: true,
    out: path.join(__dirname, 'results', 'overhead.json'),
    buildDir: process.env.SEGTORCH_BENCH_BUILD_DIR ? path.resolve(process.env.SEGTORCH_BENCH_BUILD_DIR) : path.join(ROOT, 'build-bench'),
    serve: null
  }
  for (let i = 0; i < argv.length; ++i) {
    const a = argv[i]
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`)
      return argv[++i]
    }
    const int = () => {
      const v = Number(next())
      if (!Number.isInteger(v) || v < 1) throw new Error(`${a} needs a positive integer`)
      return v
    }
    if (a === '--calls') o.calls = int()
    else if (a === '--rounds') o.rounds = int()
    else if (a === '--steps') o.steps = int()
    else if (a === '--warmup') o.warmup = int()
    else if (a === '--budget') o.budget = int()
    else if (a === '--threads') o.threads = int()
    else if (a === '--python') o.python = next()
    else if (a === '--out') o.out = path.resolve(next())
    else if (a === '--no-build') o.build = false
    else if (a === '--serve') o.serve = next() // internal: a Node worker (tiny | train)
    else if (a === '--help' || a === '-h') {
      console.log('node bench/overhead.js [--calls N] [--rounds N] [--steps N] [--warmup N] [--budget S] [--threads N] [--python PATH] [--no-build] [--out FILE]')
      process.exit(0)
    } else throw new Error(`unknown option ${a}`)
  }
  return o
}

// --------------------------------------------------------------------------------------------------
// Building what is needed
// --------------------------------------------------------------------------------------------------
function run (cmd, args, what) {
  const r = spawnSync(cmd, args, { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
  if (r.status !== 0) {
    const out = `${r.stdout || ''}${r.stderr || ''}${r.error ? String(r.error) : ''}`
    throw new Error(`${what} failed (${cmd} ${args.join(' ')}):\n${out.split('\n').slice(-30).join('\n')}`)
  }
}

function newestMtime (dir, re) {
  let t = 0
  if (!fs.existsSync(dir)) return t
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name)
    if (e.isDirectory()) t = Math.max(t, newestMtime(p, re))
    else if (re.test(e.name)) t = Math.max(t, fs.statSync(p).mtimeMs)
  }
  return t
}

/** dist/ is compiled from lib/: recompile when it is missing or older than the sources. */
function ensureDist () {
  const index = path.join(ROOT, 'dist', 'index.js')
  const stale = !fs.existsSync(index) || newestMtime(path.join(ROOT, 'lib'), /\.(ts|mjs)$/) > newestMtime(path.join(ROOT, 'dist'), /\.(js|mjs)$/)
  if (!stale) return
  log('dist/ is missing or older than lib/: npx tsc -p .')
  run('npx', ['tsc', '-p', '.'], 'TypeScript build')
  fs.copyFileSync(path.join(ROOT, 'lib', 'index.mjs'), path.join(ROOT, 'dist', 'index.mjs'))
}

/** The C++ side, built in its own directory (incremental; a no-op when up to date). */
function ensureBench (o) {
  const exe = path.join(o.buildDir, 'bench_overhead')
  if (!o.build) {
    if (!fs.existsSync(exe)) throw new Error(`${exe} does not exist (drop --no-build to build it)`)
    return exe
  }
  try {
    if (!fs.existsSync(path.join(o.buildDir, 'CMakeCache.txt'))) {
      log(`configuring ${path.relative(ROOT, o.buildDir)}/ (npx cmake-js configure)`)
      run('npx', ['cmake-js', 'configure', '--out', o.buildDir], 'cmake-js configure')
    }
    if (!fs.existsSync(exe)) log('building bench_overhead (the first time compiles the native core: minutes)')
    run('cmake', ['--build', o.buildDir, '--target', 'bench_overhead', '-j', String(os.cpus().length)], 'building bench_overhead')
  } catch (err) {
    // native/ may be mid-edit: an existing binary built from the current bench/overhead.cc still serves.
    if (!fs.existsSync(exe) || fs.statSync(exe).mtimeMs < fs.statSync(path.join(__dirname, 'overhead.cc')).mtimeMs) throw err
    log(`warning: rebuilding bench_overhead failed, using the existing binary (built ${fs.statSync(exe).mtime.toISOString()})\n${err.message}`)
  }
  return exe
}

/** Which addon dist/ loads, and whether native/ changed after it was built (then Node and C++ may differ). */
function addonInfo () {
  let p
  try {
    p = process.env.SEGTORCH_ADDON ? path.resolve(process.env.SEGTORCH_ADDON) : require('node-gyp-build').resolve(ROOT)
  } catch {
    return { path: null }
  }
  if (!fs.existsSync(p)) return { path: null }
  const built = fs.statSync(p).mtimeMs
  const sources = newestMtime(path.join(ROOT, 'native'), /\.(cc|h)$/)
  return { path: path.relative(ROOT, p), built: new Date(built).toISOString(), nativeSourcesNewer: sources > built }
}

// --------------------------------------------------------------------------------------------------
// Children that answer one JSON line per command line
// --------------------------------------------------------------------------------------------------
class Worker {
  constructor (name, cmd, args) {
    this.name = name
    this.stderr = ''
    this.pending = []
    this.exited = null
    this.child = spawn(cmd, args, { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] })
    this.child.stderr.on('data', (d) => { this.stderr = (this.stderr + d).slice(-8000) })
    this.child.on('error', (err) => this.#fail(err))
    this.child.on('exit', (code, signal) => {
      this.exited = { code, signal }
      this.#fail(new Error(`${name} exited (${signal || code})\n${this.stderr}`))
    })
    readline.createInterface({ input: this.child.stdout }).on('line', (line) => {
      const p = this.pending.shift()
      if (!p) return
      let msg
      try {
        msg = JSON.parse(line)
      } catch {
        return p.reject(new Error(`${name} sent a line that is not JSON: ${line.slice(0, 200)}`))
      }
      if (msg.error) p.reject(new Error(`${name}: ${msg.error}`))
      else p.resolve(msg)
    })
    this.ready = new Promise((resolve, reject) => this.pending.push({ resolve, reject }))
  }

  #fail (err) {
    for (const p of this.pending.splice(0)) p.reject(err)
  }

  send (line) {
    if (this.exited) return Promise.reject(new Error(`${this.name} is not running\n${this.stderr}`))
    return new Promise((resolve, reject) => {
      this.pending.push({ resolve, reject })
      this.child.stdin.write(line + '\n')
    })
  }

  close () {
    if (this.exited) return
    try {
      this.child.stdin.end('quit\n')
    } catch {}
    const t = setTimeout(() => { if (!this.exited) this.child.kill() }, 5000)
    t.unref()
  }
}

// --------------------------------------------------------------------------------------------------
// Helpers
// --------------------------------------------------------------------------------------------------
function log (msg) {
  process.stderr.write(`[overhead] ${msg}\n`)
}

/** Deterministic random numbers (mulberry32), so runs feed the same data. */
function rng (seed) {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

function randn (n, rand) {
  const a = new Float32Array(n)
  for (let i = 0; i < n; i += 2) {
    const u = 1 - rand()
    const v = rand()
    const r = Math.sqrt(-2 * Math.log(u))
    a[i] = r * Math.cos(2 * Math.PI * v)
    if (i + 1 < n) a[i + 1] = r * Math.sin(2 * Math.PI * v)
  }
  return a
}

function stats (xs) {
  const s = [...xs].sort((a, b) => a - b)
  const q = (p) => {
    const i = (s.length - 1) * p
    const lo = Math.floor(i)
    return s[lo] + (s[Math.min(lo + 1, s.length - 1)] - s[lo]) * (i - lo)
  }
  return {
    n: s.length,
    median: q(0.5),
    mean: s.reduce((a, b) => a + b, 0) / s.length,
    min: s[0],
    p10: q(0.1),
    p90: q(0.9),
    max: s[s.length - 1]
  }
}

const now = () => process.hrtime.bigint()
const us = (a, b) => Number(b - a) / 1e3
const cpuMsSince = (c) => {
  const d = process.cpuUsage(c)
  return (d.user + d.system) / 1e3
}

function chunks (total, rounds) {
  const base = Math.floor(total / rounds)
  return Array.from({ length: rounds }, (_, i) => base + (i < total % rounds ? 1 : 0)).filter((n) => n > 0)
}

const pad = (s, n) => String(s).padEnd(n)
const lpad = (s, n) => String(s).padStart(n)
const fmt = (x, d = 1) => (x === undefined || x === null || Number.isNaN(x) ? 'n/a' : x.toFixed(d))

// --------------------------------------------------------------------------------------------------
// Node worker (--serve tiny | train): one model, so one executor thread runs all libtorch work
// --------------------------------------------------------------------------------------------------
async function serve (o) {
  const st = require(path.join(ROOT, 'dist', 'index.js'))
  st.setNumThreads(o.threads)
  const reply = (msg) => process.stdout.write(JSON.stringify(msg) + '\n')
  let model
  let x
  let images
  let masks
  const stepOptions = { optimizer: { type: 'sgd', lr: 0.01, momentum: 0.9 }, ignoreIndex: 255 }
  if (o.serve === 'tiny') {
    model = await st.createModel({ arch: 'fcn', backbone: 'resnet18', numClasses: 2, outputStride: 32 })
    x = st.tensor(randn(2 * 3 * 32 * 32, rng(1)), [2, 3, 32, 32])
  } else if (o.serve === 'train') {
    const K = 21
    const N = 4
    const S = 256
    model = await st.createModel({ arch: 'fcn', backbone: 'resnet18', numClasses: K, outputStride: 32 })
    images = st.tensor(randn(N * 3 * S * S, rng(2)), [N, 3, S, S])
    const rand = rng(3)
    const m = new Uint8Array(N * S * S)
    for (let i = 0; i < m.length; ++i) m[i] = Math.floor(rand() * K)
    masks = st.tensor(m, [N, S, S])
  } else {
    throw new Error(`--serve tiny|train, not ${o.serve}`)
  }
  const b = st.backend()
  reply({ ready: true, threads: b.threads, libtorch: b.libtorch, mkldnn: b.mkldnn, addon: addonInfo() })

  const loop = async (n, f) => {
    const t = []
    const c = process.cpuUsage()
    for (let i = 0; i < n; ++i) {
      const a = now()
      await f()
      t.push(us(a, now()))
    }
    return { us: t, cpuUs: (cpuMsSince(c) * 1e3) / Math.max(1, n) }
  }
  const handle = async (words) => {
    const n = Number(words[1])
    switch (words[0]) {
      case 'info':
        return { parameters: model.info().parameters }
      case 'forward':
        return loop(n, () => model.forward(x))
      case 'empty':
        return loop(n, () => model.eval())
      case 'train': {
        const ms = []
        const cpuMs = []
        const loss = []
        for (let i = 0; i < n; ++i) {
          const c = process.cpuUsage()
          const a = now()
          const res = await model.trainStep(images, masks, stepOptions)
          ms.push(us(a, now()) / 1e3)
          cpuMs.push(cpuMsSince(c))
          loss.push(res.loss)
        }
        return { ms, cpuMs, loss }
      }
      default:
        throw new Error(`unknown command '${words[0]}'`)
    }
  }
  let queue = Promise.resolve()
  readline.createInterface({ input: process.stdin }).on('line', (line) => {
    const words = line.trim().split(/\s+/)
    if (!words[0]) return
    if (words[0] === 'quit') {
      queue = queue.then(() => { model.dispose(); process.exit(0) })
      return
    }
    queue = queue.then(() => handle(words)).then(reply, (err) => reply({ error: String(err && err.stack ? err.stack : err) }))
  })
}

// --------------------------------------------------------------------------------------------------
// The benchmark
// --------------------------------------------------------------------------------------------------
async function main () {
  const o = parseArgs(process.argv.slice(2))
  if (o.serve) return serve(o)

  ensureDist()
  const exe = ensureBench(o)
  const t0 = Date.now() // the budget counts from here, after any build
  const loadBefore = os.loadavg()
  const T = String(o.threads)
  const self = __filename

  log(`starting the contenders (${o.threads} threads each)`)
  const w = {
    cpp: new Worker('bench_overhead', exe, ['--threads', T]),
    cppExec: new Worker('bench_overhead --executor', exe, ['--threads', T, '--executor']),
    nodeTiny: new Worker('node worker (tiny)', process.execPath, [self, '--serve', 'tiny', '--threads', T]),
    nodeTrain: new Worker('node worker (train)', process.execPath, [self, '--serve', 'train', '--threads', T]),
    py: new Worker('overhead.py', o.python, [path.join(__dirname, 'overhead.py'), '--threads', T])
  }
  const result = {
    date: new Date().toISOString(),
    options: { ...o, buildDir: path.relative(ROOT, o.buildDir), out: path.relative(ROOT, o.out), serve: undefined }
  }

  try {
    const ready = {}
    for (const [k, v] of Object.entries(w)) ready[k] = await v.ready.catch((err) => ({ failed: err.message }))
    for (const [k, v] of Object.entries(ready)) {
      if (v.failed && k !== 'py') throw new Error(v.failed)
    }
    const pyOk = !ready.py.failed
    if (!pyOk) log(`PyTorch side unavailable: ${ready.py.failed}`)
    result.environment = {
      cpu: os.cpus()[0]?.model,
      cores: os.cpus().length,
      node: process.version,
      threads: { node: ready.nodeTrain.threads, cpp: ready.cpp.threads, cppExecutor: ready.cppExec.threads, python: pyOk ? ready.py.threads : null },
      libtorch: ready.nodeTrain.libtorch,
      torch: pyOk ? ready.py.torch : null,
      torchvision: pyOk ? ready.py.torchvision : null,
      python: pyOk ? ready.py.python : null,
      mkldnn: ready.nodeTrain.mkldnn,
      addon: ready.nodeTrain.addon,
      benchBinary: { path: path.relative(ROOT, exe), built: fs.statSync(exe).mtime.toISOString() },
      omp: { OMP_NUM_THREADS: process.env.OMP_NUM_THREADS ?? null, OMP_WAIT_POLICY: process.env.OMP_WAIT_POLICY ?? null, GOMP_SPINCOUNT: process.env.GOMP_SPINCOUNT ?? null }
    }

    // ---- 1. boundary + executor ------------------------------------------------------------------
    log(`tiny forward: ${o.calls} calls per contender, ${o.rounds} interleaved rounds`)
    const tinyContenders = {
      cppRaw: (n) => w.cpp.send(`tiny raw ${n}`),
      cppDirect: (n) => w.cpp.send(`tiny direct ${n}`),
      cppExecutor: (n) => w.cppExec.send(`tiny executor ${n}`),
      nodeForward: (n) => w.nodeTiny.send(`forward ${n}`),
      nodeEmpty: (n) => w.nodeTiny.send(`empty ${n}`)
    }
    const keys = Object.keys(tinyContenders)
    const tinyTimes = Object.fromEntries(keys.map((k) => [k, []]))
    const tinyCpu = Object.fromEntries(keys.map((k) => [k, 0])) // total CPU µs of the process
    const tinyRounds = Object.fromEntries(keys.map((k) => [k, []])) // per-round medians
    for (const f of Object.values(tinyContenders)) await f(Math.min(50, o.calls))
    const tinyDeadline = t0 + o.budget * 1e3 / 3
    let r = 0
    for (const n of chunks(o.calls, o.rounds)) {
      if (r > 0 && Date.now() > tinyDeadline) {
        log(`time budget for part 1 spent after ${r} of ${o.rounds} rounds: stopping there`)
        break
      }
      for (let j = 0; j < keys.length; ++j) {
        const k = keys[(j + r) % keys.length]
        const res = await tinyContenders[k](n)
        tinyTimes[k].push(...res.us)
        tinyCpu[k] += res.cpuUs * res.us.length
        tinyRounds[k].push(stats(res.us).median)
      }
      ++r
    }
    const tinyStats = Object.fromEntries(keys.map((k) => [k, { ...stats(tinyTimes[k]), cpuUs: tinyCpu[k] / tinyTimes[k].length }]))
    const overhead = tinyStats.nodeForward.median - tinyStats.cppDirect.median
    result.boundary = {
      workload: 'FCN-ResNet18 output stride 32, 2 classes, forward of 2x3x32x32 float32 (eval, no grad)',
      rounds: r,
      stats: tinyStats,
      overheadUsPerCall: overhead,
      // The same difference taken within each round (contenders run back to back), then the median.
      overheadPairedUs: stats(tinyRounds.nodeForward.map((v, i) => v - tinyRounds.cppDirect[i])).median,
      // Extra CPU time per call in the Node process (all threads): JS, Node-API, thread wake-ups, GC.
      overheadCpuUs: tinyStats.nodeForward.cpuUs - tinyStats.cppDirect.cpuUs,
      executorHopUs: tinyStats.cppExecutor.median - tinyStats.cppDirect.median,
      napiAndJsUs: tinyStats.nodeForward.median - tinyStats.cppExecutor.median,
      emptyJobRoundTripUs: tinyStats.nodeEmpty.median,
      targetUs: 50,
      raw: tinyTimes
    }

    // ---- 2. training step -------------------------------------------------------------------------
    log(`training step: ${o.warmup} warm-up + ${o.steps} timed steps per contender, one per round`)
    // Same network on every side: parameter counts, and names/shapes between C++ and torchvision.
    const cppInfo = await w.cpp.send('info')
    const pyInfo = pyOk ? await w.py.send('info') : null
    const nodeInfo = await w.nodeTrain.send('info')
    const norm = (names) => names.map((s) => s.replace(/\s+/g, ''))
    result.network = {
      parameters: { node: nodeInfo.parameters, cpp: cppInfo.parameters, python: pyInfo ? pyInfo.parameters : null },
      namesAndShapesEqual: pyInfo ? JSON.stringify(norm(cppInfo.names)) === JSON.stringify(norm(pyInfo.names)) : null,
      tensors: cppInfo.names.length
    }
    if (pyInfo && !result.network.namesAndShapesEqual) {
      const a = norm(cppInfo.names)
      const b = norm(pyInfo.names)
      const i = a.findIndex((s, j) => s !== b[j])
      log(`warning: parameter names/shapes differ, first at #${i}: segtorch '${a[i]}' vs torchvision '${b[i]}'`)
    }

    const trainContenders = {
      pytorch: pyOk ? (n) => w.py.send(`train ${n}`) : null,
      node: (n) => w.nodeTrain.send(`train ${n}`),
      cpp: (n) => w.cpp.send(`train ${n}`)
    }
    const trainKeys = Object.keys(trainContenders).filter((k) => trainContenders[k])
    const trainTimes = Object.fromEntries(trainKeys.map((k) => [k, { ms: [], cpuMs: [], loss: [] }]))
    for (const k of trainKeys) await trainContenders[k](o.warmup)
    // One step per contender per round, the order rotating, so that load changes hit all alike.
    const trainDeadline = t0 + o.budget * 1e3
    let rounds = 0
    for (; rounds < o.steps; ++rounds) {
      if (rounds >= 3 && Date.now() > trainDeadline) {
        log(`time budget spent after ${rounds} of ${o.steps} training rounds: stopping there`)
        break
      }
      for (let j = 0; j < trainKeys.length; ++j) {
        const k = trainKeys[(j + rounds) % trainKeys.length]
        const res = await trainContenders[k](1)
        for (const f of ['ms', 'cpuMs', 'loss']) {
          if (!Array.isArray(res[f])) throw new Error(`${k} sent no '${f}' (a stale bench_overhead binary? rebuild it)`)
          trainTimes[k][f].push(...res[f])
        }
      }
    }
    const trainStats = Object.fromEntries(Object.entries(trainTimes).map(([k, v]) => [k, { wall: stats(v.ms), cpu: stats(v.cpuMs) }]))
    // Ratios of medians, and the median of the per-round ratios (steps taken back to back).
    const ratios = (a, b) => {
      if (!trainStats[a] || !trainStats[b]) return null
      const paired = trainTimes[a].ms.map((v, i) => v / trainTimes[b].ms[i])
      return {
        wallMedian: trainStats[a].wall.median / trainStats[b].wall.median,
        wallPaired: stats(paired).median,
        wallMin: trainStats[a].wall.min / trainStats[b].wall.min,
        cpuMedian: trainStats[a].cpu.median / trainStats[b].cpu.median
      }
    }
    const checks = await w.cpp.send('checks 5')
    result.training = {
      workload: 'FCN-ResNet18 output stride 32, 21 classes, batch 4 x 3x256x256 float32, SGD lr 0.01 momentum 0.9, cross-entropy ignore 255',
      rounds,
      stats: trainStats,
      ratios: { nodeToPytorch: ratios('node', 'pytorch'), cppToPytorch: ratios('cpp', 'pytorch'), nodeToCpp: ratios('node', 'cpp') },
      targetRatio: 1.05,
      inputChecks: { finiteMs: stats(checks.finiteMs), labelsMs: stats(checks.labelsMs) },
      raw: trainTimes
    }
  } finally {
    for (const v of Object.values(w)) v.close()
  }

  result.loadAverage = { before: loadBefore, after: os.loadavg() }
  result.seconds = (Date.now() - t0) / 1e3
  fs.mkdirSync(path.dirname(o.out), { recursive: true })
  fs.writeFileSync(o.out, JSON.stringify(result, null, 1) + '\n')
  printTable(result)
  console.log(`\nJSON: ${path.relative(process.cwd(), o.out)}  (${fmt(result.seconds, 0)} s of measuring)`)
}

function printTable (r) {
  const e = r.environment
  const b = r.boundary
  const t = r.training
  const la = (a) => a.map((v) => v.toFixed(2)).join(' ')
  console.log(`segtorch bench/overhead: ${e.cpu} (${e.cores} cores); threads node/C++/python ${e.threads.node}/${e.threads.cpp}/${e.threads.python ?? 'n/a'}`)
  console.log(`libtorch ${e.libtorch} (addon), torch ${e.torch ?? 'n/a'} + torchvision ${e.torchvision ?? 'n/a'} (python ${e.python ?? 'n/a'}), Node ${e.node}`)
  console.log(`addon: ${e.addon?.path ?? 'n/a'} (built ${e.addon?.built ?? 'n/a'}); C++: ${e.benchBinary.path} (built ${e.benchBinary.built})`)
  if (e.addon?.nativeSourcesNewer) console.log(`note: native/ changed after ${e.addon.path} was built; the Node and C++ rows may run different code`)
  const busy = r.loadAverage.before[0] > e.cores * 0.5 || r.loadAverage.after[0] > e.cores * 0.5
  console.log(`load average before: ${la(r.loadAverage.before)}, after: ${la(r.loadAverage.after)}; OMP_WAIT_POLICY=${e.omp.OMP_WAIT_POLICY ?? '(unset)'}` +
    (busy ? '\n   machine busy: timings are noisy' + (e.omp.OMP_WAIT_POLICY ? '' : ' (OMP_WAIT_POLICY=PASSIVE steadies them)') : ''))

  console.log(`\n1. Boundary + executor: ${b.workload}; ${b.stats.nodeForward.n} calls each in ${b.rounds} rounds`)
  console.log(`   ${pad('', 42)}${lpad('median µs', 11)}${lpad('mean', 10)}${lpad('p10', 10)}${lpad('p90', 10)}${lpad('min', 10)}${lpad('CPU µs', 10)}`)
  const row = (label, s) => console.log(`   ${pad(label, 42)}${lpad(fmt(s.median), 11)}${lpad(fmt(s.mean), 10)}${lpad(fmt(s.p10), 10)}${lpad(fmt(s.p90), 10)}${lpad(fmt(s.min), 10)}${lpad(fmt(s.cpuUs), 10)}`)
  row('C++  net.forward (raw libtorch)', b.stats.cppRaw)
  row('C++  Segmenter::Forward (same thread)', b.stats.cppDirect)
  row('C++  Segmenter::Forward via Executor', b.stats.cppExecutor)
  row('Node await model.forward()', b.stats.nodeForward)
  row('Node await model.eval() (empty job)', b.stats.nodeEmpty)
  console.log(`   overhead Node vs C++: ${fmt(b.overheadUsPerCall)} µs/call (difference of medians; per-round paired ${fmt(b.overheadPairedUs)}; ` +
    `CPU ${fmt(b.overheadCpuUs)})  target < ${b.targetUs}: ${b.overheadUsPerCall < b.targetUs ? 'met' : 'NOT met'}`)
  console.log(`     of which executor thread hop ${fmt(b.executorHopUs)} µs, Node-API + JS ${fmt(b.napiAndJsUs)} µs; empty-job round trip ${fmt(b.emptyJobRoundTripUs)} µs; ` +
    `ratio Node/C++ ${fmt(b.stats.nodeForward.median / b.stats.cppDirect.median, 3)}`)

  const n = r.network
  const q = t.ratios
  console.log(`\n2. Training step: ${t.workload}; ${t.stats.node.wall.n} steps each, one per round`)
  console.log(`   parameters: segtorch (Node) ${n.parameters.node}, segtorch (C++) ${n.parameters.cpp}, torchvision ${n.parameters.python ?? 'n/a'}; ` +
    `names/shapes identical: ${n.namesAndShapesEqual === null ? 'n/a' : n.namesAndShapesEqual ? 'yes' : 'NO'} (${n.tensors} tensors)`)
  console.log(`   ${pad('', 44)}${lpad('median ms', 11)}${lpad('mean', 9)}${lpad('min', 9)}${lpad('max', 9)}${lpad('CPU ms', 9)}${lpad('/PyTorch', 10)}${lpad('paired', 8)}`)
  const base = t.stats.pytorch ? t.stats.pytorch.wall.median : null
  const trow = (label, s, ratio) => s && console.log(`   ${pad(label, 44)}${lpad(fmt(s.wall.median), 11)}${lpad(fmt(s.wall.mean), 9)}${lpad(fmt(s.wall.min), 9)}` +
    `${lpad(fmt(s.wall.max), 9)}${lpad(fmt(s.cpu.median), 9)}${lpad(base ? fmt(s.wall.median / base, 3) : 'n/a', 10)}${lpad(ratio ? fmt(ratio.wallPaired, 3) : '', 8)}`)
  trow(`PyTorch ${e.torch ?? ''} (Python)`, t.stats.pytorch, null)
  trow('segtorch from Node (await model.trainStep)', t.stats.node, q.nodeToPytorch)
  trow('segtorch from C++ (Segmenter::TrainStep)', t.stats.cpp, q.cppToPytorch)
  if (q.nodeToPytorch) {
    const v = q.nodeToPytorch
    console.log(`   step time ratio segtorch(Node)/PyTorch: ${fmt(v.wallMedian, 3)} (medians; per-round paired ${fmt(v.wallPaired, 3)}, ` +
      `best steps ${fmt(v.wallMin, 3)}, CPU time ${fmt(v.cpuMedian, 3)})  target <= ${t.targetRatio}: ${v.wallMedian <= t.targetRatio ? 'met' : 'NOT met'}`)
    console.log(`   C++/PyTorch ${fmt(q.cppToPytorch.wallMedian, 3)}; Node/C++ ${fmt(q.nodeToCpp.wallMedian, 3)} (paired ${fmt(q.nodeToCpp.wallPaired, 3)})`)
  } else {
    console.log(`   PyTorch unavailable; Node/C++ ${fmt(q.nodeToCpp.wallMedian, 3)}`)
  }
  console.log(`   per-step input checks inside segtorch (C++): finite check on images ${fmt(t.inputChecks.finiteMs.median, 2)} ms, ` +
    `mask label-range check ${fmt(t.inputChecks.labelsMs.median, 2)} ms`)
}

main().catch((err) => {
  console.error(`[overhead] failed: ${err.stack || err}`)
  process.exitCode = 1
})
