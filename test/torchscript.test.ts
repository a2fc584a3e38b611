import * as assert from 'assert'
import { spawnSync } from 'child_process'
import * as fs from 'fs'
import * as path from 'path'
import { backend, crf, loadTorchScript, ScriptModel, SegtorchError, tensor, Tensor } from '../lib'
import { ROOT, rejects, tmpdir } from './helpers'
import { maxAbsDiff, PYTHON } from './twin'


function torchMissing (): string {
  const r = spawnSync(PYTHON, ['-c', 'import torch'], { encoding: 'utf8' })
  return r.status === 0 ? '' : `${PYTHON} cannot import torch (${(r.stderr || r.error?.message || '').trim().split('\n').pop()}); install python3-torch`
}

function readF32 (file: string): Float32Array {
  const b = fs.readFileSync(file)
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length))
}

describe('TorchScript models (loadTorchScript)', function () {
  let dir = ''
  let x: Tensor<'float32'>
  const f = (name: string): string => path.join(dir, name)

  before(function () {
    const missing = torchMissing()
    if (missing !== '') {
      console.log(`      skipped: ${missing}`)
      this.skip()
    }
    dir = tmpdir('segtorch-torchscript-')
    const r = spawnSync(PYTHON, [path.join(ROOT, 'test', 'python', 'torchscript.py'), dir],
      { encoding: 'utf8', env: { ...process.env, TS_THREADS: String(backend().threads) } })
    if (r.status !== 0) throw new Error(`torchscript.py failed: ${r.stderr}`)
    x = tensor(readF32(f('x.bin')), [2, 3, 32, 48])
  })

  describe('a scripted model returning a dict with out (torchvision style)', () => {
    let model: ScriptModel
    before(async () => { model = await loadTorchScript(f('dict.pt')) })
    after(() => model?.dispose())

    it('learns numClasses and inChannels from the probe and reports them in info()', () => {
      const info = model.info()
      assert.strictEqual(info.type, 'torchscript')
      assert.strictEqual(info.numClasses, 3)
      assert.strictEqual(info.inChannels, 3)
      assert.strictEqual(info.device, 'cpu')
      assert.strictEqual(info.parameters, 3 * 8 * 9 + 8 * 2 + 8 * 8 * 9 + 8 + 8 * 3 + 3)
    })

    it("predict output 'logits' equals PyTorch's output['out'] within 1e-4", async () => {
      const y = await model.predict(x, { output: 'logits' })
      assert.deepStrictEqual([...y.shape], [2, 3, 32, 48])
      const d = maxAbsDiff(y.dataSync(), readF32(f('dict_logits.bin')))
      assert.ok(d <= 1e-4, `max abs diff ${d}`)
    })

    it('normalises uint8 images with the ImageNet mean/std as our models do', async () => {
      const u8 = tensor(new Uint8Array(fs.readFileSync(f('u8.bin'))), [1, 3, 32, 48])
      const y = await model.predict(u8, { output: 'logits' })
      const d = maxAbsDiff(y.dataSync(), readF32(f('dict_u8_logits.bin')))
      assert.ok(d <= 1e-4, `max abs diff ${d}`)
    })

    it('labels are the argmax of the logits and probs sum to 1', async () => {
      const ref = readF32(f('dict_logits.bin'))
      const labels = (await model.predict(x)).dataSync()
      const hw = 32 * 48
      let wrong = 0
      for (let n = 0; n < 2; n++) {
        for (let p = 0; p < hw; p++) {
          let best = 0
          for (let k = 1; k < 3; k++) if (ref[(n * 3 + k) * hw + p] > ref[(n * 3 + best) * hw + p]) best = k
          if (labels[n * hw + p] !== best) wrong++
        }
      }
      assert.strictEqual(wrong, 0)
      const probs = (await model.predict(x, { output: 'probs' })).dataSync()
      for (let p = 0; p < hw; p += 97) assert.ok(Math.abs(probs[p] + probs[hw + p] + probs[2 * hw + p] - 1) < 1e-5)
    })

    it('flip averages the logits of the mirrored image (as PyTorch computes it)', async () => {
      const y = await model.predict(x, { output: 'logits', flip: true })
      const d = maxAbsDiff(y.dataSync(), readF32(f('dict_flip_logits.bin')))
      assert.ok(d <= 1e-4, `max abs diff ${d}`)
    })

    it('slide averages overlapping windows (as PyTorch computes it)', async () => {
      const y = await model.predict(x, { output: 'logits', mode: 'slide', crop: 32, stride: [32, 16] })
      const d = maxAbsDiff(y.dataSync(), readF32(f('dict_slide_logits.bin')))
      assert.ok(d <= 1e-4, `max abs diff ${d}`)
    })

    it('crf: the same refinement as crf() on its probabilities, with the uint8 image as colours', async () => {
      const u8 = tensor(new Uint8Array(fs.readFileSync(f('u8.bin'))), [1, 3, 32, 48])
      const options = { bilateral: { sxy: 10, srgb: 20, compat: 10 }, iterations: 3 }
      const probs = await model.predict(u8, { output: 'probs' })
      const want = await crf(u8, probs, options)
      const got = await model.predict(u8, { output: 'probs', crf: options })
      assert.deepStrictEqual([...got.shape], [1, 3, 32, 48])
      assert.ok(maxAbsDiff(got.dataSync(), want.dataSync()) <= 1e-5)
      assert.ok(maxAbsDiff(got.dataSync(), probs.dataSync()) > 1e-3, 'the CRF changed nothing')
      const labels = (await model.predict(u8, { crf: options })).dataSync()
      const p = want.dataSync(); const hw = 32 * 48
      for (let i = 0; i < hw; i += 37) {
        let best = 0
        for (let k = 1; k < 3; k++) if (p[k * hw + i] > p[best * hw + i]) best = k
        assert.strictEqual(labels[i], best)
      }
    })

    it('multi-scale labels have the input size', async () => {
      const y = await model.predict(x, { scales: [0.5, 1, 1.5], flip: true })
      assert.deepStrictEqual([...y.shape], [2, 32, 48])
    })

    it('evaluate gives the confusion matrix of its own predictions (mIoU 1)', async () => {
      const labels = await model.predict(x)
      const masks = tensor(Uint8Array.from(labels.dataSync()), [2, 32, 48])
      const e = await model.evaluate([{ images: x, masks }])
      assert.strictEqual(e.images, 2)
      assert.strictEqual(e.pixelAccuracy, 1)
      const c = e.confusion.dataSync()
      let total = 0n
      for (const v of c) total += BigInt(v)
      assert.strictEqual(total, BigInt(2 * 32 * 48))
    })

    it('rejects images with the wrong channel count with a RangeError before the native call', async () => {
      const grey = tensor(new Float32Array(32 * 32), [1, 1, 32, 32])
      await rejects(model.predict(grey), RangeError, /3 channel\(s\).*\[1, 1, 32, 32\]/)
    })

    it('runs on its own executor thread: the event loop keeps turning during predict', async () => {
      let ticks = 0
      const timer = setInterval(() => { ticks++ }, 0)
      const big = tensor(new Float32Array(4 * 3 * 128 * 128).fill(0.5), [4, 3, 128, 128])
      await model.predict(big, { scales: [1, 1.5, 2], flip: true })
      clearInterval(timer)
      assert.ok(ticks > 0, 'the timer never ran during predict')
    })
  })

  it("torchvision's lraspp_mobilenet_v3_large, scripted: logits equal PyTorch's within 1e-4", async () => {
    const model = await loadTorchScript(f('lraspp.pt'))
    try {
      assert.strictEqual(model.info().numClasses, 3)
      const d = maxAbsDiff((await model.predict(x, { output: 'logits' })).dataSync(), readF32(f('lraspp_logits.bin')))
      assert.ok(d <= 1e-4, `max abs diff ${d}`)
    } finally {
      model.dispose()
    }
  })

  it('takes the first element of a tuple output', async () => {
    const model = await loadTorchScript(f('tuple.pt'))
    try {
      const d = maxAbsDiff((await model.predict(x, { output: 'logits' })).dataSync(), readF32(f('tuple_logits.bin')))
      assert.ok(d <= 1e-4, `max abs diff ${d}`)
    } finally {
      model.dispose()
    }
  })

  it('a traced model returning a tensor at half resolution: logits resized bilinearly to the input', async () => {
    const model = await loadTorchScript(f('tensor.pt'), { numClasses: 3 })
    try {
      const y = await model.predict(x, { output: 'logits' })
      assert.deepStrictEqual([...y.shape], [2, 3, 32, 48])
      const d = maxAbsDiff(y.dataSync(), readF32(f('tensor_logits.bin')))
      assert.ok(d <= 1e-4, `max abs diff ${d}`)
    } finally {
      model.dispose()
    }
  })

  it('batching works with TorchScript models too', async () => {
    const model = await loadTorchScript(f('dict.pt'), { batching: { maxBatch: 4, maxDelayMs: 20 } })
    try {
      const singles = [0, 1].map((i) => tensor(x.dataSync().slice(i * 3 * 32 * 48, (i + 1) * 3 * 32 * 48), [1, 3, 32, 48]))
      const out = await Promise.all([0, 1, 0, 1].map((i) => model.predict(singles[i], { output: 'logits' })))
      const ref = readF32(f('dict_logits.bin'))
      for (let j = 0; j < 4; j++) {
        const i = j % 2
        const d = maxAbsDiff(out[j].dataSync(), ref.subarray(i * 3 * 32 * 48, (i + 1) * 3 * 32 * 48))
        assert.ok(d <= 1e-4, `request ${j}: max abs diff ${d}`)
      }
      const s = model.stats()
      assert.strictEqual(s.requests, 4)
      assert.ok(s.runs < 4, `runs ${s.runs}`)
    } finally {
      model.dispose()
    }
  })

  describe('bad input', () => {
    it('rejects a model whose output is [N, C] logits at the load-time probe', async () => {
      await rejects(loadTorchScript(f('classifier.pt')), SegtorchError, /expected a \[N, C, H, W\] tensor.*got a Float tensor of shape \[1, 3\]/)
    })

    it('rejects a model that returns a string', async () => {
      await rejects(loadTorchScript(f('text.pt')), SegtorchError, /expected a \[N, C, H, W\] tensor.*got a str/)
    })

    it('without the probe, a bad output is reported at the first predict', async () => {
      const model = await loadTorchScript(f('classifier.pt'), { probeSize: 0, numClasses: 3 })
      try {
        await rejects(model.predict(x), SegtorchError, /expected a \[N, C, H, W\] tensor.*got a Float tensor of shape \[2, 3\]/)
      } finally {
        model.dispose()
      }
    })

    it('rejects a numClasses that the module does not output', async () => {
      await rejects(loadTorchScript(f('dict.pt'), { numClasses: 5 }), RangeError, /numClasses = 5.*outputs 3/)
    })

    it('rejects a truncated archive', async () => {
      await rejects(loadTorchScript(f('truncated.pt')), SegtorchError, /truncated or corrupt/)
    })

    it('rejects a file that is not a zip archive, saying what it found', async () => {
      await rejects(loadTorchScript(f('garbage.pt')), SegtorchError, /Expected a TorchScript archive .* but found a file starting with bytes 74 68 69 73/)
    })

    it('rejects a state dict (torch.save) and points to loadStateDict', async () => {
      await rejects(loadTorchScript(f('state_dict.pt')), SegtorchError, /without TorchScript code.*loadStateDict/)
    })

    it('rejects a missing file', async () => {
      await rejects(loadTorchScript(f('nope.pt')), SegtorchError, /does not exist/)
    })

    it('reports a wrong inChannels through the probe', async () => {
      await rejects(loadTorchScript(f('dict.pt'), { inChannels: 1 }), SegtorchError, /probe input of shape \[1, 1, 64, 64\].*inChannels/)
    })

    it('validates options in TypeScript', async () => {
      await rejects(loadTorchScript(f('dict.pt'), { inChanels: 3 } as never), TypeError, /Unknown option 'inChanels'/)
      await rejects(loadTorchScript(f('dict.pt'), { mean: [0.5] }), RangeError, /3 numbers for mean/)
      await rejects(loadTorchScript(f('dict.pt'), { probeSize: 0 }), RangeError, /numClasses when probeSize is 0/)
      await rejects(loadTorchScript(42 as never), TypeError, /file path/)
    })
  })
})
