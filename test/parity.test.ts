/**
 * Parity with torchvision: a twin built by test/python/twin.py (random weights with realistic
 * batch-norm statistics, same thread count as segtorch), its state dict loaded strictly into the
 * segtorch model, eval-mode logits compared.
 */
import * as assert from 'assert'
import { createModel, Images, ModelOptions, Tensor } from '../lib'
import { makeTwin, maxAbsDiff, torchvisionMissing, parityTolerance } from './twin'

const TWINS: Array<[string, ModelOptions]> = [
  ['fcn_resnet50', { arch: 'fcn', backbone: 'resnet50', numClasses: 21, aux: true }],
  ['deeplabv3_resnet50', { arch: 'deeplabv3', backbone: 'resnet50', numClasses: 21, aux: true }],
  ['fcn_resnet101', { arch: 'fcn', backbone: 'resnet101', numClasses: 21, aux: true }],
  ['deeplabv3_resnet101', { arch: 'deeplabv3', backbone: 'resnet101', numClasses: 21, aux: true }]
]
// Odd sizes (not multiples of 8): a VOC-sized image for the ResNet-50 pair, a small odd one for all.
const ODD: Record<string, Array<[number, number]>> = {
  fcn_resnet50: [[97, 129], [375, 500]],
  deeplabv3_resnet50: [[97, 129], [375, 500]],
  fcn_resnet101: [[97, 129]],
  deeplabv3_resnet101: [[97, 129]]
}

describe('parity with torchvision', () => {
  for (const [kind, options] of TWINS) {
    it(`${kind}: strict state-dict load, eval logits within 1e-4`, async function () {
      const why = torchvisionMissing()
      if (why) { console.log(`      skipped: ${why}`); this.skip() }
      const twin = makeTwin(kind, 64, 96, ODD[kind])
      const m = await createModel(options)
      try {
        await m.loadStateDict(twin.statePlain)
        const y = await m.forward(twin.x as Images)
        assert.deepStrictEqual(y.shape, twin.shape)
        const d = maxAbsDiff(y.dataSync(), twin.y)
        assert.ok(d <= parityTolerance(twin), `max abs diff ${d}`)
        // Sizes that are not multiples of the output stride: no padding, the same outputs (issue 13).
        for (const [h, w] of ODD[kind]) {
          const { x, y: ref } = twin.at[`${h}x${w}`]
          const out = await m.forward(x as Images, { precision: 'fp32' })
          assert.deepStrictEqual([...out.shape], [1, 21, h, w])
          const dOdd = maxAbsDiff(out.dataSync(), ref)
          const logits = await m.predict(x as Images, { output: 'logits', precision: 'fp32' })
          const dPredict = maxAbsDiff(logits.dataSync(), ref)
          console.log(`      ${h}x${w}: forward max |diff| ${dOdd.toExponential(2)}, predict(logits, fp32) ${dPredict.toExponential(2)}`)
          assert.ok(dOdd <= parityTolerance(twin), `${h}x${w}: forward max abs diff ${dOdd}`)
          assert.ok(dPredict <= parityTolerance(twin), `${h}x${w}: predict max abs diff ${dPredict}`)
        }
      } finally {
        m.dispose()
      }
    })
  }
})

// torchvision's MobileNetV3 segmentation models run at any size without padding, and so does
// segtorch: compare at sizes that are no multiple of the stride, through forward() and through
// predict() (batch norm folded into the convolutions, fp32). Full-width models: MobileNetV3 is
// small. The twin's BN statistics come from its first (largest) size: taken at 64x96, where most
// pixels are near a border, they blow the logits up to |y| ~ 400 at 375x500, and the folded
// weights' fp32 rounding (relative 4e-6) then exceeds 1e-4 in absolute terms.
const MBV3_TWINS: Array<[string, ModelOptions, number]> = [
  ['deeplabv3_mobilenet_v3_large', { arch: 'deeplabv3', backbone: 'mobilenetv3_large', numClasses: 21, aux: true }, 11029328],
  ['lraspp_mobilenet_v3_large', { arch: 'lraspp', numClasses: 21 }, 3221538]
]

describe('parity with torchvision: MobileNetV3-Large models at any input size', () => {
  for (const [kind, options, params] of MBV3_TWINS) {
    it(`${kind}: strict state-dict load, eval logits within 1e-4 at 375x500, 97x129 and 64x96 (forward and predict fp32)`, async function () {
      const why = torchvisionMissing()
      if (why) { console.log(`      skipped: ${why}`); this.skip() }
      const twin = makeTwin(kind, 375, 500, [[97, 129], [64, 96]])
      assert.strictEqual(twin.params, params)
      const m = await createModel(options)
      try {
        assert.strictEqual(m.info().parameters, params)
        await m.loadStateDict(twin.state)
        const tol = parityTolerance(twin)
        const figures: string[] = []
        for (const { h, w, x, y } of [{ h: 375, w: 500, x: twin.x, y: twin.y }, ...twin.more]) {
          const out = await m.forward(x as Images)
          assert.deepStrictEqual(out.shape, [1, 21, h, w])
          const d = maxAbsDiff(out.dataSync(), y)
          const p = await m.predict(x as Images, { output: 'logits', precision: 'fp32' }) as Tensor<'float32'>
          const dp = maxAbsDiff(p.dataSync(), y)
          figures.push(`${h}x${w}: forward ${d.toExponential(2)}, predict ${dp.toExponential(2)}`)
          assert.ok(d <= tol, `${h}x${w} forward: max abs diff ${d}`)
          assert.ok(dp <= tol, `${h}x${w} predict: max abs diff ${dp}`)
        }
        console.log(`      max |diff| ${figures.join('; ')}`)
      } finally {
        m.dispose()
      }
    })
  }
})
