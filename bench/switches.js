#!/usr/bin/env node
// bench/switches: what one of segtorch's native switches is worth, on and off, every architecture
// (default backbone, 21 classes). The switches are read once per process, so each setting runs in
// its own child; the two children alternate round by round (order reversed every other round),
// best round kept. Each child measures
//   - inference ms for 1x3x512x512 to a class map with predict's defaults (bf16 where the CPU has
//     native bf16, folded BatchNorm, channels-last) and in fp32 (channels-last), and
//   - a training step with the defaults (batch 4 x 3x256x256, SGD lr 0.001 momentum 0.9),
// each the median of at least --runs runs and about 3 s.
//   --switch prepack: SEGTORCH_PREPACK=0 / 1 (predict's prepacked bf16 convolutions, libtorch 2.x)
//   --switch cache:   SEGTORCH_CPU_CACHE_MB=0 / default (the cache of large CPU blocks)
//   --switch pool:    SEGTORCH_POOL_KERNEL=0 / 1 (inference max pooling of contiguous tensors, blocks/max_pool.h)
//   --switch labels:  SEGTORCH_FUSED_LABELS=0 / 1 (predict's labels in one pass, infer/labels.h)
//   --switch winograd: SEGTORCH_WINOGRAD_FP32=0 / 1 (segtorch's fp32 Winograd F(4x4, 3x3) where 'auto' uses it,
//                     predictions and training: blocks/conv2d.h)
//   --switch winogradbf16: SEGTORCH_WINOGRAD_BF16=0 / 1 (predict's bf16 Winograd F(2x2, 3x3) on >= 256-channel 3x3 layers,
//                     blocks/conv2d.h Bf16WinogradApplies)
//   --switch resize:  SEGTORCH_FAST_RESIZE=0 / 1 (predictions' bilinear resizes of channels-last maps by segtorch's kernel,
//                     into their concatenation or addition: blocks/resize.h)
//   --switch fusedbn: SEGTORCH_FUSED_BN=0 / 1 (training batch norm + addition + ReLU as one node, blocks/batch_norm.h;
//                     predictions are the control)
//   --switch fusedbnbf16: SEGTORCH_FUSED_BN_BF16=0 / 1 (that node for bf16 autocast training's bfloat16 activations too)
//   --switch fusedopt: SEGTORCH_FUSED_OPTIMIZER=0 / 1 (the optimizers' one-pass updates, train/optimizer.cc: SGD,
//                     the training steps' optimizer here, with clipping's scaling folded in; Adam / AdamW)
//   --switch gemmconv: SEGTORCH_GEMM_CONV=0 / default (training convolutions by matrix products: the 7x7
//                     channel-rich fc6 layers in bf16 on AMX CPUs, blocks/conv2d.cc GemmTrainingApplies)
//   --switch fastdropout: SEGTORCH_FAST_DROPOUT=0 / 1 (training dropout in one pass each way, blocks/dropout.h)
//   --switch depthwise: SEGTORCH_DEPTHWISE=0 / default (training depthwise convolutions by segtorch's loops where
//     the rule takes them, blocks/depthwise.h)
//   --switch addon --off-addon PATH: two builds, PATH off and --addon on (e.g. a build configured with
//                     -DSEGTORCH_PARALLEL_LOOPS=OFF against the default, whose parallel loops use OpenMP)
// Prints a table with the CPU kind and writes bench/results/<switch>-<libtorch version>.json.
//   --switch taps: SEGTORCH_TAP_CONV=0 / default (convolutions as the taps' matrix products where the rule takes
//     them, blocks/tap_conv.h: ASPP's channel-rich dilated branches on AMX)
//   --switch ppmsplit: SEGTORCH_PPM_SPLIT=0 / default (the head convolution after the pyramid pooling split by its
//     input channels in predictions where the rule takes it, blocks/ppm.h ForwardHead: PSPNet's, UPerNet's)
//   --switch poolbins: SEGTORCH_POOL_BINS=0 / default (adaptive average poolings in predictions by segtorch's one-pass
//     kernel, blocks/pool_bins.h: the pyramid pooling's bins at once, global poolings)
//   --switch compose: SEGTORCH_COMPOSE=0 / default (a 1x1 convolution and the one after it as one composed convolution
//     in predictions where that has fewer multiplications: DFN's layer1 refinement block and head; blocks/composed_conv.h).
//   --switch split1x1: SEGTORCH_SPLIT_1X1=0 / default (a prepacked 1x1 convolution's pixels given to oneDNN as images
//     of about 320 pixels where it has 2048 channels in or out and 4096 pixels or more, bf16 on AMX; blocks/conv2d.cc).
//   usage: node bench/switches.js --switch prepack|cache|pool|labels|winograd|winogradbf16|resize|fusedbn|fusedbnbf16|fusedopt|gemmconv|fastdropout|depthwise|taps|ppmsplit|poolbins|compose|split1x1|addon [--rounds N] [--runs N] [--arch a,b] [--size S]
//          [--no-train] [--no-fp32] [--addon path/segtorch.node]
'use strict'
const { spawnSync } = require('child_process')
const fs = require('fs')
const path = require('path')

const args = process.argv.slice(2)
const opt = (name, def) => { const i = args.indexOf(`--${name}`); return i >= 0 ? args[i + 1] : def }

const SWITCHES = {
  prepack: { env: 'SEGTORCH_PREPACK', off: '0', on: '1' },
  prepackfp32: { env: 'SEGTORCH_PREPACK_FP32', off: '0', on: '1' },
  groupedfp32: { env: 'SEGTORCH_PREPACK_FP32_GROUPED', off: '0', on: '1' },
  cache: { env: 'SEGTORCH_CPU_CACHE_MB', off: '0', on: undefined }, // undefined: the default
  pool: { env: 'SEGTORCH_POOL_KERNEL', off: '0', on: '1' },
  labels: { env: 'SEGTORCH_FUSED_LABELS', off: '0', on: '1' },
  winograd: { env: 'SEGTORCH_WINOGRAD_FP32', off: '0', on: '1' },
  winogradbf16: { env: 'SEGTORCH_WINOGRAD_BF16', off: '0', on: '1' },
  resize: { env: 'SEGTORCH_FAST_RESIZE', off: '0', on: '1' },
  fusedbn: { env: 'SEGTORCH_FUSED_BN', off: '0', on: '1' },
  fusedbnbf16: { env: 'SEGTORCH_FUSED_BN_BF16', off: '0', on: '1' },
  fusedopt: { env: 'SEGTORCH_FUSED_OPTIMIZER', off: '0', on: '1' },
  gemmconv: { env: 'SEGTORCH_GEMM_CONV', off: '0', on: undefined }, // undefined: the default rule
  fastdropout: { env: 'SEGTORCH_FAST_DROPOUT', off: '0', on: '1' },
  depthwise: { env: 'SEGTORCH_DEPTHWISE', off: '0', on: undefined }, // undefined: the default rule
  taps: { env: 'SEGTORCH_TAP_CONV', off: '0', on: undefined },
  ppmsplit: { env: 'SEGTORCH_PPM_SPLIT', off: '0', on: undefined },
  poolbins: { env: 'SEGTORCH_POOL_BINS', off: '0', on: undefined },
  compose: { env: 'SEGTORCH_COMPOSE', off: '0', on: undefined },
  split1x1: { env: 'SEGTORCH_SPLIT_1X1', off: '0', on: undefined },
  addon: { env: 'SEGTORCH_ADDON' } // off / on: --off-addon and --addon
}

// Median ms of `fn` over at least `runs` runs and about 3 s, after one warm-up call: small networks
// (20-100 ms) vary by 10-40 % from run to run.
async function median (fn, runs) {
  await fn()
  const t1 = process.hrtime.bigint()
  await fn()
  const n = Math.max(runs, Math.ceil(3000 / (Number(process.hrtime.bigint() - t1) / 1e6)))
  const times = []
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint()
    await fn()
    times.push(Number(process.hrtime.bigint() - t0) / 1e6)
  }
  times.sort((a, b) => a - b)
  return times[times.length >> 1]
}

async function child (arch, size, runs, train, fp32) {
  const st = require('../dist/index.js')
  const x = st.tensor(new Uint8Array(3 * size * size).map((_, i) => (i * 2654435761) >>> 24), [1, 3, size, size])
  const m = await st.createModel({ arch, numClasses: 21 })
  const out = { prepack: st.backend().prepack, cacheLimit: st.cpuMemoryStats().limitBytes }
  for (const [name, o] of [['defaults', {}], ...(fp32 ? [['fp32', { precision: 'fp32', channelsLast: true }]] : [])]) {
    out[name] = await median(async () => (await m.predict(x, o)).dispose(), runs)
  }
  if (train) {
    const n = 4; const s = 256
    const xb = st.tensor(new Uint8Array(n * 3 * s * s).map((_, i) => (i * 2654435761) >>> 24), [n, 3, s, s])
    const yb = st.tensor(new Uint8Array(n * s * s).map((_, i) => ((i * 2654435761) >>> 24) % 21), [n, s, s])
    const o = { optimizer: { type: 'sgd', lr: 0.001, momentum: 0.9 } }
    try {
      out.train = await median(() => m.trainStep(xb, yb, o), Math.min(runs, 3))
    } catch (e) { // e.g. dilated's bf16 step diverging on random labels: no number
      out.train = null
      process.stderr.write(`${arch} training: ${e.message}\n`)
    }
  }
  m.dispose()
  process.stdout.write(JSON.stringify(out) + '\n')
}

async function main () {
  if (args[0] === '--child') return child(args[1], Number(args[2]), Number(args[3]), args[4] === '1', args[5] === '1')
  const sw = SWITCHES[opt('switch', '')]
  if (!sw) throw new Error(`Expected --switch ${Object.keys(SWITCHES).join(' | ')}`)
  const swName = opt('switch')
  if (swName === 'addon') {
    if (!opt('off-addon') || !opt('addon')) throw new Error('Expected --off-addon PATH and --addon PATH with --switch addon')
    sw.off = path.resolve(opt('off-addon'))
    sw.on = path.resolve(opt('addon'))
  }
  const train = !args.includes('--no-train')
  const fp32 = !args.includes('--no-fp32')
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
  if (swName === 'prepack' && !be.prepack) console.log(`note: this libtorch (${be.libtorch}) cannot prepack: both columns run the same code`)
  const KINDS = ['defaults', ...(fp32 ? ['fp32'] : []), ...(train ? ['train'] : [])]
  const started = Date.now()
  const results = {}
  for (const arch of archs) {
    const best = {}
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 ? ['on', 'off'] : ['off', 'on']
      for (const state of order) {
        const childEnv = { ...env }
        delete childEnv[sw.env]
        if (sw[state] !== undefined) childEnv[sw.env] = sw[state]
        const r = spawnSync(process.execPath, [__filename, '--child', arch, String(size), String(runs), train ? '1' : '0', fp32 ? '1' : '0'],
          { env: childEnv, encoding: 'utf8', maxBuffer: 1 << 24 })
        if (r.status !== 0) throw new Error(`${arch} ${sw.env}=${sw[state] ?? '(default)'}: ${r.stderr}`)
        const o = JSON.parse(r.stdout.trim().split('\n').pop())
        for (const k of KINDS) best[`${k} ${state}`] = Math.min(best[`${k} ${state}`] ?? Infinity, o[k] ?? NaN)
      }
    }
    results[arch] = best
    console.log(`${arch}: ` + KINDS.map((k) => `${k} ${best[`${k} off`].toFixed(1)} -> ${best[`${k} on`].toFixed(1)} ms (${(best[`${k} off`] / best[`${k} on`]).toFixed(2)}x)`).join(', '))
  }
  const header = `bench/switches --switch ${swName} (${sw.env} off = ${sw.off}, on = ${sw.on ?? 'default'}): ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC, libtorch ${be.libtorch}, CPU ${be.cpu.model} (${be.cpu.isa}), ${be.threads} threads, ` +
    `1x3x${size}x${size}, best of ${rounds} round(s) of the median of >= ${runs} runs (about 3 s), ${Math.round((Date.now() - started) / 1000)} s`
  console.log('\n' + header + '\n')
  const names = { defaults: 'predict defaults', fp32: 'predict fp32', train: 'training step' }
  console.log('| model | ' + KINDS.map((k) => `${names[k]} off ms | on ms | speed-up`).join(' | ') + ' |')
  console.log('|---|' + KINDS.map(() => '---|---|---|').join(''))
  for (const [arch, r] of Object.entries(results)) {
    console.log(`| ${arch} | ` + KINDS.map((k) => `${r[`${k} off`].toFixed(1)} | ${r[`${k} on`].toFixed(1)} | ${(r[`${k} off`] / r[`${k} on`]).toFixed(2)}`).join(' | ') + ' |')
  }
  const dir = path.join(__dirname, 'results')
  fs.mkdirSync(dir, { recursive: true })
  fs.writeFileSync(path.join(dir, `${swName}-${be.libtorch}.json`), JSON.stringify({ header, backend: be, results }, null, 2))
}

main().catch((e) => { console.error(e); process.exit(1) })
