#!/usr/bin/env node
// bench/profiles: where the time goes, for every architecture, segtorch's defaults beside PyTorch's
// twin (compiled by default), in one table: the profile behind each target miss of bench/suite.
// Runs bench/profile-segtorch.js (segtorch's own traces) and bench/op_profile.py (torch.profiler on
// the twin) one after the other per architecture and task, and sums both into the same groups.
//   usage: node bench/profiles.js [--arch a,b] [--task infer,train] [--variants compiled,default,ort]
//          [--steps 3] [--warmup 2] [--addon build-lt2/Release/segtorch.node] [--python PATH] [--out NAME]
// Prints a markdown table and writes bench/results/profiles-<NAME or ISA>.json (per run: groups and
// top operators in ms per step / image). The addon should be built against the same libtorch as
// --python's PyTorch (default: scripts/pytorch-venv.sh's venv), so that both sides run the same kernels.
'use strict'
const { spawnSync } = require('child_process')
const fs = require('fs')
const os = require('os')
const path = require('path')

const args = process.argv.slice(2)
const opt = (name, def) => { const i = args.indexOf(`--${name}`); return i >= 0 ? args[i + 1] : def }
const root = path.join(__dirname, '..')
const list = (s) => s.split(',').filter(Boolean)
const tasks = list(opt('task', 'infer'))
const variants = list(opt('variants', 'compiled'))
const steps = opt('steps', '3')
const warmup = opt('warmup', '2')
const python = opt('python', path.join(os.homedir(), '.cache', 'segtorch-pytorch', 'bin', 'python'))
const addon = path.resolve(opt('addon', path.join(root, 'build-lt2', 'Release', 'segtorch.node')))
const env = { ...process.env, SEGTORCH_ADDON: addon }
const GROUPS = ['conv', 'fused', 'elementwise', 'resize', 'norm', 'pool', 'matmul', 'loss', 'optimizer', 'cast', 'other']

const st = require('../dist/index.js')
const archs = list(opt('arch', Object.keys(st.ARCHITECTURES).join(',')))
const be = JSON.parse(spawnSync(process.execPath, ['-e', 'const b = require("./dist/index.js").backend(); console.log(JSON.stringify(b))'],
  { cwd: root, env, encoding: 'utf8' }).stdout)

// One profiled run: its JSON summary ({ groupsMs, topMs, ... }) and the wall time per step / image.
function profile (argv, cmd, wallFrom) {
  const json = path.join(os.tmpdir(), `segtorch-profiles-${process.pid}.json`)
  fs.rmSync(json, { force: true })
  const r = spawnSync(cmd, [...argv, '--json', json], { cwd: root, env, encoding: 'utf8', maxBuffer: 1 << 26 })
  if (r.status !== 0 || !fs.existsSync(json)) return { error: (r.stderr || r.stdout || '').trim().split('\n').slice(-3).join(' | ') }
  const out = JSON.parse(fs.readFileSync(json, 'utf8'))
  fs.rmSync(json, { force: true })
  return { ...out, wallMs: wallFrom(r.stdout, out) }
}

const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1]
const started = Date.now()
const runs = []
for (const arch of archs) {
  for (const task of tasks) {
    const first = runs.length
    const ours = profile([path.join(__dirname, 'profile-segtorch.js'), arch, task, '--steps', steps, '--warmup', warmup], process.execPath,
      (stdout) => { const m = /([\d /]+) ms per (?:step|image) while profiled/.exec(stdout); return m ? median(m[1].trim().split(' / ').map(Number)) : NaN })
    runs.push({ arch, task, contender: 'segtorch defaults', ...ours })
    for (const v of variants) {
      if (v === 'ort') {  // onnxruntime-node (inference only): bench/ort_profile.js
        if (task !== 'infer') continue
        const o = profile([path.join(__dirname, 'ort_profile.js'), arch, '--steps', steps, '--warmup', warmup, '--threads', String(be.threads), '--python', python],
          process.execPath, (_, out) => out.msMedian)
        runs.push({ arch, task, contender: 'onnxruntime', ...o })
        continue
      }
      const pt = profile([path.join(__dirname, 'op_profile.py'), arch, task, v, '--steps', steps, '--threads', String(be.threads)], python,
        (_, out) => out.msUnprofiled)
      runs.push({ arch, task, contender: `PT ${v}`, ...pt })
    }
    for (const r of runs.slice(first)) {
      console.error(`${arch} ${task} ${r.contender}: ${r.error ? `error: ${r.error}` : `${r.wallMs.toFixed(0)} ms, ops ${Object.values(r.groupsMs).reduce((a, b) => a + b, 0).toFixed(0)} ms`}`)
    }
  }
}

const f = (x) => (x === undefined || x < 0.5 ? '-' : x.toFixed(0))
const header = `bench/profiles: ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC, CPU ${be.cpu.model} (${be.cpu.isa}), ` +
  `${be.threads} threads, segtorch on libtorch ${be.libtorch} (${addon}), PyTorch from ${python}; ms of operator self time per training ` +
  `step (batch 4 x 3x256x256, SGD) or per 1x3x512x512 inference, the mean of ${steps} profiled steps after ${warmup} warm-up(s) ` +
  `(PyTorch: after warm-up and compilation; its precision 'auto' as bench/suite.py); wall = ms per step / image (segtorch: while profiled, median)`
console.log(`\n${header}, ${Math.round((Date.now() - started) / 1000)} s in all\n`)
console.log(`| model | task | contender | wall ms | ops ms | ${GROUPS.join(' | ')} | top non-convolution operator |`)
console.log(`|---|---|---|---|---|${GROUPS.map(() => '---|').join('')}---|`)
for (const r of runs) {
  if (r.error) { console.log(`| ${r.arch} | ${r.task} | ${r.contender} | error: ${r.error.slice(0, 120)} |`); continue }
  const total = Object.values(r.groupsMs).reduce((a, b) => a + b, 0)
  const top = Object.entries(r.topMs).find(([n]) => !/conv|mkldnn|onednn|cpp_fused|kernel_cpp/i.test(n))
  console.log(`| ${r.arch} | ${r.task} | ${r.contender} | ${f(r.wallMs)} | ${f(total)} | ${GROUPS.map((g) => f(r.groupsMs[g])).join(' | ')} | ` +
    `${top ? `${top[0].slice(0, 48)} ${top[1].toFixed(0)}` : '-'} |`)
}
const dir = path.join(__dirname, 'results')
fs.mkdirSync(dir, { recursive: true })
const file = path.join(dir, `profiles-${opt('out', be.cpu.isa)}.json`)
fs.writeFileSync(file, JSON.stringify({ header, backend: be, runs }, null, 1))
console.log(`\nwritten: ${path.relative(root, file)}`)
