import * as assert from 'assert'
import { createModel } from '../../lib'
import { randomImages } from '../helpers'
import { relativeError } from '../export-check'
import { describeArchitecture } from './shared'

describeArchitecture({
  arch: 'dilated',
  cases: [
    // fc6 / fc7 narrowed from 4096 to 64 channels: at 4096 they are 120 M of the 134 M parameters, and
    // exporting, saving and loading them took 87 + 24 + 12 s of the battery on a 2-core AVX2 CPU; the
    // full width is built and counted below. fc6 runs at stride 8: small inputs keep it quick.
    { options: { arch: 'dilated', numClasses: 2, fcChannels: 64 }, size: [35, 29] }
  ],
  badOptions: [
    { options: { backbone: 'resnet18' }, error: RangeError, pattern: /'vgg16', 'vgg16_bn' for backbone/ },
    { options: { context: 'huge' }, error: RangeError, pattern: /'basic', 'large', 'none' for context/ },
    { options: { identityInit: 1 }, error: TypeError, pattern: /identityInit/ },
    { options: { fcChannels: 0 }, error: RangeError, pattern: /fcChannels/ }
  ]
})

describe('architecture dilated', () => {
  it('has the front end and context module of fyu/dilation (basic, large, none)', async () => {
    const counts: Record<string, number> = {}
    for (const context of ['basic', 'large', 'none'] as const) {
      const m = await createModel({ arch: 'dilated', numClasses: 21, context })
      counts[context] = m.info().parameters
      const shapes = await m.stateDictShapes()
      m.dispose()
      assert.deepStrictEqual(shapes['fc6.weight'], [4096, 512, 7, 7])
      assert.deepStrictEqual(shapes['final.weight'], [21, 4096, 1, 1])
      if (context === 'basic') {
        for (const n of ['ctx_conv1_1', 'ctx_conv1_2', 'ctx_conv2_1', 'ctx_conv3_1', 'ctx_conv4_1', 'ctx_conv5_1', 'ctx_fc1']) {
          assert.deepStrictEqual(shapes[`${n}.weight`], [21, 21, 3, 3], n)
        }
        assert.deepStrictEqual(shapes['ctx_final.weight'], [21, 21, 1, 1])
      } else if (context === 'large') {
        assert.deepStrictEqual(shapes['ctx_conv5_1.weight'], [32 * 21, 16 * 21, 3, 3])
        assert.deepStrictEqual(shapes['ctx_final.weight'], [21, 32 * 21, 1, 1])
      } else {
        assert.ok(!Object.keys(shapes).some((k) => k.startsWith('ctx_')))
      }
    }
    assert.deepStrictEqual(counts, { basic: 134374973, large: 141149720, none: 134346581 })
    const narrow = await createModel({ arch: 'dilated', numClasses: 21, context: 'none', fcChannels: 64 })
    const shapes = await narrow.stateDictShapes()
    // the front end without fc6 / fc7 / final at 4096, plus them at 64
    assert.strictEqual(narrow.info().parameters, 134346581 - (4096 * 512 * 49 + 4096 + 4096 * 4096 + 4096 + 21 * 4096 + 21) + (64 * 512 * 49 + 64 + 64 * 64 + 64 + 21 * 64 + 21))
    narrow.dispose()
    assert.deepStrictEqual([shapes['fc6.weight'], shapes['fc7.weight'], shapes['final.weight']], [[64, 512, 7, 7], [64, 64, 1, 1], [21, 64, 1, 1]])
  })

  it('gives the same fc6 by space-to-batch (NCHW) and by the dilated kernel (channels-last inference)', async () => {
    // On the CPU fc6 runs as an undilated convolution over the 4 x 4 phase-subsampled map for NCHW inputs
    // and whenever gradients may be asked for; channels-last predictions call the dilated kernel.
    const m = await createModel({ arch: 'dilated', numClasses: 3, fcChannels: 64 })
    try {
      for (const [h, w] of [[67, 45], [64, 64]]) {
        const x = randomImages(1, 3, h, w, 9)
        const o = { output: 'logits' as const, precision: 'fp32' as const }
        const nchw = (await m.predict(x, { ...o, channelsLast: false })).dataSync() as Float32Array
        const cl = (await m.predict(x, { ...o, channelsLast: true })).dataSync() as Float32Array
        assert.strictEqual(nchw.length, 3 * h * w)
        const err = relativeError(cl, nchw)
        assert.ok(err <= 1e-4, `${h}x${w}: relative error ${err}`)
      }
    } finally {
      m.dispose()
    }
  })
})
