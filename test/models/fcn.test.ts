import * as assert from 'assert'
import { createModel } from '../../lib'
import { describeArchitecture } from './shared'

describeArchitecture({
  arch: 'fcn',
  cases: [
    { options: { arch: 'fcn', backbone: 'resnet18', numClasses: 3, outputStride: 8 } },
    { options: { arch: 'fcn', backbone: 'resnet18', numClasses: 2, inChannels: 1, outputStride: 32, aux: true }, trainOutputs: ['aux'] },
    // the classic FCN-8s on VGG-16
    { options: { arch: 'fcn', backbone: 'vgg16', numClasses: 2, variant: '8s' }, size: [37, 45] }
  ],
  badOptions: [
    { options: { backbone: 'vgg19' }, error: RangeError, pattern: /resnet18.*for backbone/ },
    { options: { outputStride: 4 }, error: RangeError, pattern: /8, 16, 32 for outputStride/ },
    { options: { backbone: 'vgg16', variant: '4s' }, error: RangeError, pattern: /'32s', '16s', '8s' for variant/ },
    { options: { backbone: 'vgg16', aux: true }, error: RangeError, pattern: /aux: false for fcn with a VGG backbone/ }
  ]
})

describe('architecture fcn on VGG-16 (FCN-32s / 16s / 8s)', () => {
  // The reference voc-fcn*s nets (21 classes), transposed-conv weights included; the paper: 134M.
  const counts = { '32s': 136152917, '16s': 134815994, '8s': 134489759 } as const
  for (const [variant, expected] of Object.entries(counts)) {
    it(`FCN-${variant} has the reference's ${expected.toLocaleString('en')} parameters and layer names`, async () => {
      const m = await createModel({ arch: 'fcn', backbone: 'vgg16', numClasses: 21, variant: variant as keyof typeof counts })
      const shapes = await m.stateDictShapes()
      const info = m.info()
      m.dispose()
      assert.strictEqual(info.parameters, expected)
      const heads = Object.keys(shapes).filter((k) => !k.startsWith('backbone.')).sort()
      const names = {
        '32s': ['fc6', 'fc7', 'score_fr', 'upscore'],
        '16s': ['fc6', 'fc7', 'score_fr', 'upscore2', 'score_pool4', 'upscore16'],
        '8s': ['fc6', 'fc7', 'score_fr', 'upscore2', 'score_pool4', 'upscore_pool4', 'score_pool3', 'upscore8']
      }[variant as keyof typeof counts]
      assert.deepStrictEqual(heads, names.flatMap((n) => n.startsWith('upscore') ? [`${n}.weight`] : [`${n}.bias`, `${n}.weight`]).sort())
      assert.deepStrictEqual(shapes['fc6.weight'], [4096, 512, 7, 7])
      // the final upsampling is fixed bilinear; the 2x ones are learned (learnUpsampling: true)
      const frozen = { '32s': 21 * 21 * 64 * 64, '16s': 21 * 21 * 32 * 32, '8s': 21 * 21 * 16 * 16 }[variant as keyof typeof counts]
      assert.strictEqual(info.parameters - info.trainableParameters, frozen)
    })
  }

  it('learnUpsampling: false fixes every transposed conv to bilinear, as the reference nets', async () => {
    const m = await createModel({ arch: 'fcn', backbone: 'vgg16', numClasses: 21, learnUpsampling: false })
    const info = m.info()
    m.dispose()
    assert.strictEqual(info.parameters - info.trainableParameters, 21 * 21 * (16 + 16 + 256))
  })
})
