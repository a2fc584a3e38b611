import * as assert from 'assert'
import { createModel } from '../../lib'
import { randomImages, randomMasks } from '../helpers'
import { describeArchitecture } from './shared'

// ICNet's input multiple is 32 (1/4 input through an output-stride-8 ResNet): 64 x 64 already
// cascades (1/32 maps of 2 x 2); the cascade test below uses 128 x 128.
describeArchitecture({
  arch: 'icnet',
  cases: [
    { options: { arch: 'icnet', backbone: 'resnet18', numClasses: 3 }, trainOutputs: ['sub16', 'sub8', 'sub4'] }
  ],
  badOptions: [
    { options: { backbone: 'mobilenetv2' }, error: RangeError, pattern: /'resnet18'.*for backbone/ },
    { options: { outputStride: 32 }, error: RangeError, pattern: /8 for outputStride/ },
    { options: { aux: true }, error: RangeError, pattern: /aux: false for icnet/ }
  ]
})

describe('architecture icnet', () => {
  it('returns the cascade outputs at 1/16, 1/8 and 1/4 in training, weighted 0.4, 0.4 and 1 in the loss', async () => {
    const m = await createModel({ arch: 'icnet', backbone: 'resnet18', numClasses: 3 })
    try {
      await m.train()
      const x = randomImages(2, 3, 128, 128, 3)
      const out = await m.forward(x, { outputs: 'all' })
      assert.deepStrictEqual(out.sub16.shape, [2, 3, 8, 8])
      assert.deepStrictEqual(out.sub8.shape, [2, 3, 16, 16])
      assert.deepStrictEqual(out.sub4.shape, [2, 3, 32, 32])
      assert.deepStrictEqual(out.out.shape, [2, 3, 128, 128])
      const r = await m.trainStep(x, randomMasks(2, 128, 128, 3, 4), { optimizer: { lr: 1e-4 } })
      const p = r.parts
      assert.deepStrictEqual(Object.keys(p).sort(), ['main', 'sub16', 'sub4', 'sub8'])
      const expected = p.main + 0.4 * p.sub16 + 0.4 * p.sub8 + 1.0 * p.sub4
      assert.ok(Math.abs(r.loss - expected) < 1e-4 * expected, `loss ${r.loss} vs ${expected}`)
    } finally {
      m.dispose()
    }
  })

  it('shares the backbone between the 1/4 and 1/2 branches and has a 3-conv full-resolution branch', async () => {
    const m = await createModel({ arch: 'icnet', backbone: 'resnet18', numClasses: 3 })
    const shapes = await m.stateDictShapes()
    m.dispose()
    assert.deepStrictEqual(shapes['conv_sub1.0.0.weight'], [32, 3, 3, 3])
    assert.deepStrictEqual(shapes['conv_sub1.2.0.weight'], [64, 32, 3, 3])
    assert.ok(!('conv_sub1.3.0.weight' in shapes))
    assert.deepStrictEqual(shapes['conv5_4_k1.0.weight'], [256, 512, 1, 1])
    assert.deepStrictEqual(shapes['cff_24.conv_low.weight'], [128, 256, 3, 3])
    assert.deepStrictEqual(shapes['cff_24.conv_high.weight'], [128, 128, 1, 1])  // resnet18 layer2
    assert.deepStrictEqual(shapes['cff_12.conv_high.weight'], [128, 64, 1, 1])
    assert.deepStrictEqual(shapes['conv6_cls.weight'], [3, 128, 1, 1])
    assert.ok(!Object.keys(shapes).some((k) => k.startsWith('backbone') && k.includes('sub')), 'one backbone')
  })
})
