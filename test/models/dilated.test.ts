import * as assert from 'assert'
import * as path from 'path'
import { backend, createModel, loadModel } from '../../lib'
import { randomImages, randomMasks, tmpdir } from '../helpers'
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

  it('trains its context module on a 32 x 32 map in channels-last bf16 (oneDNN crashed the process there)', async () => {
    // The context module's 21-channel convolutions dilated by 4-16: oneDNN's channels-last backward of
    // them killed the process with SIGSEGV on an AVX512-BF16 CPU (AMD Zen 4, libtorch 1.13 and 2.15,
    // every step; blocks/conv2d.cc TrainingNeedsNchw). They now train in NCHW. bf16 where the CPU has
    // it natively (the crashing kernels), channels-last fp32 elsewhere (the same NCHW path).
    const m = await createModel({ arch: 'dilated', numClasses: 21, fcChannels: 64 })
    try {
      const precision = backend().bf16 ? 'bf16' : 'fp32'
      const x = randomImages(4, 3, 256, 256, 5)
      const y = randomMasks(4, 256, 256, 21, 6)
      for (let i = 0; i < 2; i++) {
        const r = await m.trainStep(x, y, { optimizer: { type: 'sgd', lr: 0.01, momentum: 0.9 }, precision, channelsLast: true })
        assert.ok(Number.isFinite(r.loss) && r.updated, JSON.stringify(r))
      }
      // The updated weights give finite logits (no garbage gradient reached them).
      const logits = (await m.forward(randomImages(1, 3, 256, 256, 7), { precision: 'fp32' })) as { dataSync: () => Float32Array }
      assert.ok(logits.dataSync().every(Number.isFinite))
    } finally {
      m.dispose()
    }
  })

  it('trains a classifier of more than 2048 channels into fewer than 16 classes in bf16 (oneDNN corrupted the heap)', async () => {
    // libtorch 2.15's oneDNN corrupts the heap on AMX CPUs computing the bias gradient of a bf16 convolution
    // with > 2048 input and < 16 output channels: fc7's 4096 channels into a few classes ("corrupted
    // double-linked list", the process aborted at the second step of each of these three on an AMX Xeon).
    // Such a layer adds its bias after the convolution in training (blocks/conv2d.cc TrainingSplitsBias):
    // every parameter gets a finite gradient and the steps run, in bf16 where the CPU has it (the crashing
    // kernel), fp32 elsewhere (the same split path).
    const precision = backend().bf16 ? 'bf16' : 'fp32'
    for (const [arch, backbone] of [['dilated', undefined], ['fcn', 'vgg16'], ['deeplabv1', undefined]] as const) {
      const m = await createModel({ arch, backbone, numClasses: 3, fcChannels: 2064 })
      try {
        const x = randomImages(2, 3, 64, 64, 3)
        const y = randomMasks(2, 64, 64, 3, 4)
        assert.deepStrictEqual(await m.checkGradients(x, y, { precision, channelsLast: true }), [], arch)
        for (let i = 0; i < 3; i++) {
          const r = await m.trainStep(x, y, { optimizer: { type: 'sgd', lr: 0.01, momentum: 0.9 }, precision, channelsLast: true })
          assert.ok(Number.isFinite(r.loss) && r.updated, `${arch}: ${JSON.stringify(r)}`)
        }
      } finally {
        m.dispose()
      }
    }
  })

  it('gives the same fc6 by space-to-batch and by the dilated kernel, NCHW and channels-last', async () => {
    // Without AVX-512, fc6 runs on the CPU as an undilated convolution over the 4 x 4 phase-subsampled
    // map for NCHW inputs and whenever gradients may be asked for; with AVX-512 always as the dilated
    // kernel. SEGTORCH_SPACE_TO_BATCH (read when a model is made) forces either, so both paths are
    // checked on every CPU: the same weights in a model made under each.
    const before = process.env.SEGTORCH_SPACE_TO_BATCH
    const file = path.join(tmpdir(), 'dilated.segtorch')
    process.env.SEGTORCH_SPACE_TO_BATCH = '1'
    const s2bModel = await createModel({ arch: 'dilated', numClasses: 3, fcChannels: 64 })
    await s2bModel.save(file)
    process.env.SEGTORCH_SPACE_TO_BATCH = '0'
    const directModel = await loadModel(file)
    if (before === undefined) delete process.env.SEGTORCH_SPACE_TO_BATCH
    else process.env.SEGTORCH_SPACE_TO_BATCH = before
    try {
      for (const [h, w] of [[67, 45], [64, 64]]) {
        const x = randomImages(1, 3, h, w, 9)
        for (const channelsLast of [false, true]) {
          const o = { output: 'logits' as const, precision: 'fp32' as const, channelsLast }
          const s2b = (await s2bModel.predict(x, o)).dataSync() as Float32Array
          const direct = (await directModel.predict(x, o)).dataSync() as Float32Array
          assert.strictEqual(s2b.length, 3 * h * w)
          const err = relativeError(direct, s2b)
          // Not the same arithmetic (a guard against both models taking one path): different roundings.
          assert.ok(err > 0 && err <= 1e-4, `${h}x${w} channelsLast ${channelsLast}: relative error ${err}`)
        }
      }
    } finally {
      s2bModel.dispose()
      directModel.dispose()
    }
  })
})
