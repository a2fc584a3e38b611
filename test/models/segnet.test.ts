import * as assert from 'assert'
import { createModel } from '../../lib'
import { describeArchitecture } from './shared'

describeArchitecture({
  arch: 'segnet',
  cases: [
    { options: { arch: 'segnet', backbone: 'vgg16_bn', numClasses: 2 }, size: [37, 45] }
  ],
  badOptions: [
    { options: { backbone: 'resnet50' }, error: RangeError, pattern: /'vgg16_bn', 'vgg16' for backbone/ },
    { options: { aux: true }, error: RangeError, pattern: /aux: false for segnet/ },
    { options: { outputStride: 8 }, error: RangeError, pattern: /32 for outputStride/ }
  ]
})

describe('architecture segnet', () => {
  it('has 29,455,125 parameters for 21 classes (the paper: 29.45M)', async () => {
    const m = await createModel({ arch: 'segnet', numClasses: 21 })
    assert.strictEqual(m.info().parameters, 29455125)
    const shapes = await m.stateDictShapes()
    m.dispose()
    // the decoder mirrors the encoder: dec5 (512 -> 512 x3) .. dec1 (64 -> 64), then a 3x3 classifier
    assert.deepStrictEqual(shapes['dec5.0.weight'], [512, 512, 3, 3])
    assert.deepStrictEqual(shapes['dec4.6.weight'], [256, 512, 3, 3])
    assert.deepStrictEqual(shapes['dec2.3.weight'], [64, 128, 3, 3])
    assert.deepStrictEqual(shapes['classifier.weight'], [21, 64, 3, 3])
  })
})
