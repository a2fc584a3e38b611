/**
 * The shared battery every architecture passes (like smp's BaseModelTester): output shape for odd
 * sizes, backward reaches every trainable parameter, train/eval outputs, save/load round trip,
 * bad options. An architecture's test file is a few lines: describeArchitecture({...}).
 */
import * as assert from 'assert'
import * as path from 'path'
import { backend, createModel, loadModel, Model, ModelOptions } from '../../lib'
import { maxAbs, randomImages, randomMasks, rejects, tmpdir } from '../helpers'
import { checkExports, labelAgreement, relativeError } from '../export-check'

export interface BatteryCase {
  /** Options of a tiny configuration (few channels, small backbone). */
  options: ModelOptions
  /** Names of outputs present in training mode besides `out` (e.g. ['aux']). */
  trainOutputs?: string[]
  /** Names of outputs present in eval mode besides `out` (e.g. ['depth'] for mtrefinenet). */
  evalOutputs?: string[]
  /** Input size for the shape test; defaults to an odd 67 x 93. */
  size?: [number, number]
  /**
   * Parameters allowed to get no gradient from the segmentation loss alone (e.g. a depth head
   * whose loss needs depth targets). Say why next to it.
   */
  noGradient?: RegExp
}

export interface Battery {
  arch: string
  cases: BatteryCase[]
  /** Options that must be refused, with the error type and message pattern. */
  badOptions?: Array<{ options: Record<string, unknown>, error: Function, pattern: RegExp }>
}

export function describeArchitecture (b: Battery): void {
  describe(`architecture ${b.arch}: shared battery`, () => {
    b.cases.forEach((c, index) => {
      const label = JSON.stringify({ ...c.options, arch: undefined, numClasses: undefined })
      describe(label, () => {
        let model: Model
        const channels = c.options.inChannels ?? 3
        const k = c.options.numClasses
        before(async () => { model = await createModel(c.options) })
        after(() => model?.dispose())

        it('gives logits [N, K, H, W] for odd input sizes', async () => {
          const [h, w] = c.size ?? [67, 93]
          const out = await model.forward(randomImages(2, channels, h, w))
          assert.deepStrictEqual(out.shape, [2, k, h, w])
          assert.ok(out.dataSync().every(Number.isFinite), 'finite logits')
          const labels = await model.predict(randomImages(1, channels, h + 2, w - 2))
          assert.deepStrictEqual(labels.shape, [1, h + 2, w - 2])
        })

        it('backward gives a gradient to every trainable parameter', async () => {
          const [h, w] = c.size ?? [64, 64]
          const missing = await model.checkGradients(randomImages(2, channels, h, w, 5), randomMasks(2, h, w, k, 6))
          const unexpected = missing.filter((name) => !(c.noGradient?.test(name) ?? false))
          assert.deepStrictEqual(unexpected, [], `parameters without gradient: ${unexpected.join(', ')}`)
        })

        it('returns extra outputs only in training mode', async () => {
          const x = randomImages(2, channels, 64, 64)
          const evalOut = await model.forward(x, { outputs: 'all' })
          assert.deepStrictEqual(Object.keys(evalOut).sort(), ['out', ...(c.evalOutputs ?? [])].sort())
          await model.train()
          try {
            const trainOut = await model.forward(x, { outputs: 'all' })
            assert.deepStrictEqual(Object.keys(trainOut).sort(), ['out', ...(c.evalOutputs ?? []), ...(c.trainOutputs ?? [])].sort())
            assert.deepStrictEqual(trainOut.out.shape, [2, k, 64, 64])
          } finally {
            await model.eval()
          }
        })

        it('takes a training step with a finite loss', async () => {
          const r = await model.trainStep(randomImages(2, channels, 64, 64, 8), randomMasks(2, 64, 64, k, 9), { optimizer: { lr: 1e-3 } })
          assert.ok(Number.isFinite(r.loss) && r.loss > 0, `loss ${r.loss}`)
          for (const name of c.trainOutputs ?? []) if (name !== 'depth') assert.ok(name in r.parts || Object.keys(r.parts).length > 1, `loss part for ${name}`)
        })

        it('exports to TorchScript and ONNX with the logits of forward() at two sizes and batch sizes', async function () {
          // bf16 runs through libtorch's fallback kernels on a CPU without native bf16, about 10x slower
          // (bench/README.md, An AVX2 CPU): the check exports bf16 at one size there, yet dilated's
          // VGG16 with its 4096-channel fc6 still takes 70 s of a quiet 2-core AVX2 CPU.
          if (!backend().bf16) this.timeout(600000)
          // Python's torch.jit.load on the addon's own libtorch version for the first configuration only.
          await checkExports(model, [[40, 56], c.size ?? [37, 53]], 21, index > 0)
        })

        it('predict with compile: true gives the eager outputs (fp32 within 1e-4, bf16 99.5 % of the decisive labels)', async () => {
          const x = randomImages(1, channels, 40, 56, 31)
          const k = model.config.numClasses
          const before = await model.compiledStats()
          for (const precision of ['fp32', 'bf16'] as const) {
            const o = { output: 'logits' as const, precision, foldBatchNorm: true, channelsLast: true }
            // The compiled graph never runs bf16 Winograd (test/infer.test.ts checks its accuracy):
            // the eager reference runs oneDNN's direct convolutions as the graph does.
            const eager = (await model.predict(x, { ...o, winograd: false })).dataSync() as Float32Array
            const compiled = (await model.predict(x, { ...o, compile: true })).dataSync() as Float32Array
            if (precision === 'fp32') {
              const err = relativeError(compiled, eager)
              assert.ok(err <= 1e-4, `fp32: relative error ${err}`)
            } else {
              // On libtorch 2.x eager bf16 predictions run prepacked oneDNN convolutions (ResNet blocks
              // with their BatchNorm, addition and ReLU as post-ops), the compiled graph does not: the two round
              // differently, and a random network's near-ties (classes within a few per cent) flip:
              // 98.4-100 % of all labels agree on an AVX512-BF16 CPU. So the 99.5 % is asked of the
              // labels eager decides by at least 5 % of its largest |logit| (100 % there), and 97 % of all.
              const decisive = labelAgreement(compiled, eager, [1, k, 40, 56], 0.05 * maxAbs(eager))
              const all = labelAgreement(compiled, eager, [1, k, 40, 56])
              assert.ok(decisive >= 0.995 && all >= 0.97, `bf16: ${decisive} of the decisive labels agree, ${all} of all`)
            }
          }
          const after = await model.compiledStats()
          assert.strictEqual(after.fallbacks - before.fallbacks, 0, after.error)
          assert.strictEqual(after.compiled - before.compiled, 2, 'one graph per precision')
          assert.strictEqual(after.runs - before.runs, 2)
        })

        it('round-trips through save / loadModel with identical predictions', async () => {
          const file = path.join(tmpdir(), 'model.segtorch')
          await model.save(file)
          const again = await loadModel(file)
          try {
            assert.deepStrictEqual(again.config, model.config)
            const x = randomImages(1, channels, 48, 40, 12)
            // predict: its layout and precision come from the options, while forward() runs in the layout
            // the last training step left (channels-last by default), which rounds differently.
            assert.deepStrictEqual((await again.predict(x, { output: 'logits' })).dataSync(), (await model.predict(x, { output: 'logits' })).dataSync())
          } finally {
            again.dispose()
          }
        })
      })
    })

    for (const bad of b.badOptions ?? []) {
      it(`refuses ${JSON.stringify(bad.options)} with a ${bad.error.name}`, async () => {
        await rejects(createModel({ arch: b.arch, numClasses: 3, ...bad.options } as ModelOptions), bad.error, bad.pattern)
      })
    }
  })
}
