/**
 * What every architecture's export must give (used by the shared battery and test/export.test.ts):
 * the TorchScript module, loaded back with loadTorchScript, and the ONNX model, run by
 * onnxruntime-node, return the logits of model.forward() (eval mode) at two input sizes and batch
 * sizes, within 1e-5 (TorchScript) and 1e-4 (ONNX) of the largest logit (at least 1).
 */
import * as assert from 'assert'
import { spawn, spawnSync } from 'child_process'
import * as fs from 'fs'
import * as os from 'os'
import * as path from 'path'
import * as ort from 'onnxruntime-node'
import { backend, loadTorchScript, Model, Tensor } from '../lib'
import { labelAgreement, labelCounts, maxAbs, randomImages, relativeError, ROOT, tmpdir } from './helpers'

export { labelAgreement, labelCounts, relativeError }
import { minorVersion, PYTHON } from './twin'

/** PyTorch 2.x from PyPI (scripts/pytorch-venv.sh), where it is installed: a second Python to load exports with. */
export const PYTORCH2_PYTHON = process.env.SEGTORCH_ONNX_PYTHON ?? path.join(os.homedir(), '.cache', 'segtorch-pytorch', 'bin', 'python')

/** '' when `python` can import `module`, else why not. */
export function pythonMissing (python: string, module: string): string {
  const r = spawnSync(python, ['-c', `import ${module}`], { encoding: 'utf8' })
  return r.status === 0 ? '' : `${python} cannot import ${module} (${(r.stderr || r.error?.message || '').trim().split('\n').pop() ?? ''})`
}

const pythons: { list?: Array<{ python: string, version: string }> } = {}
/** The Pythons with torch here (Debian's 1.13, the PyPI 2.x venv) and their torch versions, found once. */
export function torchPythons (): Array<{ python: string, version: string }> {
  if (pythons.list === undefined) {
    pythons.list = []
    for (const python of [PYTHON, PYTORCH2_PYTHON]) {
      const r = spawnSync(python, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8' })
      if (r.status === 0) pythons.list.push({ python, version: r.stdout.trim() })
    }
    if (pythons.list.length < 2) console.log(`        (TorchScript files loaded by ${pythons.list.length === 0 ? 'no Python: none has torch' : pythons.list[0].python + ' only'})`)
  }
  return pythons.list
}

const checker: { python?: string } = {}
/** A Python with the onnx package (PYTORCH2_PYTHON), or '' (said once). */
export function onnxChecker (): string {
  if (checker.python === undefined) {
    const why = pythonMissing(PYTORCH2_PYTHON, 'onnx')
    checker.python = why === '' ? PYTORCH2_PYTHON : ''
    if (why !== '') console.log(`        (no ONNX checker: ${why})`)
  }
  return checker.python
}

/** Runs `command` without blocking the event loop: its exit status and output. */
export async function spawnAsync (command: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ status: number | null, stdout: string, stderr: string }> {
  return await new Promise((resolve, reject) => {
    const child = spawn(command, args, { env })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d })
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d })
    child.on('error', reject)
    child.on('close', (status) => resolve({ status, stdout, stderr }))
  })
}

/**
 * Runs test/python/export_check.py with `python` over DIR/NAME.pt for each name (input NAME.in.bin of
 * shape NAME.shape): the logits it computed, by name, and the torch version. Asynchronous, so that
 * several Pythons (each importing torch for seconds) run side by side.
 */
export async function runInPython (python: string, dir: string, names: string[]): Promise<{ version: string, logits: Record<string, Float32Array>, lines: string[] }> {
  const r = await spawnAsync(python, [path.join(ROOT, 'test', 'python', 'export_check.py'), dir, ...names], { ...process.env, TS_THREADS: String(backend().threads) })
  assert.strictEqual(r.status, 0, `${python}: ${r.stderr}`)
  const lines = r.stdout.split('\n')
  const logits: Record<string, Float32Array> = {}
  for (const name of names) {
    const b = fs.readFileSync(path.join(dir, `${name}.out.bin`))
    logits[name] = new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length))
  }
  return { version: lines[0], logits, lines }
}

export async function onnxLogits (session: ort.InferenceSession, x: Tensor): Promise<ort.Tensor> {
  const out = await session.run({ images: new ort.Tensor('float32', x.dataSync() as Float32Array, [...x.shape]) })
  return out[session.outputNames[0]]
}

export interface ExportCheck {
  torchscript: string
  onnx: string
  /** relative errors per size: [torchscript, onnx] */
  errors: Array<[number, number]>
  /** the bf16 TorchScript export at the first size: relative error of its logits to fp32 forward(), and label agreement where fp32's top two logits are at least a quarter of its largest apart */
  bf16: { error: number, agreement: number }
}


/**
 * `otherLibtorchOnly`: load the files in Python only with a PyTorch whose version differs from the
 * libtorch the addon was built against. A Python on the addon's own libtorch runs the same C++
 * loader and kernels that loadTorchScript has just checked; the shared battery asks it once per
 * architecture (its first configuration), not for every configuration (about 5 s each in CI).
 */
export async function checkExports (model: Model, sizes: Array<[number, number]>, seed = 21, otherLibtorchOnly = false): Promise<ExportCheck> {
  const dir = tmpdir('segtorch-export-')
  const torchscript = path.join(dir, `${model.config.arch}.pt`)
  const onnx = path.join(dir, `${model.config.arch}.onnx`)
  const channels = model.config.inChannels
  const k = model.config.numClasses
  const training = model.info().training
  if (training) await model.eval()
  try {
    const ts = await model.exportTorchScript(torchscript)
    assert.strictEqual(ts.dynamic, true)
    const ox = await model.exportOnnx(onnx)
    assert.deepStrictEqual(ox.inputShape, ['batch', channels, 'height', 'width'])
    const script = await loadTorchScript(torchscript, { inChannels: channels, numClasses: k })
    const session = await ort.InferenceSession.create(onnx)
    const errors: Array<[number, number]> = []
    try {
      // SegNet's decoder puts values where its encoder's max-pooling found them: when two activations
      // of a window are equal to float rounding, the layout forward() runs in (channels-last after
      // training) can pick the other one and move a region of the output (test/perf.test.ts measured
      // 1 in 40 inputs). A wrong export differs on every input: SegNet gets 3 inputs per size.
      const tries = model.config.arch === 'segnet' ? 3 : 1
      for (let i = 0; i < sizes.length; i++) {
        const [h, w] = sizes[i]
        let best: [number, number] = [Infinity, Infinity]
        for (let t = 0; t < tries && !(best[0] <= 1e-5 && best[1] <= 1e-4); t++) {
          const x = randomImages(i + 1, channels, h, w, seed + i + 100 * t)
          const ref = (await model.forward(x)).dataSync() as Float32Array
          const got = (await script.predict(x, { output: 'logits' })).dataSync() as Float32Array
          const fromOnnx = await onnxLogits(session, x)
          assert.deepStrictEqual(fromOnnx.dims, [i + 1, k, h, w])
          const e: [number, number] = [relativeError(got, ref), relativeError(fromOnnx.data as Float32Array, ref)]
          if (Math.max(e[0] / 1e-5, e[1] / 1e-4) < Math.max(best[0] / 1e-5, best[1] / 1e-4)) best = e
        }
        errors.push(best)
      }
    } finally {
      script.dispose()
      await session.release()
    }
    for (let i = 0; i < errors.length; i++) {
      assert.ok(errors[i][0] <= 1e-5, `TorchScript logits at ${sizes[i].join('x')}: relative error ${errors[i][0]}`)
      assert.ok(errors[i][1] <= 1e-4, `ONNX logits at ${sizes[i].join('x')}: relative error ${errors[i][1]}`)
    }
    // bf16: weights and computation in bfloat16, float32 in and out.
    const arch = model.config.arch
    const bf16File = path.join(dir, `${arch}-bf16.pt`)
    const [h, w] = sizes[0]
    // A size-independent export traces the network three times and checks it at two more sizes
    // (batches up to 3, sizes up to about 130 x 140), each in bf16. On a CPU without native bf16 these
    // run through libtorch's fallback kernels, 10-100x slower (DeepLab v1: 29 of the test's 52 s on an
    // AVX2 EPYC): there the bf16 file is exported at the first size (one trace, batch 1). The
    // size-independent graph is the same code for both precisions, checked in fp32 above on every CPU
    // and in bf16 on CPUs with native bf16 and (a U-Net) in test/export.test.ts.
    const fixed = !backend().bf16
    const tb = await model.exportTorchScript(bf16File, { precision: 'bf16', ...(fixed ? { dynamicSize: false, example: [h, w] as [number, number] } : {}) })
    assert.strictEqual(tb.precision, 'bf16')
    assert.strictEqual(tb.dynamic, !fixed)
    const sb = await loadTorchScript(bf16File, { inChannels: channels, numClasses: k, ...(fixed ? { probeSize: [h, w] as [number, number] } : {}) })
    const [maxError, minAgreement] = backend().bf16 ? [0.1, 0.9] : [0.5, 0.85]
    // SegNet: bf16 rounding makes ties in max-pooling windows far more often than fp32 does, and a tie
    // resolved the other way moves a region of the unpooled output (relative error 0.12 on one input in
    // a clean CI run of 2026-12-03, 9e-4 on the next): up to 3 inputs, as for fp32 above; a wrong
    // weight or operation fails all three.
    let x = randomImages(1, channels, h, w, seed)
    let ref = (await model.forward(x)).dataSync() as Float32Array
    let bf16: ExportCheck['bf16'] = { error: Infinity, agreement: 0 }
    try {
      const tries = arch === 'segnet' ? 3 : 1
      for (let t = 0; t < tries && !(bf16.error <= maxError && bf16.agreement >= minAgreement); t++) {
        const input = t === 0 ? x : randomImages(1, channels, h, w, seed + 1000 * t)
        const expected = t === 0 ? ref : (await model.forward(input)).dataSync() as Float32Array
        const ours = (await sb.predict(input, { output: 'logits' })).dataSync() as Float32Array
        // Labels where fp32's top two logits are at least a quarter of its largest |logit| apart: nearer
        // ties flip without anything being wrong. SegNet's random network outputs logits of about 2e-3
        // that its decoder places where max pooling found a maximum, and bf16 makes ties in the pooling
        // windows: 78-82 % of all its labels agree on an AVX2 CPU (93 % on a bf16 CPU), 92-96 % of the
        // decisive ones; a wrong weight or operation flips the decisive ones too.
        const e = { error: relativeError(ours, expected), agreement: labelAgreement(ours, expected, [1, k, h, w], 0.25 * maxAbs(expected)) }
        if (t === 0 || Math.max(e.error / maxError, minAgreement / e.agreement) < Math.max(bf16.error / maxError, minAgreement / bf16.agreement)) {
          bf16 = e
          x = input
          ref = expected
        }
      }
    } finally {
      sb.dispose()
    }
    console.log(`        (${arch} bf16 TorchScript: relative error ${bf16.error.toExponential(2)}, labels ${(100 * bf16.agreement).toFixed(2)} % as fp32 where decisive)`)
    // bfloat16 keeps 8 bits of mantissa: about 1e-2 of the largest logit through a deep network;
    // a wrong weight or operation gives errors of order 1. A CPU without native bf16 runs bf16 through
    // libtorch's fallback kernels: on an AVX2 EPYC (2026-12-01, libtorch 1.13) the tiny random
    // networks gave relative errors up to 0.41 (DFN), 0.35 (PSPNet), 0.12 (U-Net), the others within
    // 0.1. The cause: libtorch 1.13's NCHW bf16 convolution and matrix product there accumulate in
    // bf16 (one 256-channel 3x3 convolution: relative error 0.10 against the same bf16 inputs summed
    // in fp32, whose own rounding is 0.002; a 2304-long matrix product 0.08), while its channels-last
    // (oneDNN) convolution and libtorch 2.15's both accumulate in fp32 (0.002). The exported graph
    // runs NCHW. There the bound is 0.5: still apart from a wrong weight's order-1 error.
    assert.ok(bf16.error <= maxError, `bf16 TorchScript logits: relative error ${bf16.error}`)
    assert.ok(bf16.agreement >= minAgreement, `bf16 TorchScript labels: ${bf16.agreement} as fp32`)
    // Python: torch.jit.load of both files, in each PyTorch here (Debian's 1.13, PyPI's 2.x).
    fs.writeFileSync(path.join(dir, `${arch}.in.bin`), x.dataSync() as Float32Array)
    fs.writeFileSync(path.join(dir, `${arch}.shape`), x.shape.join(' '))
    // The ONNX checker (full check), where a Python with the onnx package is here, and torch.jit.load in
    // each PyTorch: side by side (importing torch and onnx takes seconds; 30 exports in the battery).
    const checks: Array<Promise<void>> = []
    if (onnxChecker() !== '') {
      checks.push(spawnAsync(onnxChecker(), [path.join(ROOT, 'test', 'python', 'onnx_check.py'), onnx]).then((r) => {
        assert.strictEqual(r.status, 0, `ONNX checker: ${r.stderr}`)
        assert.ok(r.stdout.includes(`ok ${onnx}`), r.stdout)
      }))
    }
    const ours = minorVersion(backend().libtorch)
    for (const { python } of torchPythons().filter((p) => !otherLibtorchOnly || minorVersion(p.version) !== ours)) {
      // Each Python in a folder of its own (links to the files), where it writes its logits.
      const sub = fs.mkdtempSync(path.join(dir, 'py-'))
      for (const name of [arch, `${arch}-bf16`]) {
        fs.linkSync(path.join(dir, `${name}.pt`), path.join(sub, `${name}.pt`))
        for (const ext of ['.in.bin', '.shape']) fs.linkSync(path.join(dir, `${arch}${ext}`), path.join(sub, `${name}${ext}`))
      }
      checks.push((async () => {
        // SegNet: a tie in a max-pooling window can move a region of the output (see the retries above),
        // so up to 3 inputs here too, each a new one written over the links; a wrong export fails all.
        let expected = ref
        for (let t = 0; ; t++) {
          const py = await runInPython(python, sub, [arch, `${arch}-bf16`])
          const e32 = relativeError(py.logits[arch], expected)
          const e16 = relativeError(py.logits[`${arch}-bf16`], expected)
          if ((e32 > 1e-5 || e16 > maxError) && arch === 'segnet' && t < 2) {
            const input = randomImages(1, channels, h, w, seed + 1000 * (t + 1))
            expected = (await model.forward(input)).dataSync() as Float32Array
            for (const name of [arch, `${arch}-bf16`]) {
              fs.rmSync(path.join(sub, `${name}.in.bin`))
              fs.writeFileSync(path.join(sub, `${name}.in.bin`), input.dataSync() as Float32Array)
            }
            continue
          }
          assert.ok(e32 <= 1e-5, `${py.version}: fp32 TorchScript logits, relative error ${e32}`)
          // bf16 kernels differ between PyTorch versions (oneDNN's): the same criterion as ours above.
          assert.ok(e16 <= maxError, `${py.version}: bf16 TorchScript logits against fp32 forward(), relative error ${e16}`)
          return
        }
      })())
    }
    await Promise.all(checks)
    return { torchscript, onnx, errors, bf16 }
  } finally {
    if (training) await model.train()
  }
}
