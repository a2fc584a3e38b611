/**
 * Parity with torchvision: a twin built by test/python/twin.py (random weights with realistic
 * batch-norm statistics, same thread count as segtorch), its state dict loaded strictly into the
 * segtorch model, eval-mode logits compared.
 */
import * as assert from 'assert'
import { createModel, Images, ModelOptions } from '../lib'
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
