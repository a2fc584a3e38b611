import * as assert from 'assert'
import { createModel } from '../../lib'
import { describeArchitecture } from './shared'

describeArchitecture({
  arch: 'pspnet',
  cases: [
    { options: { arch: 'pspnet', backbone: 'resnet18', numClasses: 3, outputStride: 16, aux: false } },
    { options: { arch: 'pspnet', backbone: 'resnet18', numClasses: 2, inChannels: 1, outputStride: 8, aux: true }, trainOutputs: ['aux'], size: [41, 23] }
  ],
  badOptions: [
    { options: { backbone: 'vgg16' }, error: RangeError, pattern: /'resnet18'.*for backbone/ },
    { options: { outputStride: 32 }, error: RangeError, pattern: /8, 16 for outputStride/ }
  ]
})

describe('architecture pspnet', () => {
  it('trains with its auxiliary head by default, as the paper', async () => {
    const m = await createModel({ arch: 'pspnet', backbone: 'resnet18', numClasses: 2, outputStride: 16 })
    try {
      assert.strictEqual(m.config.aux, true)
    } finally {
      m.dispose()
    }
  })

  it('pools bins 1, 2, 3, 6 each reduced to C/4, then 3x3 conv 512 and the classifier; aux head on layer3', async () => {
    const m = await createModel({ arch: 'pspnet', backbone: 'resnet50', numClasses: 21, aux: true })
    try {
      assert.strictEqual(m.config.outputStride, 8)
      const shapes = await m.stateDictShapes()
      for (let i = 0; i < 4; i++) assert.deepStrictEqual(shapes[`ppm.features.${i}.1.weight`], [512, 2048, 1, 1])
      assert.strictEqual(shapes['ppm.features.4.1.weight'], undefined)
      assert.deepStrictEqual(shapes['cls.0.weight'], [512, 4096, 3, 3])
      assert.deepStrictEqual(shapes['cls.4.weight'], [21, 512, 1, 1])
      assert.deepStrictEqual(shapes['aux.0.weight'], [256, 1024, 3, 3])
      assert.deepStrictEqual(shapes['aux.4.weight'], [21, 256, 1, 1])
    } finally {
      m.dispose()
    }
  })
})
