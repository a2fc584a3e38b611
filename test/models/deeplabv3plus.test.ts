import * as assert from 'assert'
import { createModel } from '../../lib'
import { randomImages } from '../helpers'
import { countParameters } from '../twin'
import { describeArchitecture } from './shared'

describeArchitecture({
  arch: 'deeplabv3plus',
  cases: [
    { options: { arch: 'deeplabv3plus', backbone: 'resnet18', numClasses: 3 } },
    { options: { arch: 'deeplabv3plus', backbone: 'resnet18', numClasses: 2, inChannels: 1, outputStride: 8, separable: true } },
    // Xception-65 is heavy (about 40M parameters): one small case.
    { options: { arch: 'deeplabv3plus', backbone: 'xception65', numClasses: 2, separable: true }, size: [33, 47] }
  ],
  badOptions: [
    { options: { backbone: 'vgg16' }, error: RangeError, pattern: /'xception65' for backbone/ },
    { options: { outputStride: 32 }, error: RangeError, pattern: /16, 8 for outputStride/ },
    { options: { aux: true }, error: RangeError, pattern: /aux: false for deeplabv3plus/ },
    { options: { separable: 1 }, error: TypeError, pattern: /separable/ }
  ]
})

describe('architecture deeplabv3plus', () => {
  it('has the decoder of the paper: 48-channel low-level projection, two 3x3 convs of 256, separable on request', async () => {
    const plain = await createModel({ arch: 'deeplabv3plus', backbone: 'resnet50', numClasses: 21 })
    const sep = await createModel({ arch: 'deeplabv3plus', backbone: 'resnet50', numClasses: 21, separable: true })
    try {
      assert.strictEqual(plain.config.outputStride, 16)
      const p = await plain.stateDictShapes()
      assert.deepStrictEqual(p['decoder.feature_projection.0.weight'], [48, 256, 1, 1])
      assert.deepStrictEqual(p['decoder.decoder_conv0.0.weight'], [256, 256 + 48, 3, 3])
      assert.deepStrictEqual(p['decoder.decoder_conv1.0.weight'], [256, 256, 3, 3])
      assert.deepStrictEqual(p['aspp.convs.1.0.weight'], [256, 2048, 3, 3])
      assert.deepStrictEqual(p['classifier.weight'], [21, 256, 1, 1])
      const s = await sep.stateDictShapes()
      assert.deepStrictEqual(s['aspp.convs.1.0.weight'], [2048, 1, 3, 3])
      assert.deepStrictEqual(s['aspp.convs.1.3.weight'], [256, 2048, 1, 1])
      assert.deepStrictEqual(s['decoder.decoder_conv0.0.weight'], [304, 1, 3, 3])
      assert.ok(sep.info().parameters < plain.info().parameters)
    } finally {
      plain.dispose()
      sep.dispose()
    }
  })

  it('builds the aligned Xception-65: 16 middle-flow blocks, strided separable convs instead of max pooling, stride-4 low-level feature', async () => {
    const m = await createModel({ arch: 'deeplabv3plus', backbone: 'xception65', numClasses: 2 })
    try {
      const shapes = await m.stateDictShapes()
      // timm's xception65 (the TF checkpoint ported): 39.9M with its 2048 x 1000 classifier.
      assert.strictEqual(countParameters(shapes, 'backbone.'), 37867312)
      assert.ok('backbone.middle_flow.15.separable_conv3.pointwise.weight' in shapes)
      assert.ok(!('backbone.middle_flow.16.separable_conv1.depthwise.weight' in shapes))
      assert.ok(!('backbone.middle_flow.0.shortcut.weight' in shapes), 'identity shortcuts in the middle flow')
      assert.ok(!('backbone.exit_flow.1.shortcut.weight' in shapes), 'no shortcut in the last exit block')
      assert.deepStrictEqual(shapes['backbone.entry_flow.2.separable_conv3.depthwise.weight'], [728, 1, 3, 3])
      assert.ok('backbone.entry_flow.0.separable_conv1.depthwise_bn.running_mean' in shapes, 'BN after each depthwise conv')
      assert.deepStrictEqual(shapes['backbone.exit_flow.1.separable_conv3.pointwise.weight'], [2048, 1536, 1, 1])
      // The decoder projects the 256-channel stride-4 feature.
      assert.deepStrictEqual(shapes['decoder.feature_projection.0.weight'], [48, 256, 1, 1])
      const feats = await m.features(randomImages(1, 3, 64, 64))
      assert.deepStrictEqual(feats.map((f) => [f.shape[1], f.shape[2]]), [[256, 16], [728, 4], [728, 4], [2048, 4]])
    } finally {
      m.dispose()
    }
  })

  it('runs Xception-65 at output stride 8 by dilation', async () => {
    const m = await createModel({ arch: 'deeplabv3plus', backbone: 'xception65', numClasses: 2, outputStride: 8 })
    try {
      const feats = await m.features(randomImages(1, 3, 64, 64))
      assert.deepStrictEqual(feats.map((f) => f.shape[2]), [16, 8, 8, 8])
    } finally {
      m.dispose()
    }
  })
})
