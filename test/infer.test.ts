import * as assert from 'assert'
import * as fs from 'fs'
import * as path from 'path'
import { ARCHITECTURES, backend, createModel, loadModel, Model, ModelOptions, tensor, Tensor } from '../lib'
import { autoChannelsLast, autoPrecision, resolvePredictOptions } from '../lib/model'
import { resolveStepOptions } from '../lib/train'
import { labelCounts, relativeError } from './export-check'
import { maxAbs, randomImages, randomMasks, rejects, tmpdir } from './helpers'

/** Crops [1, C, H, W] float32 data to rows y0..y0+h, cols x0..x0+w. */
function crop (x: Tensor<'float32'>, y0: number, x0: number, h: number, w: number): Tensor<'float32'> {
  const [, c, H, W] = x.shape
  const src = x.dataSync()
  const out = new Float32Array(c * h * w)
  for (let k = 0; k < c; k++) for (let i = 0; i < h; i++) for (let j = 0; j < w; j++) out[(k * h + i) * w + j] = src[(k * H + y0 + i) * W + x0 + j]
  return tensor(out, [1, c, h, w])
}

function flipW (data: Float32Array, c: number, h: number, w: number): Float32Array {
  const out = new Float32Array(data.length)
  for (let k = 0; k < c; k++) for (let i = 0; i < h; i++) for (let j = 0; j < w; j++) out[(k * h + i) * w + j] = data[(k * h + i) * w + (w - 1 - j)]
  return out
}

function softmax (logits: Float32Array, k: number, hw: number): Float32Array {
  const out = new Float32Array(logits.length)
  for (let p = 0; p < hw; p++) {
    let m = -Infinity
    for (let c = 0; c < k; c++) m = Math.max(m, logits[c * hw + p])
    let s = 0
    for (let c = 0; c < k; c++) s += Math.exp(logits[c * hw + p] - m)
    for (let c = 0; c < k; c++) out[c * hw + p] = Math.exp(logits[c * hw + p] - m) / s
  }
  return out
}

function maxDiff (a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]))
  return d
}

describe('inference as the papers evaluate', () => {
  let model: Model
  const K = 3
  before(async () => { model = await createModel({ arch: 'fcn', backbone: 'resnet18', numClasses: K, outputStride: 32 }) })
  after(() => model.dispose())

  it('compile: one graph per input shape (slide windows share it), recompiled after the weights change; a failed compilation runs eagerly', async () => {
    const m = await createModel({ arch: 'fcn', backbone: 'resnet18', numClasses: K, outputStride: 32 })
    try {
      const x = randomImages(1, 3, 80, 96, 41)
      const o = { output: 'logits' as const, precision: 'fp32' as const, foldBatchNorm: true, channelsLast: true, mode: 'slide' as const, crop: 64, stride: 32 }
      const eager = (await m.predict(x, o)).dataSync() as Float32Array
      const compiled = (await m.predict(x, { ...o, compile: true })).dataSync() as Float32Array
      assert.ok(maxDiff(compiled, eager) < 1e-4)
      let st = await m.compiledStats()
      // 4 windows of 64 x 64 (80 = 64 + 16 -> 2 rows, 96 -> 2 columns): one shape, one graph.
      assert.deepStrictEqual([st.compiled, st.runs, st.fallbacks], [1, 4, 0])
      // Training changes the weights: the next compiled predict traces again, with the new weights.
      await m.trainStep(randomImages(2, 3, 128, 128, 1), randomMasks(2, 128, 128, K, 2), { optimizer: { type: 'sgd', lr: 0.01 }, precision: 'fp32' })
      const eager2 = (await m.predict(x, o)).dataSync() as Float32Array
      const compiled2 = (await m.predict(x, { ...o, compile: true })).dataSync() as Float32Array
      assert.ok(maxDiff(eager2, eager) > 1e-3, 'the step changed the outputs')
      assert.ok(maxDiff(compiled2, eager2) < 1e-4, 'compiled with the new weights')
      st = await m.compiledStats()
      assert.strictEqual(st.compiled, 2)
      // A compilation that fails: the eager network runs, the reason is kept.
      process.env.SEGTORCH_TEST_COMPILE_FAIL = '1'
      try {
        const y = (await m.predict(randomImages(1, 3, 48, 48, 3), { output: 'logits', precision: 'fp32', compile: true })).dataSync() as Float32Array
        const ref = (await m.predict(randomImages(1, 3, 48, 48, 3), { output: 'logits', precision: 'fp32' })).dataSync() as Float32Array
        assert.deepStrictEqual(y, ref)
      } finally {
        delete process.env.SEGTORCH_TEST_COMPILE_FAIL
      }
      st = await m.compiledStats()
      assert.strictEqual(st.fallbacks, 1)
      assert.match(st.error, /compiling for input \[1, 3, 48, 48\] failed: compilation refused/)
      await rejects(m.predict(x, { compile: 'yes' as unknown as boolean }), TypeError, /compile/)
    } finally {
      m.dispose()
    }
  })

  it('slide: overlapping windows average the logits of each window', async () => {
    const x = randomImages(1, 3, 64, 96, 3)
    const got = (await model.predict(x, { mode: 'slide', crop: [64, 64], stride: [64, 32], output: 'logits', precision: 'fp32' })).dataSync()
    // windows at x0 = 0 and 32: columns 32..63 are covered twice
    const a = (await model.forward(crop(x, 0, 0, 64, 64))).dataSync()
    const b = (await model.forward(crop(x, 0, 32, 64, 64))).dataSync()
    const expected = new Float32Array(K * 64 * 96)
    for (let k = 0; k < K; k++) {
      for (let i = 0; i < 64; i++) {
        for (let j = 0; j < 96; j++) {
          const inA = j < 64; const inB = j >= 32
          const sum = (inA ? a[(k * 64 + i) * 64 + j] : 0) + (inB ? b[(k * 64 + i) * 64 + j - 32] : 0)
          expected[(k * 64 + i) * 96 + j] = sum / ((inA ? 1 : 0) + (inB ? 1 : 0))
        }
      }
    }
    assert.ok(maxDiff(got, expected) < 1e-5, `max diff ${maxDiff(got, expected)}`)
  })

  it('slide: an image smaller than the window is padded and the padding is cropped away', async () => {
    const x = randomImages(2, 3, 40, 30, 4)
    const labels = await model.predict(x, { mode: 'slide', crop: 64 })
    assert.deepStrictEqual(labels.shape, [2, 40, 30])
    // the padding is zeros after normalisation: the same as padding the input by hand
    const probs = await model.predict(x, { mode: 'slide', crop: 64, output: 'probs' })
    assert.deepStrictEqual(probs.shape, [2, K, 40, 30])
  })

  it('flip: probabilities of the image and its mirror are averaged', async () => {
    const x = randomImages(1, 3, 32, 48, 5)
    const got = (await model.predict(x, { flip: true, output: 'probs', precision: 'fp32' })).dataSync()
    const hw = 32 * 48
    const p1 = softmax((await model.forward(x)).dataSync(), K, hw)
    const xf = tensor(flipW(x.dataSync(), 3, 32, 48), [1, 3, 32, 48])
    const p2 = flipW(softmax((await model.forward(xf)).dataSync(), K, hw), K, 32, 48)
    const expected = p1.map((v, i) => (v + p2[i]) / 2)
    assert.ok(maxDiff(got, expected) < 1e-5, `max diff ${maxDiff(got, expected)}`)
  })

  it('multi-scale: probabilities at input size that sum to 1; labels are their argmax', async () => {
    const x = randomImages(1, 3, 48, 40, 6)
    const probs = (await model.predict(x, { scales: [0.5, 1, 1.5], flip: true, output: 'probs' })).dataSync()
    const hw = 48 * 40
    for (let p = 0; p < hw; p += 97) assert.ok(Math.abs(probs[p] + probs[hw + p] + probs[2 * hw + p] - 1) < 1e-5)
    const labels = (await model.predict(x, { scales: [0.5, 1, 1.5], flip: true })).dataSync()
    for (let p = 0; p < hw; p += 53) {
      let best = 0
      for (let k = 1; k < K; k++) if (probs[k * hw + p] > probs[best * hw + p]) best = k
      assert.strictEqual(labels[p], best)
    }
  })

  it('bf16 precision agrees with fp32 on nearly every pixel', async () => {
    const x = randomImages(1, 3, 64, 64, 8)
    const a = (await model.predict(x, { precision: 'fp32' })).dataSync()
    const b = (await model.predict(x, { precision: 'bf16' })).dataSync()
    let same = 0
    for (let i = 0; i < a.length; i++) same += a[i] === b[i] ? 1 : 0
    assert.ok(same / a.length > 0.9, `agreement ${same / a.length}`)
  })

  it('takes images of different sizes as an array of single images', async () => {
    const out = await model.predict([randomImages(1, 3, 20, 30), randomImages(1, 3, 41, 17)])
    assert.deepStrictEqual(out.map((t) => t.shape), [[1, 20, 30], [1, 41, 17]])
  })

  it('evaluate takes the same options', async () => {
    const x = randomImages(2, 3, 48, 48, 9)
    const y = await model.predict(x, { mode: 'slide', crop: 32, stride: 16, flip: true })
    const e = await model.evaluate([{ images: x, masks: y as never }], { mode: 'slide', crop: 32, stride: 16, flip: true })
    assert.strictEqual(e.mIoU, 1)
    const plain = await model.evaluate([{ images: x, masks: randomMasks(2, 48, 48, K) }])
    assert.ok(plain.mIoU < 1)
  })

  it('rejects bad inference options', async () => {
    const x = randomImages(1, 3, 16, 16)
    await rejects(model.predict(x, { mode: 'tile' as never }), RangeError, /'whole', 'slide' for mode/)
    await rejects(model.predict(x, { mode: 'slide', crop: 32, stride: 48 }), RangeError, /stride <= crop/)
    await rejects(model.predict(x, { scales: [] }), TypeError, /non-empty array/)
    await rejects(model.predict(x, { scales: [0] }), RangeError, /scales\[0\]/)
    await rejects(model.predict(x, { output: 'mask' as never }), RangeError, /output/)
    await rejects(model.predict(x, { crops: 32 } as never), TypeError, /Unknown option 'crops'/)
  })
})

/** Per pixel of [N, K, H, W] logits: the first largest class and its margin over the runner-up. */
function argmaxWithMargin (logits: ArrayLike<number>, shape: readonly number[]): { labels: Int32Array, margins: Float32Array } {
  const [n, k, h, w] = shape
  const hw = h * w
  const labels = new Int32Array(n * hw)
  const margins = new Float32Array(n * hw)
  for (let b = 0; b < n; b++) {
    for (let p = 0; p < hw; p++) {
      let best = -Infinity; let second = -Infinity; let label = 0
      for (let c = 0; c < k; c++) {
        const v = logits[(b * k + c) * hw + p]
        if (v > best) { second = best; best = v; label = c } else if (v > second) second = v
      }
      labels[b * hw + p] = label
      margins[b * hw + p] = best - second
    }
  }
  return { labels, margins }
}

// predict's labels in one pass (native/infer/labels.h): the network's final bilinear resize and the
// argmax fused, never writing the logits at the image's size. The reference is the argmax of the
// logits predict returns (resized by ATen as before).
describe('labels in one pass: the argmax of the resized logits', () => {
  const cases: Array<{ options: ModelOptions, why: string }> = [
    { options: { arch: 'lraspp', numClasses: 5 }, why: 'align_corners false, stride 8' },
    { options: { arch: 'dfn', backbone: 'resnet18', numClasses: 4 }, why: 'align_corners true' },
    { options: { arch: 'icnet', backbone: 'resnet18', numClasses: 3 }, why: 'a cascade, logits at 1/4' },
    { options: { arch: 'unet', numClasses: 3, baseChannels: 4 }, why: 'no resize: padded to 16 and cropped' },
    { options: { arch: 'deeplabv3', backbone: 'resnet18', numClasses: 6, outputStride: 16 }, why: 'stride 16' }
  ]
  for (const { options, why } of cases) {
    it(`${options.arch} (${why}): fp32 labels equal the logits' argmax wherever no two classes are within 1e-5; bf16 keeps fp32's clear labels`, async function () {
      this.timeout(300000)
      const m = await createModel(options)
      try {
        for (const [n, h, w] of [[2, 97, 129], [1, 33, 47], [1, 64, 64]]) {
          const x = randomImages(n, 3, h, w, 70 + h)
          const logits = await m.predict(x, { precision: 'fp32', output: 'logits' })
          assert.deepStrictEqual(logits.shape, [n, options.numClasses, h, w])
          const ref = argmaxWithMargin(logits.dataSync(), logits.shape)
          const scale = Math.max(1, maxAbs(logits.dataSync()))
          const fp32 = await m.predict(x, { precision: 'fp32' })
          assert.deepStrictEqual(fp32.shape, [n, h, w])
          const a = fp32.dataSync()
          let compared = 0
          for (let i = 0; i < a.length; i++) {
            if (ref.margins[i] <= 1e-5 * scale) continue
            compared++
            if (a[i] !== ref.labels[i]) assert.fail(`${n}x${h}x${w} pixel ${i}: label ${a[i]}, argmax ${ref.labels[i]} (margin ${ref.margins[i]})`)
          }
          assert.ok(compared > 0.5 * a.length, `${options.arch}: compared ${compared} of ${a.length}`)
          // bf16 (rounded through the whole network) is held to fp32's labels where fp32 decides
          // them most clearly: the half of the pixels with the larger margins.
          const bf16 = (await m.predict(x, { precision: 'bf16' })).dataSync()
          const median = Float32Array.from(ref.margins).sort()[a.length >> 1]
          let clear = 0; let kept = 0
          for (let i = 0; i < a.length; i++) {
            if (ref.margins[i] <= median) continue
            clear++
            kept += bf16[i] === ref.labels[i] ? 1 : 0
          }
          assert.ok(clear > 0.3 * a.length && kept / clear >= 0.995, `${n}x${h}x${w} bf16: ${kept} of ${clear} clear fp32 labels kept`)
        }
      } finally {
        m.dispose()
      }
    })
  }
})

describe("winograd: segtorch's Winograd 3x3 convolutions (fp32 channels-last, bf16) and NNPACK's (fp32 NCHW) in predictions", () => {
  it('resolves: on by the measured rule, off with an explicit fp32, compile or another layout; clear errors for what cannot run', async () => {
    const b = backend()
    const avx512 = b.cpu.isa !== 'AVX2' && b.cpu.isa !== 'other'
    const unet = { arch: 'unet', backbone: 'none' }
    // 'auto' precision is bf16 where bf16 is measured faster: the bf16 Winograd, where libtorch prepacks (2.x);
    // fp32 elsewhere: with AVX-512 segtorch's F(4x4, 3x3) channels-last (where the network runs channels-last),
    // without it NNPACK's (NCHW) for the networks where it measured faster
    const bf16 = autoPrecision('cpu', 'predict', unet) === 'bf16'
    const libtorch2 = Number.parseInt(b.libtorch, 10) >= 2
    // (with AMX oneDNN's direct bf16 convolutions ran faster: no bf16 Winograd by default there)
    const bf16Winograd = b.prepack && b.cpu.isa !== 'AMX'
    const auto = bf16 ? bf16Winograd : avx512 ? libtorch2 && autoChannelsLast('cpu', 'predict', unet, 'fp32') : b.winograd && !b.bf16
    const r = (o: object, device = 'cpu', net: object | undefined = unet): { winograd: boolean, channelsLast: boolean } =>
      resolvePredictOptions(o, 'predict options', [], device, net)
    assert.strictEqual(r({}).winograd, auto)
    if (auto) assert.strictEqual(r({}).channelsLast, bf16 || avx512, bf16 || avx512 ? "segtorch's Winograd runs channels-last" : 'NNPACK runs NCHW')
    if (!bf16 && !avx512) {
      assert.strictEqual(r({}, 'cpu', { arch: 'deeplabv3', backbone: 'resnet101' }).winograd, false, 'NNPACK not measured faster there')
      assert.strictEqual(r({ channelsLast: true }).winograd, false, 'NNPACK runs NCHW')
    }
    if (!bf16 && avx512) {
      assert.strictEqual(r({ channelsLast: true }).winograd, libtorch2, 'segtorch\'s F(4x4, 3x3) with libtorch 2.x (MKL\'s batched products)')
      assert.strictEqual(r({ channelsLast: false }).winograd, false, "NNPACK's is not measured on AVX-512")
    }
    assert.strictEqual(r({ precision: 'bf16' }, 'cpu', { arch: 'deeplabv3', backbone: 'resnet101' }).winograd, bf16Winograd, 'the bf16 Winograd: every network')
    assert.strictEqual(resolvePredictOptions({ precision: 'fp32' }, 'predict options', [], 'cpu', undefined).winograd, false, 'a TorchScript model')
    assert.strictEqual(r({ precision: 'fp32' }).winograd, false, "an explicit fp32 asks for the reference's arithmetic")
    assert.strictEqual(r({ compile: true }).winograd, false)
    assert.strictEqual(r({ compile: true, precision: 'bf16' }).winograd, false)
    assert.strictEqual(r({ channelsLast: true, precision: 'fp32' }).winograd, false)
    assert.strictEqual(r({ channelsLast: true }).channelsLast, true)
    assert.strictEqual(r({ winograd: false }).winograd, false)
    assert.strictEqual(r({ winograd: false, precision: 'bf16' }).winograd, false)
    assert.strictEqual(r({}, 'cuda:0').winograd, false)
    assert.throws(() => r({ winograd: 'yes' }), (e: Error) => e instanceof TypeError && /winograd/.test(e.message))
    assert.throws(() => r({ winograd: true }, 'cuda:0'), (e: Error) => e instanceof RangeError && /CPU paths/.test(e.message))
    assert.throws(() => r({ winograd: true, precision: 'fp16' }), (e: Error) => e instanceof RangeError && /fp16/.test(e.message))
    // fp32: segtorch's F(4x4, 3x3) channels-last on any libtorch; NCHW needs NNPACK
    assert.deepStrictEqual([r({ winograd: true, precision: 'fp32', channelsLast: true }).winograd, r({ winograd: true, precision: 'fp32', channelsLast: true }).channelsLast], [true, true])
    assert.throws(() => r({ winograd: true, precision: 'fp32', compile: true }), (e: Error) => e instanceof RangeError && /compile false/.test(e.message))
    if (!b.winograd) {
      assert.throws(() => r({ winograd: true, precision: 'fp32', channelsLast: false }), (e: Error) => e instanceof RangeError && /libtorch with NNPACK/.test(e.message))
      if (!avx512) assert.throws(() => r({ winograd: true, precision: 'fp32' }), (e: Error) => e instanceof RangeError && /libtorch with NNPACK/.test(e.message) && /channelsLast: true/.test(e.message))
    } else {
      assert.deepStrictEqual([r({ winograd: true, precision: 'fp32', channelsLast: false }).winograd, r({ winograd: true, precision: 'fp32', channelsLast: false }).channelsLast], [true, false])
    }
    if (b.winograd || avx512) {
      // the layout the CPU's fp32 Winograd runs in
      assert.deepStrictEqual([r({ winograd: true, precision: 'fp32' }).winograd, r({ winograd: true, precision: 'fp32' }).channelsLast], [true, avx512])
    }
    if (!b.prepack) {
      assert.throws(() => r({ winograd: true, precision: 'bf16' }), (e: Error) => e instanceof RangeError && /prepacked convolution/.test(e.message))
    } else {
      assert.deepStrictEqual([r({ winograd: true, precision: 'bf16' }).winograd, r({ winograd: true, precision: 'bf16' }).channelsLast], [true, true])
      assert.throws(() => r({ winograd: true, precision: 'bf16', channelsLast: false }), (e: Error) => e instanceof RangeError && /its convolutions run channels-last/.test(e.message))
      assert.throws(() => r({ winograd: true, precision: 'bf16', compile: true }), (e: Error) => e instanceof RangeError && /compile false/.test(e.message))
    }
    const m = await createModel({ arch: 'unet', numClasses: 2, baseChannels: 4 })
    try {
      await rejects(m.predict(randomImages(1, 3, 16, 16), { winograd: 1 as never }), TypeError, /winograd/)
    } finally {
      m.dispose()
    }
  })

  it('bf16 Winograd F(2x2, 3x3): the labels of fp32 where bf16 decides them, about the direct bf16 error (dilated ResNet-18, odd sizes, a batch, residual additions)', async function () {
    // Runs where libtorch prepacks convolutions (the libtorch 2.x build: scripts/check-libtorch2.sh).
    if (!backend().prepack) this.skip()
    const o = { output: 'logits' as const, precision: 'bf16' as const }
    // Output stride 8: layer3's 256-channel and layer4's 512-channel 3x3 convolutions dilated 2 and 4
    // (Winograd takes maps at least 8 dilations high and wide: 263 x 265 gives layer4 33 x 34);
    // 16: layer3's plain (dilation 1), layer4's dilated 2. Each basic block's second convolution adds the shortcut.
    for (const outputStride of [8, 16]) {
      const m = await createModel({ arch: 'fcn', backbone: 'resnet18', numClasses: 5, outputStride })
      try {
        for (const [n, h, w] of outputStride === 8 ? [[1, 263, 265], [2, 136, 144]] : [[1, 161, 193], [2, 136, 144]]) {
          const x = randomImages(n, 3, h, w, 31 + h)
          const exact = (await m.predict(x, { output: 'logits', precision: 'fp32' })).dataSync() as Float32Array
          const direct = (await m.predict(x, { ...o, winograd: false })).dataSync() as Float32Array
          const fast = (await m.predict(x, { ...o, winograd: true })).dataSync() as Float32Array
          const eDirect = relativeError(direct, exact)
          const eFast = relativeError(fast, exact)
          const what = `OS ${outputStride}, ${n}x${h}x${w}: relative error against fp32 ${eFast.toExponential(2)} (direct bf16 ${eDirect.toExponential(2)})`
          assert.ok(relativeError(fast, direct) > 0, `${what}: Winograd did not run`)
          // F(2x2, 3x3) rounds the transformed tiles to bf16: measured 1.4-2x the direct error (FCN-ResNet50 at 512 x 512).
          assert.ok(eFast <= Math.max(4 * eDirect, 1e-2), what)
          // Labels: every pixel whose fp32 top-2 margin is at least 5 % of its largest |logit| keeps its class.
          const pixels = n * h * w
          const { same: kept, counted: decided } = labelCounts(fast, exact, [n, 5, h, w], 0.05 * maxAbs(exact))
          assert.ok(decided > 0.5 * pixels && kept === decided, `${what}: ${kept} of ${decided} decided labels kept`)
        }
      } finally {
        m.dispose()
      }
    }
  })

  it('NNPACK (NCHW) gives the direct convolution\'s logits within 1e-4 (U-Net, 64 channels, 67 x 93 and 128 x 128, a batch of 3)', async function () {
    // Runs where libtorch has NNPACK (the libtorch 2.x build: scripts/check-libtorch2.sh); Debian's 1.13 has none.
    if (!backend().winograd) this.skip()
    const m = await createModel({ arch: 'unet', numClasses: 3, baseChannels: 64 })
    const o = { output: 'logits' as const, precision: 'fp32' as const, foldBatchNorm: true, channelsLast: false }
    try {
      for (const [h, w] of [[67, 93], [128, 128]]) {
        const x = randomImages(1, 3, h, w, 4)
        const direct = (await m.predict(x, { ...o, winograd: false })).dataSync() as Float32Array
        const fast = (await m.predict(x, { ...o, winograd: true })).dataSync() as Float32Array
        const err = relativeError(fast, direct)
        // Not bit-identical: NNPACK's transforms round differently from oneDNN's direct sums (proof that it ran).
        assert.ok(err <= 1e-4 && err > 0, `${h}x${w}: relative error ${err}`)
      }
      // A batch runs NNPACK one image at a time (its batch algorithm is slower than oneDNN): the same
      // logits as the direct convolution, and as each image predicted alone (within 1e-4).
      const x = randomImages(3, 3, 72, 80, 5)
      const direct = (await m.predict(x, { ...o, winograd: false })).dataSync() as Float32Array
      const fast = (await m.predict(x, { ...o, winograd: true })).dataSync() as Float32Array
      const err = relativeError(fast, direct)
      assert.ok(err <= 1e-4 && err > 0, `batch of 3: relative error ${err}`)
      const pixels = 72 * 80
      const xs = x.dataSync() as Float32Array
      for (let k = 0; k < 3; k++) {
        // 3 input channels per image in, 3 classes per image out
        const one = tensor(xs.slice(k * 3 * pixels, (k + 1) * 3 * pixels), [1, 3, 72, 80])
        const alone = (await m.predict(one, { ...o, winograd: true })).dataSync() as Float32Array
        const e = relativeError(fast.subarray(k * 3 * pixels, (k + 1) * 3 * pixels), alone)
        // 1e-4 as above: the batch's oneDNN layers (the 3-channel input, maps below 64 x 64) may take other
        // kernels than a single image's, which moved this by 1.0-1.7e-5 between runs; a wrong image order
        // or a mixed-up slice would differ by far more.
        assert.ok(e <= 1e-4, `image ${k} of the batch against alone: relative error ${e}`)
      }
    } finally {
      m.dispose()
    }
  })

  it("segtorch's fp32 Winograd F(4x4, 3x3) gives the direct convolution's logits within 1e-4 (dilated ResNet-18, odd sizes, a batch, residual additions)", async () => {
    // Any libtorch: the transforms are segtorch's, the products one batched matrix product.
    const o = { output: 'logits' as const, precision: 'fp32' as const, foldBatchNorm: true, channelsLast: true }
    // Output stride 8: layer3's 256-channel and layer4's 512-channel 3x3 convolutions dilated 2 and 4 (Winograd
    // takes maps at least 8 dilations high and wide: 263 x 265 gives layer4 33 x 34); 16: layer3 plain,
    // layer4 dilated 2. layer1 / layer2 (64 / 128 channels) run it too; each basic block's second
    // convolution adds the shortcut and applies the ReLU in the output transform.
    for (const outputStride of [8, 16]) {
      const m = await createModel({ arch: 'fcn', backbone: 'resnet18', numClasses: 5, outputStride })
      try {
        for (const [n, h, w] of outputStride === 8 ? [[1, 263, 265], [2, 136, 144]] : [[1, 161, 193], [2, 136, 144]]) {
          const x = randomImages(n, 3, h, w, 41 + h)
          const direct = (await m.predict(x, { ...o, winograd: false })).dataSync() as Float32Array
          const fast = (await m.predict(x, { ...o, winograd: true })).dataSync() as Float32Array
          const err = relativeError(fast, direct)
          // Not bit-identical (proof that it ran): measured 2-8e-6 per layer against float64, as oneDNN's direct 1-3e-6.
          assert.ok(err <= 1e-4 && err > 0, `OS ${outputStride}, ${n}x${h}x${w}: relative error ${err}`)
          const alone = (await m.predict(x, { ...o, winograd: true })).dataSync() as Float32Array
          assert.deepStrictEqual(alone, fast, 'the same input twice: the same logits (the kernel transform kept)')
        }
      } finally {
        m.dispose()
      }
    }
  })

  it("training: trainStep's winograd resolves by the rule (fp32 'auto', channels-last, AVX-512, libtorch 2.x) with clear errors", () => {
    const b = backend()
    const avx512 = b.cpu.isa !== 'AVX2' && b.cpu.isa !== 'other'
    const libtorch2 = Number.parseInt(b.libtorch, 10) >= 2
    const net = { arch: 'fcn', backbone: 'resnet50' }
    const r = (o: object, device = 'cpu'): { winograd: boolean, precision: string, channelsLast: boolean } => resolveStepOptions(o, 21, 'trainStep options', [], device, net)
    const auto = r({})
    assert.strictEqual(auto.winograd, auto.precision === 'fp32' && auto.channelsLast && avx512 && libtorch2)
    assert.strictEqual(r({ precision: 'fp32' }).winograd, false, 'an explicit fp32: the reference arithmetic')
    assert.strictEqual(r({ precision: 'fp32', channelsLast: true, winograd: true }).winograd, true)
    assert.strictEqual(r({ winograd: false }).winograd, false)
    assert.strictEqual(r({}, 'cuda:0').winograd, false)
    assert.throws(() => r({ winograd: 'on' }), (e: Error) => e instanceof TypeError && /winograd/.test(e.message))
    assert.throws(() => r({ winograd: true, precision: 'bf16' }), (e: Error) => e instanceof RangeError && /precision 'fp32'/.test(e.message))
    assert.throws(() => r({ winograd: true, precision: 'fp32', channelsLast: false }), (e: Error) => e instanceof RangeError && /channelsLast true/.test(e.message))
    assert.throws(() => r({ winograd: true, precision: 'fp32' }, 'cuda:0'), (e: Error) => e instanceof RangeError && /CPU paths/.test(e.message))
  })

  it("training: a step with segtorch's fp32 Winograd (forward and input gradient) gives the direct one's losses within 1e-4 and its logits after two updates within 5e-3", async () => {
    // FCN-ResNet18 at output stride 8 on 2 x 136 x 136: layer1 (64 channels, 34 x 34), layer2 (128, 17 x 17) and
    // layer3 (256, dilation 2, 17 x 17) take it, with BatchNorm in training mode after each convolution.
    const dir = tmpdir()
    const init = path.join(dir, 'init.segtorch')
    const base = await createModel({ arch: 'fcn', backbone: 'resnet18', numClasses: 4, outputStride: 8 })
    await base.save(init)
    base.dispose()
    const x = randomImages(2, 3, 136, 136, 12)
    const y = randomMasks(2, 136, 136, 4, 13)
    const probe = randomImages(1, 3, 96, 96, 14)
    const o = { optimizer: { type: 'sgd' as const, lr: 0.05, momentum: 0.9 }, precision: 'fp32' as const, channelsLast: true }
    const run = async (winograd: boolean): Promise<{ losses: number[], logits: Float32Array }> => {
      const m = await loadModel(init)
      try {
        const losses: number[] = []
        // fit's seed: the head's dropout draws the same masks in both runs
        await m.fit([{ images: x, masks: y }], { ...o, winograd, epochs: 2, seed: 3, onStep: (s) => { losses.push(s.loss) } })
        const logits = (await m.predict(probe, { output: 'logits', precision: 'fp32' })).dataSync() as Float32Array
        return { losses, logits }
      } finally {
        m.dispose()
      }
    }
    const direct = await run(false)
    const fast = await run(true)
    for (let i = 0; i < 2; i++) {
      const e = Math.abs(fast.losses[i] - direct.losses[i]) / Math.abs(direct.losses[i])
      assert.ok(e <= 1e-4, `step ${i + 1}: loss ${fast.losses[i]} against ${direct.losses[i]}`)
    }
    const err = relativeError(fast.logits, direct.logits)
    // Not identical (proof that it ran), and close: two SGD updates (lr 0.05, momentum) from gradients about
    // 1e-5 apart, through training-mode BatchNorm on 2 images, moved the logits by 6e-4 of their scale.
    assert.ok(err > 0 && err <= 5e-3, `logits after two steps: relative error ${err}`)
    fs.rmSync(dir, { recursive: true, force: true })
  })

  it("segtorch's fp32 Winograd on every architecture: the direct convolution's logits within 1e-4, and new weights seen", async function () {
    this.timeout(600000)
    const o = { output: 'logits' as const, precision: 'fp32' as const, foldBatchNorm: true, channelsLast: true }
    let ran = 0
    for (const arch of Object.keys(ARCHITECTURES)) {
      const m = await createModel({ arch, numClasses: 3 })
      try {
        const x = randomImages(1, 3, 136, 168, 7)
        const direct = (await m.predict(x, { ...o, winograd: false })).dataSync() as Float32Array
        const fast = (await m.predict(x, { ...o, winograd: true })).dataSync() as Float32Array
        const err = relativeError(fast, direct)
        if (arch === 'segnet') {
          // Max unpooling puts each value where its pooling's argmax was: a last-bit difference between two
          // near-equal maxima (random weights: ReLU's zeros against last-bit positives) moves a value to the
          // neighbouring pixel (so does folding BatchNorm). Measured 2.9 % of the logits off by more than 1e-4
          // of the scale with libtorch 1.13, under 1 % with 2.15: at most 5 %.
          const scale = Math.max(1, maxAbs(direct))
          const off = fast.filter((f, i) => Math.abs(f - direct[i]) > 1e-4 * scale).length
          assert.ok(off <= 0.05 * fast.length, `${arch}: ${off} of ${fast.length} logits off by more than 1e-4 (largest ${err})`)
        } else {
          assert.ok(err <= 1e-4, `${arch}: relative error ${err}`)
        }
        if (err > 0) ran++
      } finally {
        m.dispose()
      }
    }
    // The MobileNet networks have no 3x3 convolution of 64 channels and more outside depthwise ones.
    assert.ok(ran >= Object.keys(ARCHITECTURES).length - 3, `Winograd changed the logits of ${ran} architectures`)
    // Weights changed after a prediction: the kernel transform follows them.
    const m = await createModel({ arch: 'fcn', backbone: 'resnet18', numClasses: 3 })
    try {
      const x = randomImages(1, 3, 96, 96, 9)
      await m.predict(x, { ...o, winograd: true })
      const before = (await m.predict(x, { ...o, winograd: true })).dataSync() as Float32Array
      await m.trainStep(randomImages(2, 3, 64, 64, 10), randomMasks(2, 64, 64, 3, 11), { optimizer: { type: 'sgd', lr: 0.1 }, precision: 'fp32' })
      const direct = (await m.predict(x, { ...o, winograd: false })).dataSync() as Float32Array
      const fast = (await m.predict(x, { ...o, winograd: true })).dataSync() as Float32Array
      assert.ok(relativeError(fast, direct) <= 1e-4, `after training: relative error ${relativeError(fast, direct)}`)
      assert.ok(relativeError(fast, before) > 1e-3, 'the step changed the logits')
    } finally {
      m.dispose()
    }
  })
})
