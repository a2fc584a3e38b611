import * as assert from 'assert'
import { createModel } from '../../lib'
import { describeArchitecture } from './shared'

describeArchitecture({
  arch: 'deeplabv1',
  cases: [
    // fc6 / fc7 at 64 channels instead of 1024 (a tiny configuration; the full one is counted below)
    { options: { arch: 'deeplabv1', numClasses: 2, fcChannels: 64 } }
  ],
  badOptions: [
    { options: { backbone: 'resnet50' }, error: RangeError, pattern: /'vgg16', 'vgg16_bn' for backbone/ },
    { options: { outputStride: 16 }, error: RangeError, pattern: /8 for outputStride/ },
    { options: { aux: true }, error: RangeError, pattern: /aux: false for deeplabv1/ },
    { options: { fcChannels: 1.5 }, error: TypeError, pattern: /an integer for fcChannels/ }
  ]
})

describe('architecture deeplabv1', () => {
  it('is DeepLab-LargeFOV: 20,505,429 parameters for 21 classes (the paper: 20.5M), fc6 3x3 with 1024 channels', async () => {
    const m = await createModel({ arch: 'deeplabv1', numClasses: 21 })
    assert.strictEqual(m.info().parameters, 20505429)
    const shapes = await m.stateDictShapes()
    m.dispose()
    assert.deepStrictEqual(shapes['fc6.weight'], [1024, 512, 3, 3])
    assert.deepStrictEqual(shapes['fc7.weight'], [1024, 1024, 1, 1])
    assert.deepStrictEqual(shapes['fc8.weight'], [21, 1024, 1, 1])
  })
})
