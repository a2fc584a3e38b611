import * as assert from 'assert'
import { createModel, tensor } from '../../lib'
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

describe('gcn training from scratch', function () {
  this.timeout(300000)

  // An 8 x 8-block map the network can learn: class 1 where the block's mean of channel 0 is above 0.5.
  function blocks (n: number, s: number): { x: Float32Array, y: Uint8Array } {
    let seed = 7
    const rand = (): number => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed / 2147483648 }
    const x = new Float32Array(n * 3 * s * s).map(rand)
    const y = new Uint8Array(n * s * s)
    for (let b = 0; b < n; b++) {
      for (let i = 0; i < s; i += 8) {
        for (let j = 0; j < s; j += 8) {
          let t = 0
          for (let u = 0; u < 8; u++) for (let v = 0; v < 8; v++) t += x[b * 3 * s * s + (i + u) * s + j + v]
          if (t / 64 > 0.5) for (let u = 0; u < 8; u++) for (let v = 0; v < 8; v++) y[b * s * s + (i + u) * s + j + v] = 1
        }
      }
    }
    return { x, y }
  }

  async function run (clipGradNorm?: number): Promise<Array<number | string>> {
    const seeder = await createModel({ arch: 'unet', numClasses: 2, baseChannels: 4 })
    await seeder._native().seed(20261204)  // libtorch's default generator: the same initial weights every run
    seeder.dispose()
    const m = await createModel({ arch: 'gcn', backbone: 'resnet18', numClasses: 21 })
    try {
      const { x, y } = blocks(4, 64)
      const losses: Array<number | string> = []
      for (let i = 0; i < 14; i++) {
        try {
          losses.push((await m.trainStep(tensor(x, [4, 3, 64, 64]), tensor(y, [4, 64, 64]), { precision: 'fp32', ...(clipGradNorm === undefined ? {} : { clipGradNorm }) })).loss)
        } catch (e) {
          losses.push((e as Error).message)
          break
        }
      }
      return losses
    } finally {
      m.dispose()
    }
  }

  // The paper's head has no normalisation: at the default SGD 0.01 / momentum 0.9 the unclipped network
  // blows up (PyTorch's twin too: README, Architectures); gcn's default clipGradNorm of 1 trains.
  it('trains at the default optimizer thanks to its default gradient clipping, and blows up without it', async () => {
    const clipped = await run()
    assert.ok(clipped.every((l) => typeof l === 'number' && Number.isFinite(l) && l < 5), `losses ${clipped.join(' ')}`)
    const last = clipped.slice(-3) as number[]
    assert.ok(Math.max(...last) < 0.8 * (clipped[0] as number), `losses ${clipped.join(' ')}`)
    const unclipped = await run(0)
    // The same initial weights (seeded) and data: unclipped, the loss jumps to many times its start or the step throws.
    assert.strictEqual(unclipped[0], clipped[0])
    assert.ok(unclipped.some((l) => typeof l === 'string' ? /non-finite.*clipGradNorm/.test(l) : l > 5 * (clipped[0] as number)), `losses ${unclipped.join(' ')}`)
  })
})
