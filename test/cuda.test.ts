/**
 * The CUDA path, on a machine with a GPU and a CUDA build of segtorch (scripts/check-cuda.sh builds
 * one against the torch of a Python and runs this file). Elsewhere every case is pending, with the
 * reason (no CUDA in this build, or no GPU visible): the CPU suite checks the same code paths on 'cpu'.
 *
 * Every architecture of the zoo, from the weights of a CPU model: CUDA's fp32 logits against the
 * CPU's at an odd size, CUDA's default precision ('auto' = fp16 autocast) against them by labels,
 * the compiled predict path against eager on CUDA, a fp32 training step's loss against the CPU's,
 * fp16 training steps with the loss scaler, and a save on CUDA loaded on the CPU. Then fit / evaluate,
 * tensors moved between devices, device errors, and NCCL (one rank) under distribute().
 *
 * Tolerances: cuDNN runs fp32 convolutions in TF32 by default, as PyTorch does
 * (torch.backends.cudnn.allow_tf32 = True): 10 mantissa bits, so fp32 logits are compared within 1e-2 of
 * their largest magnitude and by labels, not within the CPU suite's 1e-4.
 */
import * as assert from 'assert'
import * as path from 'path'
import { backend, Batch, createModel, distributed, loadModel, Model, ModelOptions } from '../lib'
import { labelAgreement, maxAbs, randomImages, randomMasks, rejects, relativeError, tmpdir } from './helpers'

/** The first configuration of each architecture's shared battery (test/models/). */
const CASES: ModelOptions[] = [
  { arch: 'fcn', backbone: 'resnet18', numClasses: 3, outputStride: 8 },
  { arch: 'segnet', backbone: 'vgg16_bn', numClasses: 2 },
  { arch: 'unet', numClasses: 2, inChannels: 1, baseChannels: 8 },
  { arch: 'dilated', numClasses: 2, fcChannels: 64 },
  { arch: 'deeplabv1', numClasses: 2, fcChannels: 64 },
  { arch: 'deeplabv2', backbone: 'resnet18', numClasses: 3, outputStride: 16 },
  { arch: 'deeplabv3', backbone: 'mobilenetv3_large', numClasses: 2, aux: true },
  { arch: 'deeplabv3plus', backbone: 'xception65', numClasses: 2 },
  { arch: 'lraspp', numClasses: 3, interChannels: 16 },
  { arch: 'refinenet', backbone: 'resnet18', numClasses: 3 },
  { arch: 'lwrefinenet', backbone: 'mobilenetv2', numClasses: 3 },
  { arch: 'mtrefinenet', backbone: 'mobilenetv2', numClasses: 3 },
  { arch: 'pspnet', backbone: 'resnet18', numClasses: 3, outputStride: 16, aux: true },
  { arch: 'icnet', backbone: 'resnet18', numClasses: 3 },
  { arch: 'gcn', backbone: 'resnet18', numClasses: 3 },
  { arch: 'dfn', backbone: 'resnet18', numClasses: 3 },
  { arch: 'upernet', backbone: 'resnet18', numClasses: 3, channels: 32 }
] as ModelOptions[]

/** The architectures whose training forward has dropout (random masks differ between devices). */
const DROPOUT = new Set(['deeplabv1', 'deeplabv3', 'deeplabv3plus', 'dilated', 'fcn', 'pspnet', 'refinenet', 'unet', 'upernet'])

function cudaWhy (): string | undefined {
  const b = backend()
  if (!b.cuda) return `this segtorch (libtorch ${b.libtorch}) has no CUDA or sees no GPU`
  return undefined
}

async function floats (t: { data: () => Promise<ArrayLike<number>> }): Promise<Float32Array> {
  return Float32Array.from(await t.data() as ArrayLike<number>)
}

describe('CUDA', function () {
  this.timeout(300000)
  before(function () {
    const why = cudaWhy()
    if (why !== undefined) {
      // Pending, not passed: nothing here ran.
      this.test!.parent!.pending = true
      this.skip()
    }
  })

  it('covers every architecture of the zoo', () => {
    assert.deepStrictEqual(CASES.map((c) => c.arch).sort(), [...backend().architectures].sort())
  })

  for (const options of CASES) {
    it(`${options.arch}: CUDA gives the CPU's logits, trains in fp32 and fp16, compiles, saves for the CPU`, async () => {
      const channels = options.inChannels ?? 3
      const k = options.numClasses
      const dir = tmpdir('segtorch-cuda-')
      const cpu = await createModel(options)
      let gpu: Model | undefined
      let back: Model | undefined
      try {
        await cpu.save(path.join(dir, 'cpu.segtorch'))
        gpu = await loadModel(path.join(dir, 'cpu.segtorch'), { device: 'cuda' })
        assert.strictEqual(gpu.device, 'cuda')

        // Eval logits at an odd size, fp32.
        const [h, w] = [67, 93]
        const x = randomImages(2, channels, h, w, 3)
        const fp32 = { output: 'logits' as const, precision: 'fp32' as const }
        const ref = await floats(await cpu.predict(x, fp32))
        const onGpu = await gpu.predict(x, fp32)
        assert.ok(onGpu.device.startsWith('cuda'), `predict's logits stay on the GPU (${onGpu.device})`)
        const got = await floats(onGpu)
        assert.ok(got.every(Number.isFinite), 'finite logits')
        const err = relativeError(got, ref)
        assert.ok(err <= 1e-2, `fp32 (TF32 convolutions): relative error ${err}`)
        const agree = labelAgreement(got, ref, [2, k, h, w], 0.05 * maxAbs(ref))
        assert.ok(agree >= 0.995, `fp32: ${agree} of the decisive labels agree`)

        // The default precision on CUDA ('auto' = fp16 autocast), by labels.
        const half = await floats(await gpu.predict(x, { output: 'logits' }))
        const agreeHalf = labelAgreement(half, ref, [2, k, h, w], 0.05 * maxAbs(ref))
        assert.ok(agreeHalf >= 0.99, `fp16: ${agreeHalf} of the decisive labels agree`)
        const labels = await gpu.predict(x)
        assert.deepStrictEqual(labels.shape, [2, h, w])

        // The compiled predict path on CUDA against eager, fp32.
        const before = await gpu.compiledStats()
        const eager = await floats(await gpu.predict(x, { ...fp32, channelsLast: false }))
        const compiled = await floats(await gpu.predict(x, { ...fp32, channelsLast: false, compile: true }))
        const after = await gpu.compiledStats()
        assert.strictEqual(after.fallbacks - before.fallbacks, 0, after.error)
        assert.strictEqual(after.compiled - before.compiled, 1, 'one graph')
        const errCompiled = relativeError(compiled, eager)
        assert.ok(errCompiled <= 1e-2, `compiled: relative error ${errCompiled}`)

        // One fp32 training step: the loss before the update is the CPU's.
        const xt = randomImages(2, channels, 64, 64, 8)
        const yt = randomMasks(2, 64, 64, k, 9)
        const step = { optimizer: { lr: 1e-3 }, precision: 'fp32' as const }
        const lossCpu = (await cpu.trainStep(xt, yt, step)).loss
        const lossGpu = (await gpu.trainStep(xt, yt, step)).loss
        // Networks with dropout draw different masks on the two devices: their losses agree less closely.
        const tol = DROPOUT.has(options.arch) ? 5e-2 : 1e-2
        assert.ok(Math.abs(lossGpu - lossCpu) <= tol * Math.max(1, lossCpu), `fp32 step: loss ${lossGpu} on CUDA, ${lossCpu} on the CPU`)
        assert.deepStrictEqual(await gpu.checkGradients(xt, yt), (await cpu.checkGradients(xt, yt)), 'the same parameters get gradients')

        // fp16 (the default on CUDA) with the dynamic loss scaler: finite losses, skipped steps reported.
        const losses: number[] = []
        let skipped = 0
        for (let i = 0; i < 6; i++) {
          const r = await gpu.trainStep(xt, yt, { optimizer: { lr: 1e-3 } })
          assert.ok(Number.isFinite(r.loss) && r.loss > 0, `fp16 step ${i}: loss ${r.loss}`)
          if (r.skipped === true) skipped++
          losses.push(r.loss)
        }
        assert.ok(skipped < 6, 'the loss scaler let some steps through')

        // Saved on CUDA, loaded on the CPU: the same fp32 predictions (within TF32).
        await gpu.eval()
        await gpu.save(path.join(dir, 'gpu.segtorch'))
        back = await loadModel(path.join(dir, 'gpu.segtorch'))
        assert.strictEqual(back.device, 'cpu')
        const a = await floats(await gpu.predict(x, fp32))
        const b = await floats(await back.predict(x, fp32))
        const errBack = relativeError(a, b)
        assert.ok(errBack <= 1e-2, `saved on CUDA, loaded on the CPU: relative error ${errBack}`)
      } finally {
        cpu.dispose()
        gpu?.dispose()
        back?.dispose()
      }
    })
  }

  it('fit and evaluate on CUDA (fp16 autocast with the loss scaler), tensors to and from the GPU', async () => {
    const model = await createModel({ arch: 'fcn', backbone: 'resnet18', numClasses: 3, outputStride: 8, device: 'cuda' })
    try {
      const x = randomImages(2, 3, 48, 48, 1)
      const onGpu = await x.to('cuda')
      assert.ok(onGpu.device.startsWith('cuda'), onGpu.device)
      assert.deepStrictEqual(await floats(onGpu), await floats(x))
      const back = await onGpu.to('cpu')
      assert.strictEqual(back.device, 'cpu')
      // An input already on the GPU and one on the CPU give the same labels.
      assert.deepStrictEqual(await (await model.predict(onGpu)).data(), await (await model.predict(x)).data())

      const batches: Batch[] = Array.from({ length: 4 }, (_, i) => ({ images: randomImages(2, 3, 48, 48, 10 + i), masks: randomMasks(2, 48, 48, 3, 20 + i) }))
      const history = await model.fit(batches, { epochs: 3, optimizer: { type: 'adamw', lr: 2e-3 }, validation: batches.slice(0, 2) })
      assert.strictEqual(history.steps, 12)
      const first = history.epochs[0].loss
      const last = history.epochs[2].loss
      assert.ok(Number.isFinite(first) && Number.isFinite(last) && last < first, `loss ${first} -> ${last}`)
      const e = await model.evaluate(batches.slice(0, 2))
      assert.strictEqual(e.images, 4)
      assert.ok(e.mIoU >= 0 && e.mIoU <= 1, `mIoU ${e.mIoU}`)
    } finally {
      model.dispose()
    }
  })

  it('refuses a CUDA device index that does not exist, with a RangeError', async () => {
    const n = backend().cudaDevices
    await rejects(createModel({ arch: 'fcn', backbone: 'resnet18', numClasses: 2, device: `cuda:${n}` as 'cuda' }), RangeError, new RegExp(`below ${n}`))
  })

  it('NCCL: distribute() on one rank trains as the undistributed model does', async function () {
    const a = distributed.available()
    if (!a.nccl) {
      // A CUDA build without nccl.h: say so rather than pass.
      this.skip()
    }
    const g = await distributed.init({ worldSize: 1, rank: 0, backend: 'nccl' })
    assert.strictEqual(g.backend, 'nccl')
    const dir = tmpdir('segtorch-cuda-')
    // LR-ASPP: no dropout, so the two models' steps are deterministic up to cuDNN's algorithms.
    const one = await createModel({ arch: 'lraspp', numClasses: 3, interChannels: 16, device: 'cuda' })
    let two: Model | undefined
    try {
      await one.save(path.join(dir, 'm.segtorch'))
      two = await loadModel(path.join(dir, 'm.segtorch'), { device: 'cuda' })
      await two.distribute()
      const x = randomImages(2, 3, 48, 48, 4)
      const y = randomMasks(2, 48, 48, 3, 5)
      const step = { optimizer: { lr: 1e-2 }, precision: 'fp32' as const }
      for (let i = 0; i < 3; i++) {
        const r1 = (await one.trainStep(x, y, step)).loss
        const r2 = (await two.trainStep(x, y, step)).loss
        assert.ok(Math.abs(r1 - r2) <= 1e-3 * Math.max(1, r1), `step ${i}: ${r1} alone, ${r2} distributed`)
      }
      // One rank trains without all-reduces (the data-parallel path skips them): NCCL itself, directly.
      const t = await randomImages(1, 3, 8, 8, 6).to('cuda')
      const sum = await distributed.allReduce(t)
      assert.ok(sum.device.startsWith('cuda'), sum.device)
      assert.deepStrictEqual(await floats(sum), await floats(t))
      const max = await distributed.allReduce(t, 'max')
      assert.deepStrictEqual(await floats(max), await floats(t))
      await distributed.barrier()
      const s = distributed.stats()
      assert.ok(s.reducedBytes >= 8 * 8 * 3 * 4, `NCCL reduced the tensor (${JSON.stringify(s)})`)
    } finally {
      one.dispose()
      two?.dispose()
      await distributed.destroy()
    }
  })
})
