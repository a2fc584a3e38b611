import * as assert from 'assert'
import { createModel, Images } from '../lib'
import { countParameters, makeTwin, maxAbsDiff, torchvisionMissing } from './twin'

// torchvision's vgg16().features / vgg16_bn().features
const VGGS = { vgg16: 14714688, vgg16_bn: 14723136 } as const

describe('VGG backbones', () => {
  for (const [name, expected] of Object.entries(VGGS)) {
    it(`${name} has torchvision's features parameter count (${expected.toLocaleString('en')})`, async () => {
      const m = await createModel({ arch: 'segnet', backbone: name as keyof typeof VGGS, numClasses: 2 })
      try {
        assert.strictEqual(countParameters(await m.stateDictShapes(), 'backbone.'), expected)
      } finally {
        m.dispose()
      }
    })
  }

  it("names its layers as torchvision's features (backbone.features.N)", async () => {
    const m = await createModel({ arch: 'segnet', backbone: 'vgg16', numClasses: 2 })
    const keys = Object.keys(await m.stateDictShapes()).filter((k) => k.startsWith('backbone.'))
    m.dispose()
    const convs = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    assert.deepStrictEqual(keys.sort(), convs.flatMap((i) => [`backbone.features.${i}.weight`, `backbone.features.${i}.bias`]).sort())
  })

  it('feature strides are 2, 4, 8, 16, 32 (torchvision, FCN, SegNet) and 2, 4, 8, 8, 8 (DeepLab-v1, dilated)', async () => {
    const { randomImages } = await import('./helpers')
    for (const [arch, strides] of [['segnet', [2, 4, 8, 16, 32]], ['deeplabv1', [2, 4, 8, 8, 8]]] as const) {
      const m = await createModel({ arch, backbone: 'vgg16', numClasses: 2 })
      const feats = await m.features(randomImages(1, 3, 64, 96))
      m.dispose()
      assert.deepStrictEqual(feats.map((f) => [f.shape[1], f.shape[2], f.shape[3]]),
        strides.map((s, i) => [[64, 128, 256, 512, 512][i], 64 / s, 96 / s]))
    }
  })

  for (const name of Object.keys(VGGS)) {
    it(`${name} features equal torchvision's after loading its state dict`, async function () {
      const why = torchvisionMissing()
      if (why) { console.log(`      skipped: ${why}`); this.skip() }
      const twin = makeTwin(name, 64, 96)
      const m = await createModel({ arch: 'segnet', backbone: name as keyof typeof VGGS, numClasses: 2 })
      try {
        // twin.py saves vgg.features' state dict (keys 0.weight, ...): it loads under backbone.features.
        const report = await m.loadStateDict(twin.statePlain, { strict: true, prefix: 'backbone.features.' })
        assert.deepStrictEqual([report.missing, report.unexpected, report.mismatched], [[], [], []])
        const deepest = (await m.features(twin.x as Images))[4]
        assert.deepStrictEqual(deepest.shape, twin.shape)
        const scale = twin.y.reduce((a, b) => Math.max(a, Math.abs(b)), 1)
        const d = maxAbsDiff(deepest.dataSync(), twin.y)
        assert.ok(d <= 1e-4 * scale, `max abs diff ${d} (largest value ${scale})`)
      } finally {
        m.dispose()
      }
    })
  }
})
