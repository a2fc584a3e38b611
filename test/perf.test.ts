// Correctness of the speed defaults: BatchNorm folding for predict, inference mode, bf16 autocast
// and channels-last. (Speed itself is measured in bench/, never asserted here.)
import * as assert from 'assert'
import { spawnSync } from 'child_process'
import * as fs from 'fs'
import * as path from 'path'
import { backend, cpuMemoryStats, CpuMemoryStats, createModel, emptyCpuCache, loadModel, Model, ModelOptions, tensor } from '../lib'
import { readImage } from '../lib/data'
import { autoChannelsLast, autoPrecision, autoWinograd } from '../lib/model'
import { fp32WinogradLayout } from '../lib/precision'
import { CHILD_REGISTER, maxAbs, PredictionSetting, randomImages, randomMasks, rejects, ROOT, runPredictionCases, savePredictionCases, tmpdir } from './helpers'

function maxDiff (a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]))
  return d
}

/** The mean absolute difference of a and t. */
function meanAbs (a: ArrayLike<number>, t: ArrayLike<number>): number {
  let s = 0
  for (let i = 0; i < a.length; i++) s += Math.abs(a[i] - t[i])
  return s / a.length
}

const FP32 = { precision: 'fp32', output: 'logits' } as const

/** Moves the BN running statistics away from their initial 0 / 1 so that folding has work to do. */
async function warmStatistics (model: Model, channels: number, size: number): Promise<void> {
  await model.train(true)
  for (let i = 0; i < 3; i++) await model.forward(randomImages(2, channels, size, size, 40 + i))
  await model.train(false)
}

// The trace files a child wrote under SEGTORCH_PROFILE=<dir>/trace (trace.<pid>.<job>.json), parsed, in job order.
function traceFiles (dir: string): unknown[] {
  const job = (f: string): number => Number(f.split('.').at(-2))
  return fs.readdirSync(dir).filter((f) => f.startsWith('trace')).sort((a, b) => job(a) - job(b))
    .map((f) => JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')))
}

// The operator names of each traced prediction a child ran under SEGTORCH_PROFILE=<dir>/trace, in job order (the
// traces with convolutions: one per prediction).
function predictionTraces (dir: string): string[][] {
  return (traceFiles(dir) as Array<Array<{ name: string }>>).map((trace) => trace.map((e) => e.name))
    .filter((names) => names.some((n) => /convolution/.test(n)))
}

describe('BatchNorm folding for predict', () => {
  const cases: Array<{ name: string, options: ModelOptions, size: number, inputs?: number }> = [
    { name: 'fcn/resnet18', options: { arch: 'fcn', backbone: 'resnet18', numClasses: 3, aux: true }, size: 64 },
    { name: 'deeplabv3/resnet18 (ASPP image pooling)', options: { arch: 'deeplabv3', backbone: 'resnet18', numClasses: 3, outputStride: 16 }, size: 64 },
    { name: 'pspnet/resnet18', options: { arch: 'pspnet', backbone: 'resnet18', numClasses: 3 }, size: 64 },
    { name: 'lwrefinenet/mobilenetv2', options: { arch: 'lwrefinenet', backbone: 'mobilenetv2', numClasses: 3 }, size: 64 },
    { name: 'icnet/resnet18 (shared backbone at two scales)', options: { arch: 'icnet', backbone: 'resnet18', numClasses: 3 }, size: 96 },
    { name: 'unet with batchNorm', options: { arch: 'unet', numClasses: 2, baseChannels: 8, batchNorm: true } as ModelOptions, size: 48 },
    // SegNet's decoder puts values where its encoder's max-pooling found them: when two activations
    // of a pooling window are within float rounding of each other, any change of summation order
    // (folding, or channels-last alone without folding: measured on 1 of 40 random models) can move
    // the maximum and with it a whole region of the output. Folding is checked on up to 3 inputs
    // and must agree on one; a folding bug would show on every input.
    { name: 'segnet/vgg16_bn', options: { arch: 'segnet', backbone: 'vgg16_bn', numClasses: 3 } as ModelOptions, size: 64, inputs: 3 }
  ]
  for (const c of cases) {
    it(`${c.name}: folded logits equal the unfolded ones within 1e-4 (fp32)`, async () => {
      const model = await createModel(c.options)
      try {
        await warmStatistics(model, 3, c.size)
        for (const channelsLast of [false, true]) {
          const misses: string[] = []
          for (let k = 0; k < (c.inputs ?? 1); k++) {
            const x = randomImages(1, 3, c.size + 3, c.size - 5, 7 + k)
            const plain = (await model.predict(x, { ...FP32, channelsLast, foldBatchNorm: false })).dataSync()
            const folded = (await model.predict(x, { ...FP32, channelsLast, foldBatchNorm: true })).dataSync()
            const scale = Math.max(1, maxAbs(plain))
            if (maxDiff(plain, folded) / scale < 1e-4) break
            misses.push(`input ${k + 1}: max diff ${maxDiff(plain, folded)} (scale ${scale})`)
          }
          if (misses.length > 0 && misses.length < (c.inputs ?? 1)) console.log(`      (channelsLast ${channelsLast}: a pooling maximum moved on ${misses.join('; ')})`)
          assert.ok(misses.length < (c.inputs ?? 1), `channelsLast ${channelsLast}: ${misses.join('; ')}`)
        }
      } finally {
        model.dispose()
      }
    })
  }

  // The pairs are found on a 64 x 64 example (native/infer/fold.cc): there LR-ASPP's 5x5 depthwise convolutions with
  // dilation 2 (a 4 x 4 map) and DeepLab v3's ASPP at rates 12-36 (8 x 8) had taps that only meet padding, which the
  // training path cuts from the kernel, so those convolutions were not found and their BatchNorms ran unfolded.
  it('every BatchNorm after a convolution folds, dilated ones on small maps included: no batch norm in the profile', async () => {
    const dir = tmpdir()
    const cases: ModelOptions[] = [
      { arch: 'lraspp', numClasses: 3 },
      { arch: 'deeplabv3', backbone: 'resnet18', numClasses: 3, outputStride: 8 },
      { arch: 'fcn', backbone: 'resnet18', numClasses: 3 }
    ]
    await savePredictionCases(dir, cases, 40, { settings: [] })
    // Each model's first prediction folds (its trace holds the unfolded forward that finds the pairs, BatchNorms
    // included: the check can see them); the next two run the folded copy, in both layouts.
    const fold = { precision: 'fp32', foldBatchNorm: true } as const
    const settings: PredictionSetting[] = [{ ...fold, channelsLast: true }, { ...fold, channelsLast: true }, { ...fold, channelsLast: false }]
    runPredictionCases(dir, cases.length, { SEGTORCH_PROFILE: path.join(dir, 'trace') }, settings)
    const predictions = predictionTraces(dir)
    assert.strictEqual(predictions.length, cases.length * settings.length, 'one trace with convolutions per prediction')
    for (const [k, options] of cases.entries()) {
      const [first, ...folded] = predictions.slice(settings.length * k, settings.length * (k + 1))
      assert.ok(first.some((n) => /batch_norm/.test(n)), `${options.arch}: the first prediction's trace shows the forward that finds the pairs`)
      for (const names of folded) assert.deepStrictEqual(names.filter((n) => /batch_norm/.test(n)), [], `${options.arch}: BatchNorms left unfolded`)
    }
  })

  it('the folded copy follows trainStep, loadStateDict and load; save keeps the unfolded weights', async () => {
    const model = await createModel({ arch: 'fcn', backbone: 'resnet18', numClasses: 3 })
    const dir = tmpdir()
    try {
      const x = randomImages(1, 3, 64, 64, 11)
      const check = async (when: string): Promise<Float32Array> => {
        const plain = (await model.predict(x, { ...FP32, foldBatchNorm: false })).dataSync()
        const folded = (await model.predict(x, { ...FP32, foldBatchNorm: true })).dataSync()
        assert.ok(maxDiff(plain, folded) / Math.max(1, maxAbs(plain)) < 1e-4, `${when}: max diff ${maxDiff(plain, folded)}`)
        return folded
      }
      const before = await check('fresh')
      const file = path.join(dir, 'a.segtorch')
      await model.save(file)
      await model.trainStep(randomImages(2, 3, 64, 64, 12), randomMasks(2, 64, 64, 3, 13), { optimizer: { lr: 0.05 } })
      const after = await check('after trainStep')
      assert.ok(maxDiff(before, after) > 1e-3, 'the step changed the predictions')
      // Weights saved after folding are the trained, unfolded ones: a fresh model loading them agrees.
      const trained = path.join(dir, 'b.segtorch')
      await model.save(trained)
      const reloaded = await loadModel(trained)
      try {
        const a = (await model.forward(x)).dataSync()
        const b = (await reloaded.forward(x)).dataSync()
        assert.strictEqual(maxDiff(a, b), 0)
      } finally {
        reloaded.dispose()
      }
      await model._load(file) // in place, as fit's resume does
      const back = await check('after load')
      assert.ok(maxDiff(before, back) < 1e-5, 'load brought the first weights back')
      const sd = path.join(dir, 'state.pt')
      await model.saveStateDict(sd)
      await model.trainStep(randomImages(2, 3, 64, 64, 14), randomMasks(2, 64, 64, 3, 15), { optimizer: { lr: 0.05 } })
      await model.loadStateDict(sd)
      const again = await check('after loadStateDict')
      assert.ok(maxDiff(before, again) < 1e-5, 'loadStateDict brought the first weights back')
    } finally {
      model.dispose()
    }
  })

  it('rejects a non-boolean foldBatchNorm with a TypeError and fp16 on the CPU with a RangeError', async () => {
    const model = await createModel({ arch: 'fcn', backbone: 'resnet18', numClasses: 2 })
    try {
      const x = randomImages(1, 3, 32, 32)
      await rejects(model.predict(x, { foldBatchNorm: 'yes' as never }), TypeError, /foldBatchNorm/)
      await rejects(model.predict(x, { channelsLast: 1 as never }), TypeError, /channelsLast/)
      if (model.device === 'cpu') await rejects(model.predict(x, { precision: 'fp16' }), RangeError, /fp16/)
    } finally {
      model.dispose()
    }
  })
})

describe('precision and layout defaults', () => {
  it("'auto' is bf16 where this CPU runs it faster (autoPrecision), fp32 elsewhere; the layout autoChannelsLast picks", async () => {
    const b = backend()
    const model = await createModel({ arch: 'fcn', backbone: 'resnet18', numClasses: 3 })
    try {
      const x = randomImages(1, 3, 48, 48, 21)
      const byDefault = (await model.predict(x, { output: 'logits' })).dataSync()
      // The defaults fold BatchNorm; an explicit 'fp32' alone would not (it asks for the reference's arithmetic).
      const precision = autoPrecision('cpu', 'predict', model.config)
      // Where NNPACK's Winograd is 'auto' (libtorch 2.x on a CPU without AVX-512), fp32 predictions run it in NCHW;
      // where segtorch's fp32 Winograd is (AVX-512, libtorch 2.x), channels-last; bf16 ones (libtorch 2.x) run the
      // bf16 Winograd channels-last.
      const winograd = autoWinograd('cpu', model.config, precision)
      const channelsLast = winograd && precision === 'fp32'
        ? fp32WinogradLayout('auto') === 'channels-last'
        : autoChannelsLast('cpu', 'predict', model.config, precision)
      const explicit = (await model.predict(x, { output: 'logits', precision, channelsLast, foldBatchNorm: true, winograd })).dataSync()
      assert.strictEqual(maxDiff(byDefault, explicit), 0)
      if (precision === 'bf16') {
        const fp32 = (await model.predict(x, { output: 'logits', precision: 'fp32' })).dataSync()
        assert.ok(maxDiff(byDefault, fp32) > 0, 'the default differs from fp32 where it is bf16')
      }
      // Training opts out the same way.
      const r = await model.trainStep(randomImages(2, 3, 48, 48, 22), randomMasks(2, 48, 48, 3, 23), { precision: 'fp32', channelsLast: false })
      assert.ok(Number.isFinite(r.loss))
    } finally {
      model.dispose()
    }
  })

  it('bf16 inference agrees with fp32 on >= 99.5% of the pixels of a real image (briefly trained model)', async () => {
    // Random weights leave near-ties between classes everywhere (98.5-99% agreement): a model
    // trained for a few steps on the membrane images has real margins, as a user's model does.
    const S = 128
    const read = (dir: string, i: number) => readImage(path.join(ROOT, `data/membrane/train/${dir}/${i}.png`), 1)
    const images = await Promise.all([0, 1, 2, 3].map((i) => read('image', i)))
    const labels = await Promise.all([0, 1, 2, 3].map((i) => read('label', i)))
    const crop = (src: Uint8Array, y0: number, x0: number, out: Uint8Array, at: number, f: (v: number) => number): void => {
      for (let i = 0; i < S; i++) for (let j = 0; j < S; j++) out[at + i * S + j] = f(src[(y0 + i) * 512 + x0 + j])
    }
    const model = await createModel({ arch: 'fcn', backbone: 'resnet18', numClasses: 2, inChannels: 1, outputStride: 8 })
    try {
      for (let step = 0; step < 30; step++) {
        const x = new Uint8Array(4 * S * S)
        const y = new Uint8Array(4 * S * S)
        for (let k = 0; k < 4; k++) {
          const y0 = (step * 37 + k * 91) % (512 - S)
          const x0 = (step * 53 + k * 71) % (512 - S)
          crop(images[k].data, y0, x0, x, k * S * S, (v) => v)
          crop(labels[k].data, y0, x0, y, k * S * S, (v) => v > 127 ? 1 : 0)
        }
        // Trained channels-last whatever 'auto' picks (NCHW with libtorch 1.x on a CPU without native bf16): the
        // model this bound was set for. NCHW-trained, one run in eight fell below it (99.66-99.92 % in others).
        await model.trainStep(tensor(x, [4, 1, S, S]), tensor(y, [4, S, S]), { optimizer: { type: 'adam', lr: 1e-3 }, channelsLast: true })
      }
      const test = await readImage(path.join(ROOT, 'data/membrane/train/image/10.png'), 1)
      const t = new Uint8Array(S * S)
      crop(test.data, 200, 200, t, 0, (v) => v)
      const x = tensor(t, [1, 1, S, S])
      const a = (await model.predict(x, { precision: 'fp32' })).dataSync()
      const b = (await model.predict(x, { precision: 'bf16' })).dataSync()
      let same = 0
      for (let i = 0; i < a.length; i++) same += a[i] === b[i] ? 1 : 0
      assert.ok(same / a.length >= 0.995, `agreement ${same / a.length}`)
      // Not a degenerate model that paints one class everywhere.
      const ones = a.reduce((s, v) => s + v, 0)
      assert.ok(ones > 0.05 * a.length && ones < 0.98 * a.length, `class 1 on ${ones} of ${a.length} pixels`)
    } finally {
      model.dispose()
    }
  })
})

// predict's CPU convolutions with weights reordered once for oneDNN (native/blocks/conv2d.h; libtorch
// 2.x only). The same saved models predict the same inputs in a child process with
// SEGTORCH_PREPACK=0 (the switch is read once per process), and the outputs are compared.
describe('prepacked convolutions in predict', () => {
  const cases: ModelOptions[] = [
    { arch: 'fcn', backbone: 'resnet18', numClasses: 3 },
    { arch: 'lwrefinenet', backbone: 'mobilenetv2', numClasses: 3 }, // depthwise convolutions
    { arch: 'deeplabv3', backbone: 'resnet18', numClasses: 3, outputStride: 8 } // dilated, ASPP
  ]

  it('backend().prepack: false on libtorch 1.x, and with SEGTORCH_PREPACK=0; predictions equal the unpacked ones (fp32 1e-4; bf16 as close to fp32)', async function () {
    const b = backend()
    if (Number(b.libtorch.split('.')[0]) < 2) assert.strictEqual(b.prepack, false, 'libtorch 1.x has no prepacked convolution')
    const dir = tmpdir()
    const ours = await savePredictionCases(dir, cases, 30, { prepare: async (model) => await warmStatistics(model, 3, 64) })
    const theirs = runPredictionCases(dir, cases.length, { SEGTORCH_PREPACK: '0' })
    assert.strictEqual(theirs.backend.prepack, false, 'SEGTORCH_PREPACK=0 turns it off')
    // bf16: both paths round differently (the fused path rounds once where the plain one rounds
    // the convolution's output before the addition), so each is compared with fp32: the prepacked
    // path's mean error must be no larger than about the plain path's.
    for (const [k, options] of cases.entries()) {
      const name = `${options.arch}/${options.backbone}`
      const [a32, t32, a16, t16] = [ours[2 * k], theirs.logits[2 * k], ours[2 * k + 1], theirs.logits[2 * k + 1]]
      assert.strictEqual(a32.length, t32.length, name)
      assert.ok(maxDiff(a32, t32) / Math.max(1, maxAbs(t32)) < 1e-4, `${name} fp32: max diff ${maxDiff(a32, t32)}`)
      const [packed, plain] = [meanAbs(a16, t32), meanAbs(t16, t32)]
      assert.ok(packed <= 1.5 * plain + 1e-6, `${name} bf16: mean error against fp32 ${packed} (plain path ${plain})`)
    }
  })
})

// A residual addition whose addend the network gives up (ResNet's shortcut, RefineNet's RCU and CRP) is written
// into that addend by oneDNN's sum post-op (mkldnn::_convolution_pointwise_) instead of a new tensor, from a shape's
// second call on (its first runs the out-of-place addition: native/blocks/conv2d.cc RunPacked). The child
// predicts each saved model three times per setting and profiles every prediction.
describe('residual additions written in place', () => {
  const cases: ModelOptions[] = [
    { arch: 'fcn', backbone: 'resnet18', numClasses: 3 }, // basic blocks; layer1's first has no downsampling
    { arch: 'fcn', backbone: 'resnet50', numClasses: 3 }, // bottlenecks
    { arch: 'refinenet', backbone: 'resnet18', numClasses: 3 } // RCUs and CRPs
  ]
  const BF16: PredictionSetting = { precision: 'bf16', channelsLast: true, foldBatchNorm: true }
  const WINOGRAD_FP32: PredictionSetting = { precision: 'fp32', winograd: true, channelsLast: true, foldBatchNorm: true }

  it('give the out-of-place call\'s logits bit for bit, and leave the caller\'s input alone', async function () {
    if (!backend().prepack) this.skip() // libtorch 1.x: no prepacked convolutions
    const dir = tmpdir()
    await savePredictionCases(dir, cases, 70, { prepare: async (model) => await warmStatistics(model, 3, 64), settings: [], size: [77, 93] })
    const settings = [BF16, BF16, BF16, WINOGRAD_FP32, WINOGRAD_FP32, WINOGRAD_FP32]
    const { logits } = runPredictionCases(dir, cases.length, { SEGTORCH_PROFILE: path.join(dir, 'trace') }, settings)
    const traces = predictionTraces(dir)
    assert.strictEqual(traces.length, cases.length * settings.length, 'one trace with convolutions per prediction')
    const inPlace = (names: string[]): boolean => names.includes('mkldnn::_convolution_pointwise_')
    for (const [k, options] of cases.entries()) {
      const name = `${options.arch}/${options.backbone}`
      for (const first of [0, 3]) {
        const what = `${name} ${settings[first].precision}`
        const at = k * settings.length + first
        assert.ok(!inPlace(traces[at]), `${what}: a shape's first call adds out of place`)
        for (const later of [1, 2]) {
          // In fp32 the fp32 Winograd takes the 3x3 convolutions (basic blocks' and RCUs' additions): only the
          // bottlenecks' 1x1 convolutions add in place there.
          if (first === 0 || options.backbone === 'resnet50') assert.ok(inPlace(traces[at + later]), `${what}: later calls add in place`)
          assert.strictEqual(maxDiff(logits[at], logits[at + later]), 0, `${what}: call ${later + 1} against the first`)
        }
      }
    }
    // In this process: the caller's float32 input comes back unchanged from in-place predictions.
    const model = await createModel(cases[0])
    try {
      const x = randomImages(1, 3, 64, 64, 71)
      const before = x.dataSync().slice()
      for (let i = 0; i < 3; i++) (await model.predict(x, { ...BF16, output: 'logits' })).dispose()
      assert.strictEqual(maxDiff(before, x.dataSync()), 0)
    } finally {
      model.dispose()
    }
  })
})

// Without gradients, a Sequential's conv [+ BN] + ReLU runs as one call (native/blocks/conv2d.h ForwardSequential):
// the ReLU a oneDNN post-op of the prepacked convolution (or of the fp32 Winograd). U-Net's, SegNet's (VGG16-BN and
// its decoder), DFN's (ConvBnRelu, its refinement blocks) and GCN's (boundary refinement) ReLUs all go into their
// convolutions; U-Net's and GCN's channels-last fp32 predictions also check the sub-pixel deconvolution's depth-to-space.
describe('conv + BN + ReLU sequences as one call in predictions', () => {
  const cases: ModelOptions[] = [
    { arch: 'unet', numClasses: 3, baseChannels: 8 },
    { arch: 'segnet', numClasses: 3 },
    { arch: 'dfn', backbone: 'resnet18', numClasses: 3 },
    { arch: 'gcn', backbone: 'resnet18', numClasses: 3 } // boundary refinement; its sub-pixel deconvolutions' depth-to-space
  ]
  const BF16: PredictionSetting = { precision: 'bf16', channelsLast: true, foldBatchNorm: true }
  // fp32 without the Winograd: not prepacked, so the ReLU runs in place after the convolution (ForwardAct's other path).
  const FP32: PredictionSetting = { precision: 'fp32', winograd: false, channelsLast: true, foldBatchNorm: true }

  it('leave no separate ReLU in the profile where prepacked; the other path gives the exact fp32 logits', async function () {
    if (!backend().prepack) this.skip() // libtorch 1.x: no prepacked convolutions (the ReLUs then run in place after them)
    const dir = tmpdir()
    const exact = await savePredictionCases(dir, cases, 80, {
      prepare: async (model) => await warmStatistics(model, 3, 64), settings: [{ precision: 'fp32', channelsLast: false }], size: [77, 93]
    })
    const settings = [BF16, BF16, FP32]
    const { logits } = runPredictionCases(dir, cases.length, { SEGTORCH_PROFILE: path.join(dir, 'trace') }, settings)
    const traces = predictionTraces(dir)
    assert.strictEqual(traces.length, cases.length * settings.length, 'one trace with convolutions per prediction')
    for (const [k, options] of cases.entries()) {
      const name = `${options.arch}/${options.backbone ?? 'none'}`
      const at = k * settings.length
      // The first prediction folds (its trace holds the unfolded forward with gradients: ReLUs there); the second
      // runs the folded, prepacked copy.
      assert.ok(traces[at].some((n) => /relu|clamp_min/.test(n)), `${name}: the check can see ReLUs`)
      assert.deepStrictEqual(traces[at + 1].filter((n) => /relu|clamp_min/.test(n)), [], `${name}: separate ReLUs in a bf16 prediction`)
      const scale = Math.max(1, maxAbs(exact[k]))
      if (options.arch === 'segnet') {
        // Max unpooling: a near-tie in a pooling window (the folded BatchNorm rounds differently, ~3e-7) can pick the
        // other position and move one value to a neighbouring pixel, whose change the convolutions after it spread
        // over a few pixels (max difference 0.0104 in one of ~10 runs on 2026-12-05, 0 logits off in 21 others): at
        // most 2 % of the logits may differ, the rest within 1e-5 (a wrong path differs nearly everywhere).
        let off = 0
        for (let i = 0; i < exact[k].length; i++) if (Math.abs(logits[at + 2][i] - exact[k][i]) / scale >= 1e-5) off++
        assert.ok(off <= 0.02 * exact[k].length, `${name} fp32: ${off} of ${exact[k].length} logits differ`)
      } else {
        assert.ok(maxDiff(logits[at + 2], exact[k]) / scale < 1e-5, `${name} fp32: ${maxDiff(logits[at + 2], exact[k])}`)
      }
    }
  })
})

// Without gradients on the CPU, bilinear resizes of channels-last maps run segtorch's kernel (native/blocks/resize.cc),
// written straight into the concatenation (PSPNet's PPM, ASPP, UPerNet's FPN, DeepLab v3+'s decoder) or added as they
// are computed (UPerNet's and RefineNet's top-down paths, ICNet's pyramid pooling). Children predict the same saved
// models with it on and off (SEGTORCH_FAST_RESIZE=0: ATen's upsample_bilinear2d and cat), each profiled.
describe('bilinear resizes into their concatenation or addition', () => {
  const cases: ModelOptions[] = [
    { arch: 'upernet', backbone: 'resnet18', numClasses: 3 },
    { arch: 'pspnet', backbone: 'resnet18', numClasses: 3 },
    { arch: 'deeplabv3plus', backbone: 'resnet18', numClasses: 3 },
    { arch: 'refinenet', backbone: 'resnet18', numClasses: 3 }, // align_corners=True
    { arch: 'icnet', backbone: 'resnet18', numClasses: 3 }
  ]
  const BF16: PredictionSetting = { precision: 'bf16', channelsLast: true, foldBatchNorm: true }
  const FP32: PredictionSetting = { precision: 'fp32', winograd: false, channelsLast: true, foldBatchNorm: true }

  it('give ATen\'s logits (fp32 1e-5; bf16 as close to fp32), with no upsample_bilinear2d or cat left in the profile', async function () {
    const dir = tmpdir()
    // Each setting twice: a model's first prediction folds its BatchNorms, with gradients (ATen's operators in its trace).
    const settings = [FP32, BF16, FP32, BF16]
    const exact = await savePredictionCases(dir, cases, 90, {
      prepare: async (model) => await warmStatistics(model, 3, 64), settings: [{ precision: 'fp32', channelsLast: false }], size: [77, 93]
    })
    const fast = runPredictionCases(dir, cases.length, { SEGTORCH_PROFILE: path.join(dir, 'trace') }, settings).logits
    const traces = predictionTraces(dir)
    const aten = runPredictionCases(dir, cases.length, { SEGTORCH_FAST_RESIZE: '0' }, settings).logits
    assert.strictEqual(traces.length, cases.length * settings.length, 'one trace with convolutions per prediction')
    for (const [k, options] of cases.entries()) {
      const name = `${options.arch}/${options.backbone}`
      const at = k * settings.length
      const scale = Math.max(1, maxAbs(exact[k]))
      assert.ok(maxDiff(fast[at], aten[at]) / scale < 1e-5, `${name} fp32: ${maxDiff(fast[at], aten[at])} from ATen's resize`)
      assert.ok(maxDiff(fast[at], exact[k]) / scale < 1e-5, `${name} fp32: ${maxDiff(fast[at], exact[k])} from the contiguous fp32 path`)
      const [ours, theirs] = [meanAbs(fast[at + 1], exact[k]), meanAbs(aten[at + 1], exact[k])]
      assert.ok(ours <= 1.5 * theirs + 1e-6, `${name} bf16: mean error against fp32 ${ours} (ATen's resize: ${theirs})`)
      assert.ok(traces[at].includes('aten::upsample_bilinear2d'), `${name}: the check can see ATen's resize`)
      for (const s of [2, 3]) {
        assert.deepStrictEqual([fast[at + s - 2], aten[at + s - 2]], [fast[at + s], aten[at + s]], `${name}: the same logits again`)
        const names = traces[at + s]
        assert.deepStrictEqual(names.filter((n) => /upsample_bilinear2d|^aten::cat$/.test(n)), [], `${name} ${settings[s].precision}: ATen's resize or cat ran`)
      }
    }
  })
})

// fp32 predictions under segtorch's Winograd F(4x4, 3x3) run the convolutions it does not take (1x1, strided,
// depthwise, other kernels) prepacked, with the folded BatchNorm's residual addition and activation as oneDNN post-ops
// (native/blocks/conv2d.cc PackedPathApplies; libtorch 2.x). Children predict the same saved models with the
// fused path on and off (SEGTORCH_PREPACK_FP32=0), each profiled, so that the test sees which path ran.
describe('fused fp32 convolutions beside the fp32 Winograd', () => {
  const WINOGRAD_FP32: PredictionSetting = { precision: 'fp32', winograd: true, channelsLast: true, foldBatchNorm: true }
  const cases: ModelOptions[] = [
    { arch: 'fcn', backbone: 'resnet50', numClasses: 3 }, // bottlenecks: 1x1 + BN [+ shortcut] + ReLU; the head's 3x3 by Winograd
    { arch: 'lraspp', backbone: 'mobilenetv3_large', numClasses: 3 }, // 1x1 and depthwise + BN + hardswish / ReLU
    { arch: 'mtrefinenet', backbone: 'mobilenetv2', numClasses: 3 } // 1x1 and depthwise + BN + ReLU6, residual additions
  ]

  it('give the unfused path\'s logits (1e-4) and the exact fp32 ones; the profile shows which path ran', async function () {
    if (!backend().prepack) this.skip() // libtorch 1.x: no prepacked convolutions
    const dir = tmpdir()
    // Exact fp32 logits from this process (contiguous: no Winograd), at 77 x 93 (the Winograd takes FCN's head and
    // LR-ASPP's and MTRefineNet's 3x3 convolutions there).
    const exact = await savePredictionCases(dir, cases, 60, {
      prepare: async (model) => await warmStatistics(model, 3, 64), settings: [{ precision: 'fp32', channelsLast: false }], size: [77, 93]
    })
    const traces = (prefix: string): string => fs.readdirSync(dir).filter((f) => f.startsWith(prefix)).map((f) => fs.readFileSync(path.join(dir, f), 'utf8')).join('\n')
    const fused = runPredictionCases(dir, cases.length, { SEGTORCH_PROFILE: path.join(dir, 'fused') }, [WINOGRAD_FP32])
    const plain = runPredictionCases(dir, cases.length, { SEGTORCH_PROFILE: path.join(dir, 'plain'), SEGTORCH_PREPACK_FP32: '0' }, [WINOGRAD_FP32])
    const [withFused, withoutFused] = [traces('fused'), traces('plain')]
    assert.match(withFused, /mkldnn::_convolution_pointwise/, 'the fused path ran')
    assert.doesNotMatch(withoutFused, /mkldnn::_convolution_pointwise/, 'SEGTORCH_PREPACK_FP32=0 turns it off')
    for (const t of [withFused, withoutFused]) assert.match(t, /aten::bmm/, 'the Winograd products ran (it takes precedence)')
    for (const [k, options] of cases.entries()) {
      const name = `${options.arch}/${options.backbone}`
      const scale = Math.max(1, maxAbs(exact[k]))
      assert.ok(maxDiff(fused.logits[k], plain.logits[k]) / scale < 1e-4, `${name}: fused against unfused ${maxDiff(fused.logits[k], plain.logits[k])}`)
      assert.ok(maxDiff(fused.logits[k], exact[k]) / scale < 1e-4, `${name}: fused against exact fp32 ${maxDiff(fused.logits[k], exact[k])}`)
    }
  })
})

// The tests of values a model keeps between predictions (the PPM split's parts, the composed convolutions): each
// model's logits in fp32 (channels-last folded, NCHW unfolded) and bf16 (folded, unfolded).
const KEPT_SETTINGS: PredictionSetting[] = [
  { precision: 'fp32', channelsLast: true, foldBatchNorm: true, winograd: false },
  { precision: 'fp32', channelsLast: false, foldBatchNorm: false },
  { precision: 'bf16', channelsLast: true, foldBatchNorm: true },
  { precision: 'bf16', channelsLast: true, foldBatchNorm: false }
]

// A model predicts once at `size` in two settings (what it keeps is made), then takes a training step (its one-pass
// optimizer writes the weights in place): its predictions afterwards must use the step's weights.
function predictThenStep (size: readonly [number, number]): (model: Model) => Promise<void> {
  return async (model) => {
    await warmStatistics(model, 3, 64)
    await model.predict(randomImages(1, 3, size[0], size[1], 5))
    await model.predict(randomImages(1, 3, size[0], size[1], 5), { precision: 'fp32', channelsLast: false, foldBatchNorm: false })
    await model.trainStep(randomImages(2, 3, 64, 64, 6), randomMasks(2, 64, 64, 3, 7), { optimizer: { type: 'sgd', lr: 0.05, momentum: 0.9 } })
  }
}

// KEPT_SETTINGS' logits of model k: `on` (the kept values' path) and `parent` (this process, after predictThenStep)
// against `off` (the plain path): fp32 within 1e-5, bf16 mean error against fp32 within 1.5x of the plain path's.
function assertKeptLogits (name: string, k: number, on: ArrayLike<number>[], off: ArrayLike<number>[], parent: ArrayLike<number>[], label: string): void {
  const at = k * KEPT_SETTINGS.length
  const scale = Math.max(1, maxAbs(off[at]))
  for (const s of [0, 1]) {
    for (const [which, a] of [[label, on[at + s]], ['after a step', parent[at + s]]] as const) {
      assert.ok(maxDiff(a, off[at + s]) / scale < 1e-5, `${name} fp32 ${JSON.stringify(KEPT_SETTINGS[s])} ${which}: ${maxDiff(a, off[at + s])}`)
    }
  }
  for (const s of [2, 3]) {
    const [ours, theirs] = [meanAbs(on[at + s], off[at]), meanAbs(off[at + s], off[at])]
    assert.ok(ours <= 1.5 * theirs + 1e-6, `${name} bf16 ${JSON.stringify(KEPT_SETTINGS[s])} ${label}: mean error against fp32 ${ours} (plain: ${theirs})`)
    assert.ok(meanAbs(parent[at + s], off[at]) <= 1.5 * theirs + 1e-6, `${name} bf16 after a step: ${meanAbs(parent[at + s], off[at])}`)
  }
}

// PSPNet's and UPerNet's pyramid pooling in predictions (native/blocks/ppm.h): the bins' poolings in one pass over the
// map (blocks/pool_bins.h), and the head convolution after it split by its input channels (ForwardHead): oneDNN's
// convolution of the backbone's map alone, plus the branches' share computed on their pooled maps before the bilinear
// resize. Children predict the same saved models with both on (the split wherever the shape fits) and with ATen's
// poolings and the concatenation (SEGTORCH_POOL_BINS=0, SEGTORCH_PPM_SPLIT=0), each profiled so that the test sees
// which path ran.
describe('the pyramid pooling in one pass and its head convolution split by input channels', () => {
  const cases: ModelOptions[] = [
    { arch: 'pspnet', backbone: 'resnet18', numClasses: 3 },
    { arch: 'upernet', backbone: 'resnet18', numClasses: 3 }
  ]
  const settings = KEPT_SETTINGS

  // At 257 x 263 this process splits by the rule (PSPNet's 33 x 33 map: 1089 output pixels; UPerNet's 9 x 9 is left
  // whole); at 77 x 93 the maps (10 x 12, 3 x 3) are smaller than some bin counts (overlapping windows).
  for (const size of [[257, 263], [77, 93]] as const) {
    it(`give ATen's and the concatenation's logits (fp32 1e-5; bf16 as close to fp32), after a training step too: ${size[0]} x ${size[1]}`, async () => {
      const dir = tmpdir()
      for (const side of ['on', 'off']) fs.mkdirSync(path.join(dir, side))
      // Each model keeps the split's parts, then takes a training step.
      const parent = await savePredictionCases(dir, cases, 70, { prepare: predictThenStep(size), settings, size })
      const on = runPredictionCases(dir, cases.length, { SEGTORCH_PROFILE: path.join(dir, 'on', 'trace'), SEGTORCH_PPM_SPLIT: '1' }, settings).logits
      const off = runPredictionCases(dir, cases.length, { SEGTORCH_PROFILE: path.join(dir, 'off', 'trace'), SEGTORCH_PPM_SPLIT: '0', SEGTORCH_POOL_BINS: '0' }, settings).logits
      const [onTraces, offTraces] = [predictionTraces(path.join(dir, 'on')), predictionTraces(path.join(dir, 'off'))]
      // The split's products of the pooled maps with the kernel's branch channels (aten::bmm) ran in one child only;
      // ATen's adaptive pooling in the other only.
      assert.ok(onTraces.some((names) => names.includes('aten::bmm')), 'the split ran')
      assert.ok(!offTraces.some((names) => names.includes('aten::bmm')), 'SEGTORCH_PPM_SPLIT=0 turns it off')
      const pooling = (names: string[]): boolean => names.includes('aten::adaptive_avg_pool2d')
      // Each model's first folded prediction finds its BatchNorm pairs by a forward with gradients (ATen's pooling there).
      assert.strictEqual(onTraces.filter(pooling).length, cases.length, 'ATen\'s pooling only where BatchNorms are paired')
      assert.strictEqual(offTraces.filter(pooling).length, offTraces.length, 'SEGTORCH_POOL_BINS=0: ATen\'s pooling everywhere')
      // (This process splits by the rule, the child wherever the shape fits.)
      for (const [k, options] of cases.entries()) assertKeptLogits(`${options.arch}/${options.backbone}`, k, on, off, parent, 'one pass + split')
    })
  }
})

// A padded transposed convolution (FCN-8s's upscore layers, kernel 4 stride 2 padding 1 and kernel 16 stride 8 padding 4;
// GCN's deconvolutions) runs as a convolution of its phases and a depth-to-space; in channels-last predictions the
// phases go straight into the cropped output (native/blocks/concat.h DepthToSpaceInto's crop), elsewhere through the
// whole depth-to-space and a crop view (NCHW: pixel_shuffle).
describe('padded transposed convolutions in channels-last predictions', () => {
  const cases: ModelOptions[] = [
    { arch: 'fcn', backbone: 'vgg16', numClasses: 3, variant: '8s' } as ModelOptions,
    { arch: 'gcn', backbone: 'resnet18', numClasses: 3 }
  ]
  for (const c of cases) {
    it(`${c.arch}/${c.backbone}: the cropped phases give the NCHW path's logits (fp32, 1e-5) at odd sizes`, async () => {
      const model = await createModel(c)
      try {
        await warmStatistics(model, 3, 64)
        // FCN's score layers start at zero (its logits too): two steps move them.
        for (let i = 0; i < 2; i++) {
          await model.trainStep(randomImages(2, 3, 64, 64, 6 + i), randomMasks(2, 64, 64, 3, 8 + i), { optimizer: { type: 'sgd', lr: 0.1, momentum: 0.9 } })
        }
        for (const [h, w] of [[64, 96], [77, 93]]) {
          const x = randomImages(1, 3, h, w, h + w)
          const o = { output: 'logits', precision: 'fp32', winograd: false, foldBatchNorm: false } as const
          const nchw = (await model.predict(x, { ...o, channelsLast: false })).dataSync()
          const cl = (await model.predict(x, { ...o, channelsLast: true })).dataSync()
          assert.ok(maxAbs(nchw) > 1e-3, `${h} x ${w}: logits ${maxAbs(nchw)}, not all zero`)
          const scale = Math.max(1, maxAbs(nchw))
          assert.ok(maxDiff(cl, nchw) / scale < 1e-5, `${h} x ${w}: ${maxDiff(cl, nchw)} (scale ${scale})`)
        }
      } finally {
        model.dispose()
      }
    })
  }
})

describe('DFN\'s composed convolutions (a 1x1 convolution and the one after it as one)', () => {
  const cases: ModelOptions[] = [{ arch: 'dfn', backbone: 'resnet18', numClasses: 3 }]
  const settings = KEPT_SETTINGS
  for (const size of [[96, 128], [77, 93]] as const) {
    it(`give the separate convolutions' logits (fp32 1e-5; bf16 as close to fp32), after a training step too: ${size[0]} x ${size[1]}`, async () => {
      const dir = tmpdir()
      for (const side of ['on', 'off']) fs.mkdirSync(path.join(dir, side))
      // The model keeps the composed kernels, then takes a training step.
      const parent = await savePredictionCases(dir, cases, 80, { prepare: predictThenStep(size), settings, size })
      const on = runPredictionCases(dir, cases.length, { SEGTORCH_PROFILE: path.join(dir, 'on', 'trace') }, settings).logits
      const off = runPredictionCases(dir, cases.length, { SEGTORCH_PROFILE: path.join(dir, 'off', 'trace'), SEGTORCH_COMPOSE: '0' }, settings).logits
      // The composed kernels are made by einsum (the refinement block's and the head's), in one child only.
      const einsums = (dirname: string): number => predictionTraces(path.join(dir, dirname)).flat().filter((n) => n === 'aten::einsum').length
      assert.ok(einsums('on') >= 2, `the composed convolutions ran (${einsums('on')} einsums)`)
      assert.strictEqual(einsums('off'), 0, 'SEGTORCH_COMPOSE=0 turns them off')
      assertKeptLogits('dfn/resnet18', 0, on, off, parent, 'composed')
    })
  }
})

// A prepacked 1x1 convolution's pixels given to oneDNN as several images of one row (Conv2dImpl::OneByOneSplit: the
// same products, which oneDNN ran up to 1.9x faster on an AMX CPU than as one image). Children predict the same saved
// ResNet-50 FCN (bottleneck blocks: 1x1 convolutions with and without the residual sum written in place) with the split
// wherever the shape allows (SEGTORCH_SPLIT_1X1=1) and without it, profiled with operator shapes on libtorch 2.x so
// that the test sees which path ran.
describe('1x1 convolutions as several images', () => {
  const cases: ModelOptions[] = [{ arch: 'fcn', backbone: 'resnet50', numClasses: 3 }]
  // bf16 folded twice more at the end: a shape's first prepacked call adds the residual out of place, later ones in place.
  const settings = [...KEPT_SETTINGS, KEPT_SETTINGS[2], KEPT_SETTINGS[2]]
  // Each prediction's prepacked convolutions (name, first input [N, C, H, W]) in one child's traces (Kineto's, with
  // input sizes; the traces with convolutions: one per prediction), in job order.
  type KinetoTrace = { traceEvents?: Array<{ name: string, args?: { 'Input Dims'?: number[][] } }> }
  const convCalls = (dir: string): Array<Array<{ name: string, dims: number[] }>> => (traceFiles(dir) as KinetoTrace[])
    .map((trace) => (trace.traceEvents ?? []).filter((e) => /convolution/.test(e.name)).map((e) => ({ name: e.name, dims: e.args?.['Input Dims']?.[0] ?? [] })))
    .filter((calls) => calls.length > 0).map((calls) => calls.filter((c) => /^mkldnn::_convolution_pointwise/.test(c.name)))
  const split = (dims: number[]): boolean => dims.length === 4 && dims[0] > 1 && dims[2] === 1
  // 96 x 128: 12 x 16 maps after the stem and layer2 (192 pixels: 2 images of 96); 77 x 93: 10 x 12 (120 pixels: 2 of 60).
  for (const size of [[96, 128], [77, 93]] as const) {
    it(`give the one image's logits (fp32 1e-5; bf16 as close to fp32), after a training step too, the in-place sums included: ${size[0]} x ${size[1]}`, async () => {
      const dir = tmpdir()
      for (const side of ['on', 'off']) fs.mkdirSync(path.join(dir, side))
      const parent = await savePredictionCases(dir, cases, 90, { prepare: predictThenStep(size), settings, size })
      const profile = (side: string): Record<string, string> => ({ SEGTORCH_PROFILE: path.join(dir, side, 'trace'), SEGTORCH_PROFILE_SHAPES: '1' })
      const on = runPredictionCases(dir, cases.length, { ...profile('on'), SEGTORCH_SPLIT_1X1: '1' }, settings)
      const off = runPredictionCases(dir, cases.length, { ...profile('off'), SEGTORCH_SPLIT_1X1: '0' }, settings).logits
      if (on.backend.prepack) {
        const [onCalls, offCalls] = [convCalls(path.join(dir, 'on')), convCalls(path.join(dir, 'off'))]
        assert.strictEqual(onCalls.length, settings.length, 'one trace per prediction')
        const pixels = Math.ceil(size[0] / 8) * Math.ceil(size[1] / 8)
        // OneByOneImages with SEGTORCH_SPLIT_1X1=1: images of the pixel count nearest 320 (up to 512) that divides them.
        const perImage = Array.from({ length: 321 }, (_, d) => [320 - d, 320 + d]).flat()
          .find((m) => m >= 1 && m <= 512 && pixels % m === 0 && pixels / m >= 2) as number
        const images = pixels / perImage
        for (const s of [2, 5]) {
          const calls = onCalls[s].filter((c) => split(c.dims))
          assert.ok(calls.some((c) => c.dims[0] === images && c.dims[3] === pixels / images && c.dims[1] === 2048),
            `a 2048-channel 1x1 convolution ran as ${images} images of ${pixels / images} pixels`)
          assert.ok(calls.length >= 16, `${calls.length} split calls: every bottleneck's 1x1 convolutions`)
        }
        const inPlace = (s: number): number => onCalls[s].filter((c) => c.name === 'mkldnn::_convolution_pointwise_' && split(c.dims)).length
        assert.strictEqual(inPlace(4), 0, 'a shape\'s first call adds out of place')
        assert.ok(inPlace(5) >= 16, `later calls add in place (${inPlace(5)} split calls)`)
        assert.strictEqual(offCalls.flat().filter((c) => split(c.dims)).length, 0, 'SEGTORCH_SPLIT_1X1=0 turns the split off')
      }
      assertKeptLogits('fcn/resnet50', 0, on.logits, off, parent, 'split')
      // The bf16 predictions again (the sums written in place from the second call) give the first ones' logits bit
      // for bit, on both sides.
      for (const s of [4, 5]) {
        assert.strictEqual(maxDiff(on.logits[s], on.logits[2]), 0, `split, prediction ${s + 1}`)
        assert.strictEqual(maxDiff(off[s], off[2]), 0, `one image, prediction ${s + 1}`)
      }
    })
  }
})

describe('kernel transforms kept between predictions', () => {
  it('are made again after a training step: the fp32 Winograd\'s predictions use the step\'s weights, folded or not', async () => {
    // The fp32 Winograd keeps each convolution's kernel transform between calls. A training step's one-pass optimizer
    // writes the weights in place without a version bump, and the inference copy's weights are written under
    // inference mode: a prediction after a step ran with the old transforms (2.6 % off the logits, an Intel CPU with
    // AMX, PyPI torch 2.15). Where the fp32 Winograd does not run, both sides below are the plain path.
    const model = await createModel({ arch: 'fcn', backbone: 'resnet18', numClasses: 3 })
    try {
      const x = randomImages(2, 3, 96, 96, 31)
      const y = randomMasks(2, 96, 96, 3, 32)
      const scale = (a: ArrayLike<number>): number => Math.max(1, maxAbs(a))
      for (const foldBatchNorm of [false, true]) {
        const o = { precision: 'fp32', output: 'logits', channelsLast: true, foldBatchNorm } as const
        const before = (await model.predict(x, { ...o, winograd: true })).dataSync()
        await model.trainStep(x, y, { precision: 'fp32', optimizer: { type: 'sgd', lr: 0.05, momentum: 0.9 } })
        const winograd = (await model.predict(x, { ...o, winograd: true })).dataSync()
        const plain = (await model.predict(x, { ...o, winograd: false })).dataSync()
        assert.ok(maxDiff(winograd, before) / scale(before) > 1e-3, `foldBatchNorm ${foldBatchNorm}: the step moved the logits`)
        assert.ok(maxDiff(winograd, plain) / scale(plain) < 1e-4, `foldBatchNorm ${foldBatchNorm}: Winograd ${maxDiff(winograd, plain)} from the plain path`)
      }
    } finally {
      model.dispose()
    }
  })
})

// The cache of large CPU blocks (native/base/alloc_budget.cc): freed blocks of 128 KiB or more are
// kept for reuse instead of being returned to glibc, which would page-fault them in again.
describe('CPU block cache', () => {
  const options: ModelOptions = { arch: 'fcn', backbone: 'resnet18', numClasses: 3 }

  it('repeated predictions reuse cached blocks and give the same outputs; emptyCpuCache() empties it', async () => {
    const model = await createModel(options)
    try {
      const x = randomImages(1, 3, 96, 80, 51)
      const limit = cpuMemoryStats().limitBytes
      assert.ok(limit > 0 && limit <= 2 ** 31, `default limit ${limit}`)
      const first = (await model.predict(x, FP32)).dataSync()
      await model.predict(x, FP32)
      const a = cpuMemoryStats()
      const again = (await model.predict(x, FP32)).dataSync()
      const b = cpuMemoryStats()
      assert.ok(b.hits > a.hits, 'the third prediction took blocks from the cache')
      assert.strictEqual(b.misses, a.misses, 'in the steady state every large block comes from the cache')
      assert.ok(b.cachedBytes <= b.limitBytes)
      assert.strictEqual(maxDiff(first, again), 0, 'recycled memory gives the same outputs')
      emptyCpuCache()
      assert.strictEqual(cpuMemoryStats().cachedBytes, 0)
      assert.strictEqual(maxDiff(first, (await model.predict(x, FP32)).dataSync()), 0)
    } finally {
      model.dispose()
    }
  })

  it('SEGTORCH_CPU_CACHE_MB sets the limit: 0 turns the cache off, 1 keeps at most 1 MiB; same outputs', async () => {
    const model = await createModel(options)
    const dir = tmpdir()
    try {
      const x = randomImages(1, 3, 96, 80, 52)
      const ours = (await model.predict(x, FP32)).dataSync()
      await model.save(path.join(dir, 'm.segtorch'))
      fs.writeFileSync(path.join(dir, 'x.json'), JSON.stringify({ data: Array.from(x.dataSync()), shape: x.shape }))
      const script = `
        const fs = require('fs')
        const { cpuMemoryStats, loadModel, tensor } = require(${JSON.stringify(path.join(ROOT, 'lib'))})
        ;(async () => {
          const dir = process.argv[1]
          const m = await loadModel(dir + '/m.segtorch')
          const x = JSON.parse(fs.readFileSync(dir + '/x.json', 'utf8'))
          let y
          for (let i = 0; i < 3; i++) y = await m.predict(tensor(Float32Array.from(x.data), x.shape), { precision: 'fp32', output: 'logits' })
          fs.writeFileSync(dir + '/out.json', JSON.stringify({ stats: cpuMemoryStats(), logits: Array.from(y.dataSync()) }))
        })().catch((e) => { console.error(e); process.exit(1) })`
      for (const mb of ['0', '1']) {
        const child = spawnSync(process.execPath, ['-r', CHILD_REGISTER, '-e', script, dir],
          { cwd: ROOT, encoding: 'utf8', env: { ...process.env, SEGTORCH_CPU_CACHE_MB: mb } })
        assert.strictEqual(child.status, 0, child.stderr)
        const out = JSON.parse(fs.readFileSync(path.join(dir, 'out.json'), 'utf8')) as { stats: CpuMemoryStats, logits: number[] }
        assert.strictEqual(out.stats.limitBytes, Number(mb) * 2 ** 20)
        assert.ok(out.stats.cachedBytes <= out.stats.limitBytes, `${mb} MiB: ${out.stats.cachedBytes} bytes cached`)
        if (mb === '0') assert.strictEqual(out.stats.hits + out.stats.misses, 0, 'no cache: nothing counted')
        assert.strictEqual(maxDiff(ours, out.logits), 0, `SEGTORCH_CPU_CACHE_MB=${mb}: same logits`)
      }
    } finally {
      model.dispose()
    }
  })
})
