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
  ['deeplabv3_resnet50', { arch: 'deeplabv3', backbone: 'resnet50', numClasses: 21, aux: true }]
]

describe('parity with torchvision', () => {
  for (const [kind, options] of TWINS) {
    it(`${kind}: strict state-dict load, eval logits within 1e-4`, async function () {
      const why = torchvisionMissing()
      if (why) { console.log(`      skipped: ${why}`); this.skip() }
      const twin = makeTwin(kind, 64, 96)
      const m = await createModel(options)
      try {
        await m.loadStateDict(twin.statePlain)
        const y = await m.forward(twin.x as Images)
        assert.deepStrictEqual(y.shape, twin.shape)
        const d = maxAbsDiff(y.dataSync(), twin.y)
        assert.ok(d <= parityTolerance(twin), `max abs diff ${d}`)
      } finally {
        m.dispose()
      }
    })
  }
})
