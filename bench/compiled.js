#!/usr/bin/env node
// bench/compiled: does predict's compiled path (compile: true: the network traced per input shape,
// optimised for inference) beat the eager path? For every architecture (default backbone, 21
// classes), inference ms for 1x3x512x512 to a class map, eager and compiled, in fp32 and bf16
// (both with folded BatchNorm and channels-last, predict's defaults), the four settings interleaved
// round by round in one process (the ratios come from neighbouring runs), median of the runs of
// each round, best round. The first compiled call (tracing and optimisation) is reported apart.
// Prints a table with the CPU kind and writes bench/results/compiled-<libtorch version>.json.
//   usage: node bench/compiled.js [--rounds N] [--runs N] [--arch a,b] [--size S] [--precisions fp32,bf16]
// (--precisions fp32 on a CPU without native bf16, where bf16 is emulated and 10x slower)
'use strict'
const fs = require('fs')
const os = require('os')
const path = require('path')
const st = require('../dist/index.js')

const args = process.argv.slice(2)
const opt = (name, def) => { const i = args.indexOf(`--${name}`); return i >= 0 ? args[i + 1] : def }
const rounds = Number(opt('rounds', '2'))
const runs = Number(opt('runs', '5'))
const size = Number(opt('size', '512'))
const only = opt('arch', '')
const archs = Object.keys(st.ARCHITECTURES).filter((a) => !only || only.split(',').includes(a))
const precisions = opt('precisions', 'fp32,bf16').split(',')
for (const p of precisions) if (!['fp32', 'bf16'].includes(p)) throw new RangeError(`Expected --precisions of fp32 and/or bf16 but received '${p}'`)
const SETTINGS = Object.fromEntries(precisions.flatMap((p) => [
  [`${p} eager`, { precision: p, compile: false }], [`${p} compiled`, { precision: p, compile: true }]]))

async function main () {
  const started = Date.now()
  const b = st.backend()
  const x = st.tensor(new Uint8Array(3 * size * size).map((_, i) => (i * 2654435761) >>> 24), [1, 3, size, size])
  const results = {}
  for (const arch of archs) {
    const m = await st.createModel({ arch, numClasses: 21 })
    const r = { compileMs: {} }
    try {
      for (const [name, s] of Object.entries(SETTINGS)) {
        const o = { ...s, foldBatchNorm: true, channelsLast: true }
        const t0 = process.hrtime.bigint()
        ;(await m.predict(x, o)).dispose() // warm-up; for compiled settings: tracing + optimisation + one run
        if (s.compile) r.compileMs[s.precision] = Number(process.hrtime.bigint() - t0) / 1e6
      }
      const best = {}
      for (let round = 0; round < rounds; round++) {
        for (const [name, s] of Object.entries(SETTINGS)) {
          const o = { ...s, foldBatchNorm: true, channelsLast: true }
          const times = []
          for (let i = 0; i < runs; i++) {
            const t0 = process.hrtime.bigint()
            ;(await m.predict(x, o)).dispose()
            times.push(Number(process.hrtime.bigint() - t0) / 1e6)
          }
          times.sort((a, c) => a - c)
          const med = times[times.length >> 1]
          best[name] = Math.min(best[name] ?? Infinity, med)
        }
      }
      r.ms = best
      r.stats = await m.compiledStats()
    } catch (err) {
      r.error = err.message
    } finally {
      m.dispose()
    }
    results[arch] = r
    const f = (n) => (r.ms && r.ms[n] !== undefined ? r.ms[n].toFixed(1) : '-')
    process.stderr.write(`${arch}: fp32 ${f('fp32 eager')} / ${f('fp32 compiled')} ms, bf16 ${f('bf16 eager')} / ${f('bf16 compiled')} ms${r.error ? ` (${r.error})` : ''}\n`)
  }
  const out = {
    date: new Date().toISOString(),
    cpu: `${b.cpu.model} (${b.cpu.isa})`,
    cores: os.cpus().length,
    threads: b.threads,
    libtorch: b.libtorch,
    load: os.loadavg().map((v) => v.toFixed(2)).join(' '),
    input: `1x3x${size}x${size} uint8 -> labels, foldBatchNorm + channels-last, ${rounds} rounds x ${runs} runs`,
    seconds: (Date.now() - started) / 1000,
    results
  }
  fs.mkdirSync(path.join(__dirname, 'results'), { recursive: true })
  fs.writeFileSync(path.join(__dirname, 'results', `compiled-${b.libtorch}.json`), JSON.stringify(out, null, 2))
  console.log(`\nbench/compiled: ${out.date}, ${out.cpu}, ${out.cores} cores, ${out.threads} threads, libtorch ${out.libtorch}, load ${out.load}; ${out.input}\n`)
  console.log('| arch | fp32 eager ms | fp32 compiled ms | compiled / eager | bf16 eager ms | bf16 compiled ms | compiled / eager | first compiled call fp32 / bf16 ms |')
  console.log('|---|---|---|---|---|---|---|---|')
  for (const [arch, r] of Object.entries(results)) {
    if (!r.ms) { console.log(`| ${arch} | ${r.error} |||||||`); continue }
    const ms = (n) => (r.ms[n] === undefined ? '-' : r.ms[n].toFixed(1))
    const q = (a, c) => (r.ms[a] === undefined ? '-' : (r.ms[c] / r.ms[a]).toFixed(2))
    const first = (p) => (r.compileMs[p] === undefined ? '-' : r.compileMs[p].toFixed(0))
    console.log(`| ${arch} | ${ms('fp32 eager')} | ${ms('fp32 compiled')} | ${q('fp32 eager', 'fp32 compiled')} | ${ms('bf16 eager')} | ${ms('bf16 compiled')} | ${q('bf16 eager', 'bf16 compiled')} | ${first('fp32')} / ${first('bf16')} |`)
  }
}

main().catch((e) => { console.error(e); process.exit(1) })
