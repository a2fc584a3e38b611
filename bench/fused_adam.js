#!/usr/bin/env node
// bench/fused_adam: training step time with Adam/AdamW's fused update (the default) against
// libtorch's own step (SEGTORCH_FUSED_OPTIMIZER=0), at bench/suite's training settings (batch 4 x
// 3x256x256, 21 classes, segtorch's default precision), each measurement in its own process, the
// two interleaved round by round, median step of each, best round kept.
//   usage: node bench/fused_adam.js [--arch icnet,unet,lwrefinenet,fcn] [--rounds 2] [--steps 4] [--type adamw]
'use strict'
const { spawnSync } = require('child_process')
const os = require('os')
const args = process.argv.slice(2)
const opt = (name, def) => { const i = args.indexOf(`--${name}`); return i >= 0 ? args[i + 1] : def }

if (process.env.FUSED_ADAM_CHILD) {
  const st = require('../dist/index.js')
  const c = JSON.parse(process.env.FUSED_ADAM_CHILD)
  ;(async () => {
    const m = await st.createModel({ arch: c.arch, numClasses: 21 })
    const n = 4; const s = 256
    const x = st.tensor(new Float32Array(n * 3 * s * s).map(() => Math.random()), [n, 3, s, s])
    const y = st.tensor(new Uint8Array(n * s * s).map(() => Math.floor(Math.random() * 21)), [n, s, s])
    const times = []
    for (let i = 0; i < 2 + c.steps; i++) {
      const t0 = process.hrtime.bigint()
      await m.trainStep(x, y, { optimizer: { type: c.type, lr: 1e-4, weightDecay: 1e-4 } })
      if (i >= 2) times.push(Number(process.hrtime.bigint() - t0) / 1e6)
    }
    times.sort((a, b) => a - b)
    console.log(JSON.stringify({ ms: times[times.length >> 1], params: m.info().parameters, backend: st.backend() }))
    m.dispose()
  })()
} else {
  const archs = opt('arch', 'icnet,unet,lwrefinenet,fcn').split(',')
  const rounds = Number(opt('rounds', '2'))
  const steps = Number(opt('steps', '4'))
  const type = opt('type', 'adamw')
  const best = {}
  let backend = null
  for (let r = 0; r < rounds; r++) {
    for (const arch of archs) {
      const order = r % 2 === 0 ? ['1', '0'] : ['0', '1']
      for (const fused of order) {
        const p = spawnSync(process.execPath, [__filename], {
          env: { ...process.env, SEGTORCH_FUSED_OPTIMIZER: fused, FUSED_ADAM_CHILD: JSON.stringify({ arch, steps, type }) }, encoding: 'utf8'
        })
        if (p.status !== 0) throw new Error(`${arch}: ${p.stderr}`)
        const out = JSON.parse(p.stdout.trim().split('\n').pop())
        backend = out.backend
        const k = `${arch}/${fused}`
        best[k] = Math.min(best[k] ?? Infinity, out.ms)
        best[`${arch}/params`] = out.params
      }
    }
  }
  console.log(`bench/fused_adam: ${new Date().toISOString()}, ${backend.cpu.model} (${backend.cpu.isa}), libtorch ${backend.libtorch}, ${backend.threads} threads, load ${os.loadavg().map((v) => v.toFixed(2)).join(' ')}; ${type}, batch 4 x 3x256x256, median of ${steps} steps, best of ${rounds} rounds\n`)
  console.log('| arch | parameters | libtorch step ms | fused step ms | speed-up |')
  console.log('|---|---|---|---|---|')
  for (const arch of archs) {
    const a = best[`${arch}/0`]; const b = best[`${arch}/1`]
    console.log(`| ${arch} | ${(best[`${arch}/params`] / 1e6).toFixed(1)} M | ${a.toFixed(1)} | ${b.toFixed(1)} | ${(a / b).toFixed(3)} |`)
  }
}
