import * as assert from 'assert'
import { createModel } from '../../lib'
import { describeArchitecture } from './shared'

describeArchitecture({
  arch: 'deeplabv3',
  cases: [
    { options: { arch: 'deeplabv3', backbone: 'resnet18', numClasses: 3, outputStride: 16 } },
    { options: { arch: 'deeplabv3', backbone: 'resnet18', numClasses: 2, inChannels: 1, outputStride: 16, aux: true }, trainOutputs: ['aux'] },
    { options: { arch: 'deeplabv3', backbone: 'mobilenetv3_large', numClasses: 2, aux: true }, trainOutputs: ['aux'] }
  ],
  badOptions: [
    { options: { backbone: 'xception65' }, error: RangeError, pattern: /'resnet18'.*for backbone/ },
    { options: { outputStride: 32 }, error: RangeError, pattern: /8, 16 for outputStride/ },
    { options: { backbone: 'mobilenetv3_large', outputStride: 32 }, error: RangeError, pattern: /8, 16 for outputStride/ }
  ]
})

describe('architecture deeplabv3', () => {
  // torchvision's deeplabv3_resnet50 / deeplabv3_resnet101 with 21 classes (num_params of the
  // torchvision weights: 42,004,074 and 60,996,202, aux head included).
  const cases = [['resnet50', false, 39638869], ['resnet50', true, 42004074], ['resnet101', false, 58630997], ['resnet101', true, 60996202]] as const
  for (const [backbone, aux, expected] of cases) {
    it(`has torchvision's parameter count on ${backbone}${aux ? ' with aux' : ''}: ${expected.toLocaleString('en')}`, async () => {
      const m = await createModel({ arch: 'deeplabv3', backbone, numClasses: 21, aux })
      assert.strictEqual(m.info().parameters, expected)
      m.dispose()
    })
  }

  // torchvision's deeplabv3_mobilenet_v3_large with 21 classes: 11,025,477 parameters, 11,029,328
  // with the aux head (FCNHead on backbone.4, 40 channels -> 10 -> 21: 3,851).
  for (const [aux, expected] of [[false, 11025477], [true, 11029328]] as const) {
    it(`has torchvision's parameter count on mobilenetv3_large${aux ? ' with aux' : ''}: ${expected.toLocaleString('en')}`, async () => {
      const m = await createModel({ arch: 'deeplabv3', backbone: 'mobilenetv3_large', numClasses: 21, aux })
      try {
        assert.strictEqual(m.config.outputStride, 16, "torchvision's dilated MobileNetV3: output stride 16 by default")
        assert.strictEqual(m.info().parameters, expected)
        const shapes = await m.stateDictShapes()
        assert.deepStrictEqual(shapes['classifier.0.convs.0.0.weight'], [256, 960, 1, 1])
        assert.strictEqual(Object.keys(shapes).length, aux ? 360 : 352)
        if (aux) {
          assert.deepStrictEqual(shapes['aux_classifier.0.weight'], [10, 40, 3, 3])
          assert.deepStrictEqual(shapes['aux_classifier.4.weight'], [21, 10, 1, 1])
        }
      } finally {
        m.dispose()
      }
    })
  }

  it("uses torchvision's parameter names and output stride 8 by default (its ASPP rates 12, 24, 36 are checked by test/parity.test.ts)", async () => {
    const m = await createModel({ arch: 'deeplabv3', backbone: 'resnet18', numClasses: 2, aux: true })
    try {
      assert.strictEqual(m.config.outputStride, 8)
      const shapes = await m.stateDictShapes()
      for (const name of ['classifier.0.convs.0.0.weight', 'classifier.0.convs.3.1.running_var', 'classifier.0.convs.4.1.weight',
        'classifier.0.project.0.weight', 'classifier.1.weight', 'classifier.2.weight', 'classifier.4.bias', 'aux_classifier.4.weight']) {
        assert.ok(name in shapes, name)
      }
      assert.deepStrictEqual(shapes['classifier.0.convs.1.0.weight'], [256, 512, 3, 3])
      assert.deepStrictEqual(shapes['classifier.0.project.0.weight'], [256, 5 * 256, 1, 1])
      assert.deepStrictEqual(shapes['aux_classifier.0.weight'], [64, 256, 3, 3])
    } finally {
      m.dispose()
    }
  })
})
