import * as assert from 'assert'
import { createModel } from '../../lib'
import { describeArchitecture } from './shared'

describeArchitecture({
  arch: 'deeplabv2',
  cases: [
    { options: { arch: 'deeplabv2', backbone: 'resnet18', numClasses: 3, outputStride: 16 } },
    { options: { arch: 'deeplabv2', backbone: 'resnet18', numClasses: 2, inChannels: 1, outputStride: 8 }, size: [35, 29] }
  ],
  badOptions: [
    { options: { backbone: 'vgg16' }, error: RangeError, pattern: /'resnet18'.*for backbone/ },
    { options: { outputStride: 32 }, error: RangeError, pattern: /8, 16 for outputStride/ },
    { options: { aux: true }, error: RangeError, pattern: /aux: false for deeplabv2/ }
  ]
})

describe('architecture deeplabv2', () => {
  it('is ResNet-101 at output stride 8 with ASPP-L: four 3x3 branches with rates 6, 12, 18, 24 straight to the classes', async () => {
    const m = await createModel({ arch: 'deeplabv2', numClasses: 21 })
    try {
      assert.strictEqual(m.config.backbone, 'resnet101')
      assert.strictEqual(m.config.outputStride, 8)
      const shapes = await m.stateDictShapes()
      for (let i = 0; i < 4; i++) {
        assert.deepStrictEqual(shapes[`aspp.c${i}.weight`], [21, 2048, 3, 3])
        assert.deepStrictEqual(shapes[`aspp.c${i}.bias`], [21])
      }
      assert.strictEqual(shapes['aspp.c4.weight'], undefined)
      // ResNet-101 without its classifier (42,500,160) + 4 x (21 x 2048 x 9 + 21)
      assert.strictEqual(m.info().parameters, 42500160 + 4 * (21 * 2048 * 9 + 21))
    } finally {
      m.dispose()
    }
  })
})
