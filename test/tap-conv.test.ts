// Convolutions as a sum over the kernel's taps of matrix products on the output pixels each tap reaches
// (blocks/tap_conv.h). On CPUs with AMX and libtorch 2.x, bf16 convolutions with more than 1024 input channels and
// a dilation of 3 or more (ASPP's branches) run this way in training and in predictions; here the path is forced
// (binding._convTrain's path 'taps') so that every CPU checks it against oneDNN's convolution and against a float64
// reference: outputs, input, weight and bias gradients, and relu(conv + addend) without gradients; taps that reach
// only padding (their weight gradient exactly zero), padding unlike the dilation, larger kernels; and the rule.
import * as assert from 'assert'
import { spawnSync } from 'child_process'
import * as fs from 'fs'
import * as path from 'path'
import { backend, createModel } from '../lib'
import { assertNearReference, ConvCase, convData, convInfer, convReference, convTrain, referenceFor, relErr } from './conv-reference'
import { CHILD_REGISTER, randomImages, randomMasks, ROOT, tmpdir, toBf16 } from './helpers'

function conv (n: number, c: number, h: number, w: number, k: number, kh: number, pad: number, dil: number, bias: boolean): ConvCase {
  return { n, c, h, w, k, kh, kw: kh, stride: 1, pad, dil, groups: 1, bias }
}

async function checkTraining (k: ConvCase, bf16: boolean): Promise<void> {
  const d = convData(k, k.c * 5 + k.h * 3 + k.dil + (bf16 ? 1 : 0))
  // bf16 autocast rounds the weight and bias for both paths.
  const ref = referenceFor(k, d, bf16, true)
  const taps = await convTrain(k, d, 'taps', bf16)
  const onednn = await convTrain(k, d, 'onednn', bf16)
  assert.strictEqual(taps.ran, 'taps')
  assert.strictEqual(onednn.ran, 'onednn')
  // float32: float sums.
  assertNearReference(taps.parts, onednn.parts, ref, bf16, 2e-6, 'taps')
  // A tap that reaches only padding gets an exact zero.
  const dw = taps.parts[2]
  for (let o = 0; o < k.k; o++) {
    for (let c = 0; c < k.c; c++) {
      for (let i = 0; i < k.kh; i++) {
        for (let j = 0; j < k.kw; j++) {
          const rowDead = i * k.dil - k.pad > k.h - 1 || (outRows(k) - 1) + i * k.dil - k.pad < 0
          const colDead = j * k.dil - k.pad > k.w - 1 || (outCols(k) - 1) + j * k.dil - k.pad < 0
          if (rowDead || colDead) assert.strictEqual(dw[((o * k.c + c) * k.kh + i) * k.kw + j], 0)
        }
      }
    }
  }
}

const outRows = (k: ConvCase): number => k.h + 2 * k.pad - k.dil * (k.kh - 1)
const outCols = (k: ConvCase): number => k.w + 2 * k.pad - k.dil * (k.kw - 1)

async function checkInference (k: ConvCase, bf16: boolean): Promise<void> {
  const d = convData(k, k.c * 11 + k.h + k.dil + (bf16 ? 1 : 0))
  // The inference copy's values: weight, bias, x and the addend in bf16 where bf16.
  const r = bf16 ? (a: Float32Array): Float32Array => toBf16(a) : (a: Float32Array): Float32Array => a
  const ref = convReference(k, r(d.x), r(d.wt), d.b && r(d.b), d.dy)[0]
  const add = r(d.dy)
  for (let i = 0; i < ref.length; i++) ref[i] = Math.max(0, ref[i] + add[i])
  const taps = await convInfer(k, d, 'taps', bf16)
  const onednn = await convInfer(k, d, 'onednn', bf16)
  assert.strictEqual(taps.ran, 'taps')
  assert.strictEqual(onednn.ran, 'onednn')
  const e = relErr(taps.y, ref); const eo = relErr(onednn.y, ref)
  const what = `relu(conv + add): taps ${e.toExponential(2)}, oneDNN ${eo.toExponential(2)}`
  assert.ok(bf16 ? e < 8e-3 && e <= 2 * eo + 1e-3 : e < 2e-6, what)
}

describe('convolutions by the taps\' matrix products (ASPP\'s channel-rich dilated branches on AMX)', function () {
  this.timeout(120000)
  const cases: Array<[string, ConvCase]> = [
    ['3 x 3, dilation 5 on 13 x 17, bias: some taps reach padding only for some pixels', conv(2, 24, 13, 17, 20, 3, 5, 5, true)],
    ['3 x 3, dilation 12 on 9 x 10: only the centre tap reaches the map', conv(2, 16, 9, 10, 12, 3, 12, 12, false)],
    ['3 x 3, padding 2, dilation 3, no bias: padding unlike the dilation', conv(1, 20, 11, 8, 18, 3, 2, 3, false)],
    ['5 x 5, padding 4, dilation 2, bias', conv(2, 12, 10, 9, 16, 5, 4, 2, true)],
    ['3 x 3 without padding, dilation 2', conv(1, 16, 12, 13, 8, 3, 0, 2, true)]
  ]
  for (const bf16 of [false, true]) {
    const t = bf16 ? 'bf16 autocast' : 'float32'
    for (const [name, k] of cases) {
      it(`training, ${t}: ${name}: outputs and gradients as a float64 reference`, async () => { await checkTraining(k, bf16) })
    }
  }
  for (const bf16 of [false, true]) {
    const t = bf16 ? 'bf16' : 'float32'
    for (const [name, k] of cases.slice(0, 4)) {
      it(`predictions, ${t}: ${name}: relu(conv + addend) as a float64 reference`, async () => { await checkInference(k, bf16) })
    }
  }

  it('the rule: bf16 with more than 1024 input channels and a dilation of 3 or more, on AMX with libtorch 2.x only', async () => {
    const b = backend()
    const on = b.cpu.isa === 'AMX' && Number(b.libtorch.split('.')[0]) >= 2
    const taps = on ? 'taps' : 'onednn'
    // [case, bf16, training's path, predictions' path]
    const expect: Array<[ConvCase, boolean, string, string]> = [
      [conv(1, 1040, 7, 7, 64, 3, 3, 3, false), true, taps, taps],
      // Fewer than 64 outputs: in training only from rate 12.
      [conv(1, 1040, 7, 7, 16, 3, 3, 3, false), true, 'onednn', taps],
      [conv(1, 1040, 7, 7, 16, 3, 12, 12, false), true, taps, taps],
      [conv(1, 1040, 7, 7, 64, 3, 3, 3, false), false, 'onednn', 'onednn'],
      [conv(1, 1024, 7, 7, 64, 3, 3, 3, false), true, 'onednn', 'onednn'],
      [conv(1, 1040, 7, 7, 64, 3, 2, 2, false), true, 'onednn', 'onednn']
    ]
    for (const [k, bf16, trainPath, inferPath] of expect) {
      const d = convData(k, 5)
      const what = `${k.c} -> ${k.k} channels, dilation ${k.dil}, ${bf16 ? 'bf16' : 'float32'}`
      assert.strictEqual((await convTrain(k, d, 'rule', bf16)).ran, trainPath, `training: ${what}`)
      assert.strictEqual((await convInfer(k, d, 'rule', bf16)).ran, inferPath, `predictions: ${what}`)
    }
  })

  it('a whole DeepLab v3 with every eligible convolution by the taps (SEGTORCH_TAP_CONV=1): the same fp32 logits, loss and step', async () => {
    // The forced path takes every stride-1 ungrouped convolution of the network (the backbone's 3 x 3 and 1 x 1 ones
    // too), not only ASPP's: in a child process, as the variable is read once. The same seed for ASPP's dropout.
    const model = await createModel({ arch: 'deeplabv3', backbone: 'resnet18', numClasses: 3, outputStride: 8 })
    const dir = tmpdir()
    try {
      const x = randomImages(2, 3, 67, 75, 21)
      const y = randomMasks(2, 67, 75, 3, 22)
      await model.save(path.join(dir, 'm.segtorch'))
      fs.writeFileSync(path.join(dir, 'in.json'), JSON.stringify({ x: Array.from(x.dataSync()), y: Array.from(y.dataSync()) }))
      const script = `
        const fs = require('fs')
        const { loadModel, tensor } = require(${JSON.stringify(path.join(ROOT, 'lib'))})
        ;(async () => {
          const dir = process.argv[1]
          const m = await loadModel(dir + '/m.segtorch')
          const d = JSON.parse(fs.readFileSync(dir + '/in.json', 'utf8'))
          const x = tensor(Float32Array.from(d.x), [2, 3, 67, 75]), y = tensor(Uint8Array.from(d.y), [2, 67, 75])
          const before = (await m.predict(x, { precision: 'fp32', output: 'logits' })).dataSync()
          await m._native().seed(7)
          const step = await m.trainStep(x, y, { precision: 'fp32', optimizer: { type: 'sgd', lr: 0.05, momentum: 0 } })
          const after = (await m.predict(x, { precision: 'fp32', output: 'logits' })).dataSync()
          fs.writeFileSync(dir + '/out-' + process.argv[2] + '.json', JSON.stringify({ before: Array.from(before), loss: step.loss, after: Array.from(after) }))
        })().catch((e) => { console.error(e); process.exit(1) })`
      const runs: Record<string, { before: number[], loss: number, after: number[] }> = {}
      for (const mode of ['0', '1']) {
        const child = spawnSync(process.execPath, ['-r', CHILD_REGISTER, '-e', script, dir, mode],
          { cwd: ROOT, encoding: 'utf8', env: { ...process.env, SEGTORCH_TAP_CONV: mode } })
        assert.strictEqual(child.status, 0, child.stderr)
        runs[mode] = JSON.parse(fs.readFileSync(path.join(dir, `out-${mode}.json`), 'utf8'))
      }
      const rel = (a: number[], b: number[]): number => {
        let d = 0; let m = 0
        for (let i = 0; i < a.length; i++) { d = Math.max(d, Math.abs(a[i] - b[i])); m = Math.max(m, Math.abs(b[i])) }
        return d / m
      }
      const [off, on] = [runs['0'], runs['1']]
      assert.ok(rel(on.before, off.before) < 1e-4, `logits before the step: ${rel(on.before, off.before)}`)
      assert.ok(Math.abs(on.loss - off.loss) < 1e-5 * Math.abs(off.loss), `loss ${on.loss} against ${off.loss}`)
      assert.ok(rel(on.after, off.after) < 1e-3, `logits after the step: ${rel(on.after, off.after)}`)
      // The step changed the logits (the comparison above is not of two unchanged models).
      assert.ok(rel(off.after, off.before) > 1e-2, `the step moved the logits by ${rel(off.after, off.before)}`)
    } finally {
      model.dispose()
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })
})
