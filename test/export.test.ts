/**
 * Export beyond what the shared battery checks for every architecture (test/export-check.ts):
 * Python's torch.jit.load on our TorchScript files, the ONNX checker, fixed-size export, the
 * labels output, opset 13, the converter's error for an operator it does not know, option
 * validation and the command line.
 */
import * as assert from 'assert'
import { spawnSync } from 'child_process'
import * as fs from 'fs'
import * as path from 'path'
import * as ort from 'onnxruntime-node'
import { backend, createModel, loadTorchScript, Model, ModelOptions, SegtorchError } from '../lib'
import { convert } from '../lib/export/onnx'
import { onnxLogits, pythonMissing, PYTORCH2_PYTHON, relativeError, runInPython, torchPythons } from './export-check'
import { CLI_ARGS, randomImages, rejects, ROOT, tmpdir } from './helpers'
import { PYTHON } from './twin'

// The ONNX checker: a Python with the onnx package (the PyTorch 2 venv of scripts/pytorch-venv.sh by default).
const ONNX_PYTHON = PYTORCH2_PYTHON
const missing = pythonMissing

// One per kind of operation the converter and the size rewrite handle: transposed convolutions
// (unet), max-unpooling (segnet's indices; its 29M-parameter network stays in the battery),
// adaptive pyramid pooling (pspnet), Hardswish / Hardsigmoid gates (lraspp), align_corners resizes and a
// cascade at 1/2 and 1/4 of the input (icnet).
const CONFIGS: Record<string, ModelOptions> = {
  unet: { arch: 'unet', numClasses: 3, baseChannels: 4 },
  pspnet: { arch: 'pspnet', backbone: 'resnet18', numClasses: 3, outputStride: 8, aux: false },
  lraspp: { arch: 'lraspp', numClasses: 3, interChannels: 16 },
  icnet: { arch: 'icnet', backbone: 'resnet18', numClasses: 2, inChannels: 1 }
}

describe('export', function () {
  this.timeout(300000)
  const models: Record<string, Model> = {}
  let dir = ''

  before(async () => {
    dir = tmpdir('segtorch-export-test-')
    for (const [name, options] of Object.entries(CONFIGS)) models[name] = await createModel(options)
  })
  after(() => { for (const m of Object.values(models)) m.dispose() })

  it("writes TorchScript that Python's torch.jit.load (1.13 and 2.x) runs with the logits of forward() and the metadata", async function () {
    const pythons = torchPythons()
    if (pythons.length === 0) {
      console.log(`      skipped: ${missing(PYTHON, 'torch')}; install python3-torch`)
      this.skip()
    }
    const refs: Record<string, Float32Array> = {}
    for (const [name, m] of Object.entries(models)) {
      await m.exportTorchScript(path.join(dir, `${name}.pt`))
      const x = randomImages(2, m.config.inChannels, 45, 61, 5)
      fs.writeFileSync(path.join(dir, `${name}.in.bin`), x.dataSync() as Float32Array)
      fs.writeFileSync(path.join(dir, `${name}.shape`), x.shape.join(' '))
      refs[name] = (await m.forward(x)).dataSync() as Float32Array
    }
    for (const { python } of pythons) {
      const r = await runInPython(python, dir, Object.keys(models))
      assert.match(r.version, /^torch \S+/)
      for (const [name, m] of Object.entries(models)) {
        const line = r.lines.find((l) => l.startsWith(`${name} `))
        assert.ok(line, r.lines.join('\n'))
        const [, n, k, h, w, params] = line.split(' ').map(Number)
        assert.deepStrictEqual([n, k, h, w], [2, m.config.numClasses, 45, 61])
        assert.ok(params > 0 && params <= m.info().parameters, `parameters ${params}`)
        const err = relativeError(r.logits[name], refs[name])
        assert.ok(err <= 1e-5, `${name} in ${r.version}: relative error ${err}`)
        const meta = r.lines.find((l) => l.startsWith(`meta ${name} `))
        assert.ok(meta, r.lines.join('\n'))
        const c = m.config.inChannels
        assert.deepStrictEqual(JSON.parse(meta.slice(`meta ${name} `.length)), {
          arch: name, mean: c === 3 ? [0.485, 0.456, 0.406] : [0.5], std: c === 3 ? [0.229, 0.224, 0.225] : [0.5]
        }, r.version)
      }
    }
  })

  it("precision 'bf16': bfloat16 weights (half the file), float32 in and out, from the API and the CLI", async () => {
    // A size-independent bf16 export (three traces, two checks, all in bf16), from the API and the
    // CLI. A U-Net: without native bf16 libtorch's bf16 kernels are slow (DeepLab v3 on ResNet-18
    // took 20 s per export on an AVX2 EPYC, this U-Net 3 s).
    const m = await createModel({ arch: 'unet', baseChannels: 16, numClasses: 5 })
    try {
      const f32 = path.join(dir, 'dl-fp32.pt')
      const b16 = path.join(dir, 'dl-bf16.pt')
      assert.strictEqual((await m.exportTorchScript(f32)).precision, 'fp32')
      assert.strictEqual((await m.exportTorchScript(b16, { precision: 'bf16' })).precision, 'bf16')
      const ratio = fs.statSync(b16).size / fs.statSync(f32).size
      console.log(`      (unet-16: ${(fs.statSync(f32).size / 1e6).toFixed(1)} MB in fp32, ${(fs.statSync(b16).size / 1e6).toFixed(1)} MB in bf16)`)
      assert.ok(ratio > 0.45 && ratio < 0.55, `bf16 / fp32 file size ${ratio}`)
      const s = await loadTorchScript(b16, { inChannels: 3, numClasses: 5 })
      try {
        const x = randomImages(1, 3, 50, 70, 3)
        const y = await s.predict(x, { output: 'logits' })
        assert.strictEqual(y.dtype, 'float32')
        assert.deepStrictEqual(y.shape, [1, 5, 50, 70])
        // The battery's bounds (test/export-check.ts): without native bf16, libtorch 1.13's NCHW bf16
        // kernels accumulate in bf16 (0.108 for this U-Net on an AVX2 EPYC); a wrong weight is order 1.
        const err = relativeError(y.dataSync() as Float32Array, (await m.forward(x)).dataSync() as Float32Array)
        assert.ok(err < (backend().bf16 ? 0.1 : 0.5), `bf16 TorchScript logits: relative error ${err}`)
      } finally {
        s.dispose()
      }
      await rejects(m.exportTorchScript(path.join(dir, 'x.pt'), { precision: 'fp16' as 'bf16' }), RangeError, /Expected one of 'fp32', 'bf16' for precision but received 'fp16'/)
      const saved = path.join(dir, 'dl.segtorch')
      await m.save(saved)
      const cli = spawnSync(process.execPath, [...CLI_ARGS, 'export', saved,
        '--format', 'torchscript', '--precision', 'bf16', '--out', path.join(dir, 'cli-bf16.pt')], { encoding: 'utf8', env: { ...process.env, TS_NODE_PROJECT: path.join(ROOT, 'tsconfig.json') } })
      assert.strictEqual(cli.status, 0, cli.stderr)
      assert.match(cli.stdout, /TorchScript, bf16/)
      assert.ok(Math.abs(fs.statSync(path.join(dir, 'cli-bf16.pt')).size - fs.statSync(b16).size) < 4096)
    } finally {
      m.dispose()
    }
  })

  it('writes ONNX models that the ONNX checker accepts (opset 13 and 17, logits and labels)', async function () {
    const why = missing(ONNX_PYTHON, 'onnx')
    if (why !== '') {
      console.log(`      skipped: ${why}; pip install onnx there or set SEGTORCH_ONNX_PYTHON`)
      this.skip()
    }
    const files: string[] = []
    for (const [name, m] of Object.entries(models)) {
      files.push((await m.exportOnnx(path.join(dir, `${name}.onnx`))).file)
    }
    files.push((await models.lraspp.exportOnnx(path.join(dir, 'lraspp13.onnx'), { opset: 13, output: 'labels' })).file)
    files.push((await models.unet.exportOnnx(path.join(dir, 'unet-fixed.onnx'), { dynamicSize: false, example: [40, 56] })).file)
    const r = spawnSync(ONNX_PYTHON, [path.join(ROOT, 'test', 'python', 'onnx_check.py'), ...files], { encoding: 'utf8' })
    assert.strictEqual(r.status, 0, r.stderr)
    for (const f of files) assert.match(r.stdout, new RegExp(`ok ${f.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`))
  })

  it("output 'labels' gives int32 [N, H, W], the argmax of the logits", async () => {
    const m = models.pspnet
    const file = path.join(dir, 'labels.onnx')
    await m.exportOnnx(file, { output: 'labels' })
    const session = await ort.InferenceSession.create(file)
    try {
      const x = randomImages(2, 3, 33, 47, 9)
      const out = await onnxLogits(session, x)
      assert.strictEqual(out.type, 'int32')
      assert.deepStrictEqual(out.dims, [2, 33, 47])
      const logits = (await m.forward(x)).dataSync() as Float32Array
      const k = m.config.numClasses
      const plane = 33 * 47
      const labels = out.data as Int32Array
      for (let n = 0; n < 2; n++) {
        for (let p = 0; p < plane; p++) {
          let best = 0
          for (let c = 1; c < k; c++) if (logits[(n * k + c) * plane + p] > logits[(n * k + best) * plane + p]) best = c
          assert.strictEqual(labels[n * plane + p], best, `pixel ${p} of image ${n}`)
        }
      }
    } finally {
      await session.release()
    }
  })

  it('opset 13 (Hardswish decomposed) gives the logits of forward()', async () => {
    const file = path.join(dir, 'lraspp-13.onnx')
    await models.lraspp.exportOnnx(file, { opset: 13 })
    const session = await ort.InferenceSession.create(file)
    try {
      const x = randomImages(1, 3, 50, 38, 4)
      const err = relativeError((await onnxLogits(session, x)).data as Float32Array, (await models.lraspp.forward(x)).dataSync() as Float32Array)
      assert.ok(err <= 1e-4, `relative error ${err}`)
    } finally {
      await session.release()
    }
  })

  it('dynamicSize: false exports batch 1 at the example size (ONNX input shape fixed)', async () => {
    const m = models.unet
    const file = path.join(dir, 'fixed.onnx')
    const r = await m.exportOnnx(file, { dynamicSize: false, example: randomImages(1, 3, 40, 56) })
    assert.strictEqual(r.dynamic, false)
    assert.deepStrictEqual(r.inputShape, [1, 3, 40, 56])
    // the sidecar examples/browser reads
    const side = JSON.parse(fs.readFileSync(path.join(dir, 'fixed.json'), 'utf8'))
    assert.strictEqual(r.sidecar, path.join(dir, 'fixed.json'))
    assert.deepStrictEqual([side.arch, side.numClasses, side.input.name, side.input.channels, side.input.scale, side.output.name],
      ['unet', 3, 'images', 3, 1 / 255, 'logits'])
    assert.deepStrictEqual([side.input.mean, side.input.std], [[0.485, 0.456, 0.406], [0.229, 0.224, 0.225]])
    const session = await ort.InferenceSession.create(file)
    try {
      const x = randomImages(1, 3, 40, 56, 3)
      const err = relativeError((await onnxLogits(session, x)).data as Float32Array, (await m.forward(x)).dataSync() as Float32Array)
      assert.ok(err <= 1e-4, `relative error ${err}`)
      await assert.rejects(onnxLogits(session, randomImages(1, 3, 64, 64)), /dimension|shape|Got invalid/i)
    } finally {
      await session.release()
    }
    const ts = await m.exportTorchScript(path.join(dir, 'fixed.pt'), { dynamicSize: false, example: [40, 56] })
    assert.deepStrictEqual(ts.inputShape, [1, 3, 40, 56])
  })

  it('leaves the model as it was: mode, weights and predictions', async () => {
    const m = models.lraspp
    await m.train()
    const x = randomImages(1, 3, 32, 32, 8)
    const before = (await m.predict(x, { output: 'logits' })).dataSync()
    await m.exportTorchScript(path.join(dir, 'mode.pt'))
    assert.strictEqual(m.info().training, true)
    assert.deepStrictEqual((await m.predict(x, { output: 'logits' })).dataSync(), before)
    await m.eval()
  })

  it('the result gives the normalisation the exported model expects', async () => {
    const r = await models.icnet.exportTorchScript(path.join(dir, 'icnet-norm.pt'))
    assert.deepStrictEqual(r.mean, [0.5])
    assert.deepStrictEqual(r.std, [0.5])
    assert.deepStrictEqual(r.inputShape, ['batch', 1, 'height', 'width'])
    assert.strictEqual(r.inputMultiple, 1, 'ICNet takes any size')
    // U-Net pads to a multiple of 16 (four 2x2 poolings) inside the exported graph
    assert.strictEqual((await models.unet.exportTorchScript(path.join(dir, 'unet-norm.pt'))).inputMultiple, 16)
  })

  it('refuses an operator the ONNX converter does not know with a SegtorchError naming it', () => {
    const graph = {
      values: [{ type: 'Tensor', sizes: [1, 3, 8, 8], dtype: 'Float' }, { type: 'Tensor', sizes: [], dtype: '' }],
      nodes: [{ kind: 'aten::fft_rfft2', inputs: [0], outputs: [1] }],
      input: 0,
      output: 1
    }
    assert.throws(() => convert(graph, { opset: 17, dynamicSize: true, inputShape: [1, 3, 8, 8], numClasses: 2, output: 'logits', metadata: {}, producerVersion: '0' }),
      (err: Error) => err instanceof SegtorchError && /aten::fft_rfft2 is not supported/.test(err.message))
  })

  it('rejects bad export options with TypeError / RangeError', async () => {
    const m = models.unet
    const f = path.join(dir, 'bad.onnx')
    await rejects(m.exportOnnx(f, { opset: 12 }), RangeError, /opset/)
    await rejects(m.exportOnnx(f, { output: 'probs' as 'logits' }), RangeError, /'logits', 'labels' for output/)
    await rejects(m.exportOnnx(f, { dynamicSize: 'yes' as unknown as boolean }), TypeError, /dynamicSize/)
    await rejects(m.exportOnnx(f, { example: [0, 4] }), RangeError, /example\[0\]/)
    await rejects(m.exportOnnx('', {}), TypeError, /file/)
    await rejects(m.exportTorchScript(f, { precision: 'fp16' as 'fp32' }), RangeError, /precision/)
    await rejects(m.exportTorchScript(f, { opset: 17 } as never), TypeError, /opset/)
    assert.ok(!fs.existsSync(f), 'nothing written')
  })

  it('segtorch export writes ONNX and TorchScript files from a saved model', async () => {
    const model = path.join(dir, 'cli.segtorch')
    await models.unet.save(model)
    const cli = (...args: string[]): ReturnType<typeof spawnSync> => spawnSync(process.execPath,
      [...CLI_ARGS, ...args],
      { encoding: 'utf8', env: { ...process.env, TS_NODE_PROJECT: path.join(ROOT, 'tsconfig.json') } })
    const onnxFile = path.join(dir, 'cli.onnx')
    let r = cli('export', model, '--format', 'onnx', '--out', onnxFile, '--output', 'labels')
    assert.strictEqual(r.status, 0, String(r.stderr))
    assert.match(String(r.stdout), /wrote .*cli\.onnx \(ONNX opset 17, output labels\)/)
    const session = await ort.InferenceSession.create(onnxFile)
    assert.deepStrictEqual(session.outputNames, ['labels'])
    await session.release()
    const ptFile = path.join(dir, 'cli.pt')
    r = cli('export', model, '--format', 'torchscript', '--out', ptFile, '--fixed-size', '40x56', '--json')
    assert.strictEqual(r.status, 0, String(r.stderr))
    assert.deepStrictEqual(JSON.parse(String(r.stdout)).inputShape, [1, 3, 40, 56])
    r = cli('export', model, '--format', 'tflite', '--out', ptFile)
    assert.strictEqual(r.status, 2)
    assert.match(String(r.stderr), /Expected onnx or torchscript for --format but received 'tflite'/)
    r = cli('export', model, '--format', 'torchscript', '--out', ptFile, '--output', 'labels')
    assert.strictEqual(r.status, 2)
    assert.match(String(r.stderr), /--output applies to --format onnx only/)
  })
})
