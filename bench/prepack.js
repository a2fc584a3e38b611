#!/usr/bin/env node
// bench/prepack: do predict's prepacked convolutions (native/blocks/conv2d.h: weights reordered
// once for oneDNN, libtorch 2.x only) beat the plain ones? For every architecture (default
// backbone, 21 classes), inference ms for 1x3x512x512 to a class map with predict's defaults (bf16
// where the CPU has native bf16, folded BatchNorm, channels-last) and in fp32, with prepacking on
// and off. The switch (SEGTORCH_PREPACK) is read once per process, so each setting runs in its own
// child; the two children alternate round by round (order reversed every other round), median of
// at least --runs runs (and about 3 s) of each child, best round kept. Prints a table with the CPU kind and writes
// bench/results/prepack-<libtorch version>.json.
//   usage: node bench/prepack.js [--rounds N] [--runs N] [--arch a,b] [--size S] [--addon path/segtorch.node]
'use strict'
const { spawnSync } = require('child_process')
const fs = require('fs')
const path = require('path')

const args = process.argv.slice(2)
const opt = (name, def) => { const i = args.indexOf(`--${name}`); return i >= 0 ? args[i + 1] : def }

async function child (arch, size, runs) {
  const st = require('../dist/index.js')
  const x = st.tensor(new Uint8Array(3 * size * size).map((_, i) => (i * 2654435761) >>> 24), [1, 3, size, size])
  const m = await st.createModel({ arch, numClasses: 21 })
  const out = { prepack: st.backend().prepack }
  for (const [name, o] of [['defaults', {}], ['fp32', { precision: 'fp32', channelsLast: true }]]) {
    ;(await m.predict(x, o)).dispose() // warm-up (and the folded, prepacked copy)
    const t1 = process.hrtime.bigint()
    ;(await m.predict(x, o)).dispose()
    // at least `runs` runs and about 3 s: small networks (20-100 ms) vary by 10-40 % from run to run
    const n = Math.max(runs, Math.ceil(3000 / (Number(process.hrtime.bigint() - t1) / 1e6)))
    const times = []
    for (let i = 0; i < n; i++) {
      const t0 = process.hrtime.bigint()
      ;(await m.predict(x, o)).dispose()
      times.push(Number(process.hrtime.bigint() - t0) / 1e6)
    }
    times.sort((a, b) => a - b)
    out[name] = times[times.length >> 1]
  }
  m.dispose()
  process.stdout.write(JSON.stringify(out) + '\n')
}

async function main () {
  if (args[0] === '--child') return child(args[1], Number(args[2]), Number(args[3]))
  const rounds = Number(opt('rounds', '2'))
  const runs = Number(opt('runs', '5'))
  const size = Number(opt('size', '512'))
  const only = opt('arch', '')
  const addon = opt('addon', '')
  const env = addon ? { ...process.env, SEGTORCH_ADDON: path.resolve(addon) } : { ...process.env }
  const st = require('../dist/index.js')
  const archs = Object.keys(st.ARCHITECTURES).filter((a) => !only || only.split(',').includes(a))
  const info = spawnSync(process.execPath, ['-e', 'const b = require("./dist/index.js").backend(); console.log(JSON.stringify({ libtorch: b.libtorch, cpu: b.cpu, threads: b.threads, prepack: b.prepack }))'],
    { cwd: path.join(__dirname, '..'), env, encoding: 'utf8' })
  const be = JSON.parse(info.stdout)
  if (!be.prepack) console.log(`note: this libtorch (${be.libtorch}) cannot prepack: both columns run the same code`)
  const started = Date.now()
  const results = {}
  for (const arch of archs) {
    const best = {}
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 ? ['1', '0'] : ['0', '1']
      for (const flag of order) {
        const r = spawnSync(process.execPath, [__filename, '--child', arch, String(size), String(runs)],
          { env: { ...env, SEGTORCH_PREPACK: flag }, encoding: 'utf8', maxBuffer: 1 << 24 })
        if (r.status !== 0) throw new Error(`${arch} SEGTORCH_PREPACK=${flag}: ${r.stderr}`)
        const o = JSON.parse(r.stdout.trim().split('\n').pop())
        for (const k of ['defaults', 'fp32']) {
          const key = `${k} ${flag === '1' ? 'prepacked' : 'plain'}`
          best[key] = Math.min(best[key] ?? Infinity, o[k])
        }
      }
    }
    results[arch] = best
    const f = (v) => v.toFixed(1)
    console.log(`${arch}: defaults ${f(best['defaults plain'])} -> ${f(best['defaults prepacked'])} ms (${(best['defaults plain'] / best['defaults prepacked']).toFixed(2)}x), ` +
      `fp32 ${f(best['fp32 plain'])} -> ${f(best['fp32 prepacked'])} ms (${(best['fp32 plain'] / best['fp32 prepacked']).toFixed(2)}x)`)
  }
  const header = `bench/prepack: ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC, libtorch ${be.libtorch}, CPU ${be.cpu.model} (${be.cpu.isa}), ${be.threads} threads, ` +
    `1x3x${size}x${size}, best of ${rounds} round(s) of the median of >= ${runs} runs (about 3 s), ${Math.round((Date.now() - started) / 1000)} s`
  console.log('\n' + header + '\n')
  console.log('| model | defaults plain ms | defaults prepacked ms | speed-up | fp32 plain ms | fp32 prepacked ms | speed-up |')
  console.log('|---|---|---|---|---|---|---|')
  for (const [arch, r] of Object.entries(results)) {
    console.log(`| ${arch} | ${r['defaults plain'].toFixed(1)} | ${r['defaults prepacked'].toFixed(1)} | ${(r['defaults plain'] / r['defaults prepacked']).toFixed(2)} | ` +
      `${r['fp32 plain'].toFixed(1)} | ${r['fp32 prepacked'].toFixed(1)} | ${(r['fp32 plain'] / r['fp32 prepacked']).toFixed(2)} |`)
  }
  const dir = path.join(__dirname, 'results')
  fs.mkdirSync(dir, { recursive: true })
  fs.writeFileSync(path.join(dir, `prepack-${be.libtorch}.json`), JSON.stringify({ header, backend: be, results }, null, 2))
}

main().catch((e) => { console.error(e); process.exit(1) })
