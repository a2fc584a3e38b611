import * as assert from 'assert'
import { createModel } from '../lib'
import { countParameters, makeTwin, maxAbsDiff, torchvisionMissing, parityTolerance } from './twin'

const RESNETS = { resnet18: 11176512, resnet34: 21284672, resnet50: 23508032, resnet101: 42500160, resnet152: 58143808 } as const

describe('ResNet backbones', () => {
  for (const [name, expected] of Object.entries(RESNETS)) {
    it(`${name} has torchvision's parameter count without its classifier (${expected.toLocaleString('en')})`, async () => {
      const m = await createModel({ arch: 'fcn', backbone: name as keyof typeof RESNETS, numClasses: 21, outputStride: 32 })
      assert.strictEqual(countParameters(await m.stateDictShapes(), 'backbone.'), expected)
      m.dispose()
    })
  }

  it('dilates instead of striding: feature strides 4, 8, 8, 8 at output stride 8 (ResNet-18 too)', async () => {
    for (const [backbone, os, last] of [['resnet18', 8, 8], ['resnet18', 16, 16], ['resnet50', 32, 32]] as const) {
      const m = await createModel({ arch: 'fcn', backbone, numClasses: 2, outputStride: os })
      const { randomImages } = await import('./helpers')
      const feats = await m.features(randomImages(1, 3, 64, 64))
      assert.deepStrictEqual(feats.map((f) => f.shape[2]), [16, 8, os === 8 ? 8 : 4, 64 / last])
      m.dispose()
    }
  })

  for (const name of ['resnet18', 'resnet50'] as const) {
    it(`${name} feature maps equal torchvision's (max abs diff <= 1e-4)`, async function () {
      const why = torchvisionMissing()
      if (why) { console.log(`      skipped: ${why}`); this.skip() }
      const twin = makeTwin(name, 64, 96)
      const m = await createModel({ arch: 'fcn', backbone: name, numClasses: 2, outputStride: 32 })
      // resnet18 from a plain dict, resnet50 from the OrderedDict that state_dict() returns
      const file = name === 'resnet18' ? twin.statePlain : twin.state
      const report = await m.loadStateDict(file, { strict: false, prefix: 'backbone.' })
      assert.deepStrictEqual([report.missing, report.unexpected, report.mismatched], [[], [], []])
      const feats = await m.features(twin.x)
      const deepest = feats[3]
      assert.deepStrictEqual(deepest.shape, twin.shape)
      const d = maxAbsDiff(deepest.dataSync(), twin.y)
      assert.ok(d <= parityTolerance(twin), `max abs diff ${d}`)
      m.dispose()
    })
  }
})

describe('FCN parameter counts equal torchvision fcn_resnet50/101 (21 classes)', () => {
  const cases = [['resnet50', false, 32957013], ['resnet50', true, 35322218], ['resnet101', false, 51949141], ['resnet101', true, 54314346]] as const
  for (const [backbone, aux, expected] of cases) {
    it(`fcn ${backbone}${aux ? ' with aux' : ''}: ${expected.toLocaleString('en')}`, async () => {
      const m = await createModel({ arch: 'fcn', backbone, numClasses: 21, aux })
      assert.strictEqual(m.info().parameters, expected)
      m.dispose()
    })
  }
})
