import * as assert from 'assert'
import { createModel } from '../../lib'
import { countParameters } from '../twin'
import { describeArchitecture } from './shared'

describeArchitecture({
  arch: 'gcn',
  cases: [
    { options: { arch: 'gcn', backbone: 'resnet18', numClasses: 3 } }
  ],
  badOptions: [
    { options: { backbone: 'vgg16' }, error: RangeError, pattern: /'resnet18'.*for backbone/ },
    { options: { outputStride: 8 }, error: RangeError, pattern: /32 for outputStride/ },
    { options: { kernelSize: 14 }, error: RangeError, pattern: /odd kernelSize/ },
    { options: { kernelSize: 1.5 }, error: TypeError, pattern: /integer for kernelSize/ }
  ]
})

describe('architecture gcn', () => {
  it('has k x 1 + 1 x k global convolutions to numClasses on every stage, 9 BR blocks and 5 deconvolutions', async () => {
    const m = await createModel({ arch: 'gcn', backbone: 'resnet18', numClasses: 3, kernelSize: 7 })
    const shapes = await m.stateDictShapes()
    m.dispose()
    assert.deepStrictEqual(shapes['gcm1.conv_l1.weight'], [3, 512, 7, 1])
    assert.deepStrictEqual(shapes['gcm1.conv_l2.weight'], [3, 3, 1, 7])
    assert.deepStrictEqual(shapes['gcm1.conv_r1.weight'], [3, 512, 1, 7])
    assert.deepStrictEqual(shapes['gcm1.conv_r2.weight'], [3, 3, 7, 1])
    assert.deepStrictEqual(shapes['gcm4.conv_l1.weight'], [3, 64, 7, 1])
    // 2 k (in K + K K) weights + 4 K biases
    assert.strictEqual(countParameters(shapes, 'gcm2.'), 2 * 7 * (256 * 3 + 3 * 3) + 4 * 3)
    assert.ok('brm9.conv2.weight' in shapes && !('brm10.conv1.weight' in shapes))
    assert.deepStrictEqual(shapes['deconv5.weight'], [3, 3, 4, 4])
    assert.ok(!('deconv6.weight' in shapes))
  })
})
