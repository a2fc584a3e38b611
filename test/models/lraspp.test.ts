import * as assert from 'assert'
import { createModel } from '../../lib'
import { countParameters } from '../twin'
import { describeArchitecture } from './shared'

describeArchitecture({
  arch: 'lraspp',
  cases: [
    { options: { arch: 'lraspp', numClasses: 3, interChannels: 16 } },
    { options: { arch: 'lraspp', backbone: 'mobilenetv3_large', numClasses: 2, inChannels: 1, interChannels: 8, outputStride: 32 } }
  ],
  badOptions: [
    { options: { backbone: 'resnet18' }, error: RangeError, pattern: /'mobilenetv3_large' for backbone/ },
    { options: { outputStride: 4 }, error: RangeError, pattern: /16, 8, 32 for outputStride/ },
    { options: { aux: true }, error: RangeError, pattern: /aux: false for lraspp/ },
    { options: { interChannels: 0 }, error: RangeError, pattern: /interChannels/ }
  ]
})

describe('architecture lraspp', () => {
  it("has torchvision's lraspp_mobilenet_v3_large parameter count for 21 classes: 3,221,538", async () => {
    const m = await createModel({ arch: 'lraspp', numClasses: 21 })
    try {
      assert.strictEqual(m.config.backbone, 'mobilenetv3_large')
      assert.strictEqual(m.config.outputStride, 16)
      assert.strictEqual(m.info().parameters, 3221538)
      const shapes = await m.stateDictShapes()
      assert.strictEqual(countParameters(shapes, 'backbone.'), 2971952)
      // torchvision's names (IntermediateLayerGetter over mobilenet_v3_large().features)
      assert.deepStrictEqual(shapes['classifier.cbr.0.weight'], [128, 960, 1, 1])
      assert.deepStrictEqual(shapes['classifier.cbr.1.running_var'], [128])
      assert.deepStrictEqual(shapes['classifier.scale.1.weight'], [128, 960, 1, 1])
      assert.deepStrictEqual(shapes['classifier.low_classifier.weight'], [21, 40, 1, 1])
      assert.deepStrictEqual(shapes['classifier.high_classifier.weight'], [21, 128, 1, 1])
      assert.strictEqual(Object.keys(shapes).length, 319)
    } finally {
      m.dispose()
    }
  })
})
