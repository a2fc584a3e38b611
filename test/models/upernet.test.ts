import * as assert from 'assert'
import { createModel } from '../../lib'
import { describeArchitecture } from './shared'

describeArchitecture({
  arch: 'upernet',
  cases: [
    { options: { arch: 'upernet', backbone: 'resnet18', numClasses: 3, channels: 32 } },
    { options: { arch: 'upernet', backbone: 'resnet18', numClasses: 2, inChannels: 1, channels: 16, aux: true }, trainOutputs: ['aux'], size: [70, 33] }
  ],
  badOptions: [
    { options: { backbone: 'vgg16' }, error: RangeError, pattern: /'resnet18'.*for backbone/ },
    { options: { outputStride: 8 }, error: RangeError, pattern: /32 for outputStride/ },
    { options: { channels: 0 }, error: RangeError, pattern: /channels/ }
  ]
})

describe('architecture upernet', () => {
  it('has a PPM on layer4, an FPN over layer1..3 and a fusion conv over the four levels, 512 channels by default', async () => {
    const m = await createModel({ arch: 'upernet', numClasses: 21 })
    try {
      assert.strictEqual(m.config.backbone, 'resnet50')
      const shapes = await m.stateDictShapes()
      for (let i = 0; i < 4; i++) assert.deepStrictEqual(shapes[`ppm.features.${i}.1.weight`], [512, 2048, 1, 1])
      assert.deepStrictEqual(shapes['bottleneck.0.weight'], [512, 2048 + 4 * 512, 3, 3])
      const ch = [256, 512, 1024]
      for (let i = 0; i < 3; i++) {
        assert.deepStrictEqual(shapes[`lateral_convs.${i}.0.weight`], [512, ch[i], 1, 1])
        assert.deepStrictEqual(shapes[`fpn_convs.${i}.0.weight`], [512, 512, 3, 3])
      }
      assert.strictEqual(shapes['lateral_convs.3.0.weight'], undefined)
      assert.deepStrictEqual(shapes['fpn_bottleneck.0.weight'], [512, 4 * 512, 3, 3])
      assert.deepStrictEqual(shapes['conv_seg.weight'], [21, 512, 1, 1])
    } finally {
      m.dispose()
    }
  })
})
