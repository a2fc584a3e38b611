import * as assert from 'assert'
import { createModel } from '../../lib'
import { countParameters } from '../twin'
import { describeArchitecture } from './shared'

describeArchitecture({
  arch: 'lwrefinenet',
  cases: [
    { options: { arch: 'lwrefinenet', backbone: 'mobilenetv2', numClasses: 3 } },
    { options: { arch: 'lwrefinenet', backbone: 'resnet18', numClasses: 2, inChannels: 1 } }
  ],
  badOptions: [
    { options: { backbone: 'vgg16' }, error: RangeError, pattern: /'mobilenetv2' for backbone/ },
    { options: { outputStride: 4 }, error: RangeError, pattern: /32, 16, 8 for outputStride/ },
    { options: { aux: true }, error: RangeError, pattern: /aux: false for lwrefinenet/ }
  ]
})

// torchvision's mobilenet_v2().features: 2,223,872 parameters, of which features.18 (1x1 conv
// 320 -> 1280 + BN) holds 412,160. Light-Weight RefineNet taps features.17 and has no features.18.
const MOBILENET_V2_FEATURES = 2223872
const FEATURES_18 = 320 * 1280 + 2 * 1280

describe('architecture lwrefinenet', () => {
  it('is 3.3 M parameters on MobileNetV2 for 21 classes as the paper (ours: 3,283,477)', async () => {
    const m = await createModel({ arch: 'lwrefinenet', backbone: 'mobilenetv2', numClasses: 21 })
    const shapes = await m.stateDictShapes()
    const total = m.info().parameters
    m.dispose()
    assert.strictEqual(countParameters(shapes, 'backbone.'), MOBILENET_V2_FEATURES - FEATURES_18)
    assert.ok(!Object.keys(shapes).some((k) => k.startsWith('backbone.features.18.')))
    assert.strictEqual(total, 3283477)
    assert.strictEqual(Math.round(total / 1e5) / 10, 3.3)
    // 1x1 convs, CRPs of four 1x1 blocks, no RCUs, 3x3 classifier (names of the reference MBv2)
    assert.deepStrictEqual(shapes['conv8.weight'], [256, 320, 1, 1])
    assert.deepStrictEqual(shapes['conv3.weight'], [256, 24, 1, 1])
    assert.deepStrictEqual(shapes['crp1.0.4_outvar_dimred.weight'], [256, 256, 1, 1])
    assert.ok(!('crp1.0.5_outvar_dimred.weight' in shapes))
    assert.deepStrictEqual(shapes['segm.weight'], [21, 256, 3, 3])
  })

  it('is 27 M parameters on ResNet-50 for 21 classes as the paper (ours: 27,357,525)', async () => {
    const m = await createModel({ arch: 'lwrefinenet', backbone: 'resnet50', numClasses: 21 })
    const shapes = await m.stateDictShapes()
    m.dispose()
    assert.strictEqual(countParameters(shapes), 27357525)
    assert.deepStrictEqual(shapes['p_ims1d2_outl1_dimred.weight'], [512, 2048, 1, 1])
    assert.deepStrictEqual(shapes['mflow_conv_g1_pool.0.4_outvar_dimred.weight'], [512, 512, 1, 1])
    assert.deepStrictEqual(shapes['mflow_conv_g4_pool.0.1_outvar_dimred.weight'], [256, 256, 1, 1])
    assert.deepStrictEqual(shapes['clf_conv.weight'], [21, 256, 3, 3])
    assert.ok(!Object.keys(shapes).some((k) => k.includes('_conv_relu_varout_dimred')), 'no RCUs')
  })
})
