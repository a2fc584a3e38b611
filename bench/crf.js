#!/usr/bin/env node
/**
 * bench/crf: the dense CRF (segtorch.crf, permutohedral lattice) on 512x512 RGB images with the
 * default options (gaussian sxy 3 compat 3, bilateral sxy 80 srgb 13 compat 10, 5 iterations), with
 * 21 classes (PASCAL VOC) and with 2 classes. The image is a synthetic scene (smooth colour regions
 * plus noise) and the probabilities a noisy, blurred version of its regions, so that the lattice
 * has about as many vertices as on a photograph. Prints the median time of a few runs per case and
 * writes bench/results/crf.json. The CPU time of the process (all threads) is printed too: on a
 * machine shared with other work it moves less than the wall time. Nothing is asserted.
 *
 * Usage: node bench/crf.js [--runs 5] [--size 512] [--threads N] [--out FILE]
 */
'use strict'

const fs = require('fs')
const os = require('os')
const path = require('path')

const root = path.join(__dirname, '..')
const segtorch = require(root)

function arg (name, def) {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 ? process.argv[i + 1] : def
}
const runs = Number(arg('runs', 5))
const size = Number(arg('size', 512))
const threads = Number(arg('threads', typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length))
const outFile = arg('out', path.join(root, 'bench', 'results', 'crf.json'))
segtorch.setNumThreads(threads)

function rng (seed) {
  let s = seed >>> 0
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0
    return s / 4294967296
  }
}

/** Regions of a k-class scene: k random discs over a background, each with its own colour. */
function scene (h, w, k, seed) {
  const r = rng(seed)
  const labels = new Int32Array(h * w)
  const discs = []
  for (let c = 1; c < k; c++) discs.push({ c, y: r() * h, x: r() * w, rad: (0.08 + 0.2 * r()) * Math.min(h, w) })
  const palette = Array.from({ length: k }, () => [r() * 255, r() * 255, r() * 255])
  const image = new Uint8Array(3 * h * w)
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let l = 0
      for (const d of discs) if ((y - d.y) ** 2 + (x - d.x) ** 2 < d.rad ** 2) l = d.c
      labels[y * w + x] = l
      for (let ch = 0; ch < 3; ch++) {
        const v = palette[l][ch] + 30 * Math.sin((x + 2 * y + 40 * ch) / 37) + (r() - 0.5) * 30
        image[ch * h * w + y * w + x] = Math.max(0, Math.min(255, Math.round(v)))
      }
    }
  }
  // Probabilities: the true class about 0.5, the rest shared, with noise.
  const n = h * w
  const probs = new Float32Array(k * n)
  for (let i = 0; i < n; i++) {
    let s = 0
    for (let c = 0; c < k; c++) s += (probs[c * n + i] = (c === labels[i] ? 0.5 : 0.5 / (k - 1)) * (0.3 + 1.4 * r()))
    for (let c = 0; c < k; c++) probs[c * n + i] /= s
  }
  return { image, probs }
}

function median (a) {
  const s = [...a].sort((x, y) => x - y)
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}

async function main () {
  const results = []
  console.log(`dense CRF, ${size}x${size} RGB, default options, ${threads} thread(s), median of ${runs} runs (after one warm-up)`)
  console.log(`load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}, libtorch ${segtorch.backend().libtorch}`)
  for (const k of [21, 2]) {
    const { image, probs } = scene(size, size, k, 42 + k)
    const im = segtorch.tensor(image, [3, size, size])
    const p = segtorch.tensor(probs, [k, size, size])
    ;(await segtorch.crf(im, p)).dispose()
    const times = []
    const cpu = []
    for (let i = 0; i < runs; i++) {
      const c0 = process.cpuUsage()
      const t0 = process.hrtime.bigint()
      const out = await segtorch.crf(im, p)
      times.push(Number(process.hrtime.bigint() - t0) / 1e6)
      const c = process.cpuUsage(c0)
      cpu.push((c.user + c.system) / 1000)
      out.dispose()
    }
    const row = { classes: k, size, threads, medianMs: median(times), minMs: Math.min(...times), cpuMedianMs: median(cpu), runsMs: times }
    results.push(row)
    console.log(`  ${String(k).padStart(2)} classes: ${row.medianMs.toFixed(1)} ms median (min ${row.minMs.toFixed(1)} ms; runs ${times.map((t) => t.toFixed(0)).join(', ')}); ` +
      `CPU time ${row.cpuMedianMs.toFixed(0)} ms median (all threads)`)
  }
  fs.mkdirSync(path.dirname(outFile), { recursive: true })
  fs.writeFileSync(outFile, JSON.stringify({ date: new Date().toISOString(), loadavg: os.loadavg(), results }, null, 2))
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
