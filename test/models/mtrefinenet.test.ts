import * as assert from 'assert'
import { createModel } from '../../lib'
import { randomImages, randomMasks } from '../helpers'
import { describeArchitecture } from './shared'

describeArchitecture({
  arch: 'mtrefinenet',
  cases: [
    {
      options: { arch: 'mtrefinenet', backbone: 'mobilenetv2', numClasses: 3 },
      evalOutputs: ['depth'],
      // The depth head's loss needs depth targets, which trainStep does not take yet: it gets no
      // gradient from the segmentation loss. The depth loss arrives with the training-engine issue.
      noGradient: /depth/
    }
  ],
  badOptions: [
    { options: { backbone: 'vgg16' }, error: RangeError, pattern: /'mobilenetv2'.*for backbone/ },
    { options: { aux: true }, error: RangeError, pattern: /aux: false for mtrefinenet/ }
  ]
})

describe('architecture mtrefinenet', () => {
  it('gives a one-channel per-pixel depth map beside the segmentation, in eval and training mode', async () => {
    const m = await createModel({ arch: 'mtrefinenet', backbone: 'mobilenetv2', numClasses: 3 })
    try {
      const x = randomImages(2, 3, 45, 70)
      const out = await m.forward(x, { outputs: 'all' })
      assert.deepStrictEqual(out.depth.shape, [2, 1, 45, 70])
      assert.deepStrictEqual(out.out.shape, [2, 3, 45, 70])
      const r = await m.trainStep(randomImages(2, 3, 64, 64), randomMasks(2, 64, 64, 3), { optimizer: { lr: 1e-4 } })
      assert.deepStrictEqual(Object.keys(r.parts), ['main'], 'depth is left out of the loss')
      const shapes = await m.stateDictShapes()
      assert.deepStrictEqual(shapes['pre_depth.weight'], [256, 1, 1, 1])
      assert.deepStrictEqual(shapes['depth.weight'], [1, 256, 3, 3])
      assert.deepStrictEqual(shapes['pre_segm.weight'], [256, 1, 1, 1])
      assert.deepStrictEqual(shapes['segm.weight'], [3, 256, 3, 3])
      assert.deepStrictEqual(shapes['crp1.0.1_outvar_dimred.weight'], [256, 1, 1, 1], 'depthwise last CRP')
      assert.deepStrictEqual(shapes['crp2.0.1_outvar_dimred.weight'], [256, 256, 1, 1])
    } finally {
      m.dispose()
    }
  })
})
