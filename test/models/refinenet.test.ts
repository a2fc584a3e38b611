import * as assert from 'assert'
import { createModel } from '../../lib'
import { countParameters } from '../twin'
import { describeArchitecture } from './shared'

describeArchitecture({
  arch: 'refinenet',
  cases: [
    { options: { arch: 'refinenet', backbone: 'resnet18', numClasses: 3 } }
  ],
  badOptions: [
    { options: { backbone: 'mobilenetv2' }, error: RangeError, pattern: /'resnet18'.*for backbone/ },
    { options: { outputStride: 8 }, error: RangeError, pattern: /32 for outputStride/ },
    { options: { crpBlocks: 0 }, error: RangeError, pattern: /crpBlocks/ },
    { options: { outputRcus: 9 }, error: RangeError, pattern: /outputRcus/ }
  ]
})

describe('architecture refinenet', () => {
  it('has 512 channels in RefineNet-4, 256 in the others, 2 RCUs per path, 1 output RCU (+2 before the classifier)', async () => {
    const m = await createModel({ arch: 'refinenet', backbone: 'resnet18', numClasses: 3 })
    const shapes = await m.stateDictShapes()
    m.dispose()
    assert.deepStrictEqual(shapes['p_ims1d2_outl1_dimred.weight'], [512, 512, 3, 3])
    assert.deepStrictEqual(shapes['adapt_stage1_b.0.2_conv_relu_varout_dimred.weight'], [512, 512, 3, 3])
    assert.ok(!('adapt_stage1_b.0.3_conv.weight' in shapes), 'two RCUs per path')
    assert.deepStrictEqual(shapes['mflow_conv_g1_pool.0.2_outvar_dimred.weight'], [512, 512, 3, 3])
    assert.ok(!('mflow_conv_g1_pool.0.3_outvar_dimred.weight' in shapes), 'two CRP blocks by default')
    assert.deepStrictEqual(shapes['mflow_conv_g1_b3_joint_varout_dimred.weight'], [256, 512, 3, 3])
    assert.ok(!('mflow_conv_g2_b.0.2_conv.weight' in shapes), 'one output RCU')
    assert.deepStrictEqual(shapes['mflow_conv_g4_b.0.3_conv.weight'], [256, 256, 3, 3])
    assert.deepStrictEqual(shapes['p_ims1d2_outl4_dimred.weight'], [256, 64, 3, 3])
    assert.deepStrictEqual(shapes['clf_conv.weight'], [3, 256, 3, 3])
    assert.ok(!Object.keys(shapes).some((k) => /bn|running/.test(k) && !k.startsWith('backbone.')), 'no batch norm in the decoder')
  })

  it('chains crpBlocks pooling blocks in every CRP', async () => {
    const counts: number[] = []
    for (const crpBlocks of [2, 4]) {
      const m = await createModel({ arch: 'refinenet', backbone: 'resnet18', numClasses: 3, crpBlocks })
      counts.push(countParameters(await m.stateDictShapes()))
      m.dispose()
    }
    // two more 3x3 convs in RefineNet-4's CRP (512) and in the three others (256)
    assert.strictEqual(counts[1] - counts[0], 2 * 512 * 512 * 9 + 3 * 2 * 256 * 256 * 9)
  })

  it('with crpBlocks 4 and outputRcus 3 is the released network: 118 M parameters on ResNet-101 (ours: 118,052,437)', async () => {
    const m = await createModel({ arch: 'refinenet', backbone: 'resnet101', numClasses: 21, crpBlocks: 4, outputRcus: 3 })
    const shapes = await m.stateDictShapes()
    m.dispose()
    assert.strictEqual(countParameters(shapes), 118052437)
    assert.deepStrictEqual(shapes['mflow_conv_g1_b.0.3_conv_relu_varout_dimred.weight'], [512, 512, 3, 3])
    assert.deepStrictEqual(shapes['mflow_conv_g3_pool.0.4_outvar_dimred.weight'], [256, 256, 3, 3])
    assert.ok(!('mflow_conv_g4_b.0.4_conv.weight' in shapes))
  })
})
