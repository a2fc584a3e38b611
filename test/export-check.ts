/**
 * What every architecture's export must give (used by the shared battery and test/export.test.ts):
 * the TorchScript module, loaded back with loadTorchScript, and the ONNX model, run by
 * onnxruntime-node, return the logits of model.forward() (eval mode) at two input sizes and batch
 * sizes, within 1e-5 (TorchScript) and 1e-4 (ONNX) of the largest logit (at least 1).
 */
import * as assert from 'assert'
import * as path from 'path'
import * as ort from 'onnxruntime-node'
import { loadTorchScript, Model, Tensor } from '../lib'
import { randomImages, tmpdir } from './helpers'

/** Largest |a - b| over the largest |b| (at least 1). */
export function relativeError (a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.strictEqual(a.length, b.length, 'same number of values')
  let diff = 0
  let scale = 1
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]))
    scale = Math.max(scale, Math.abs(b[i]))
  }
  return diff / scale
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
}

export async function checkExports (model: Model, sizes: Array<[number, number]>, seed = 21): Promise<ExportCheck> {
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
      for (let i = 0; i < sizes.length; i++) {
        const [h, w] = sizes[i]
        const x = randomImages(i + 1, channels, h, w, seed + i)
        const ref = (await model.forward(x)).dataSync() as Float32Array
        const got = (await script.predict(x, { output: 'logits' })).dataSync() as Float32Array
        const fromOnnx = await onnxLogits(session, x)
        assert.deepStrictEqual(fromOnnx.dims, [i + 1, k, h, w])
        errors.push([relativeError(got, ref), relativeError(fromOnnx.data as Float32Array, ref)])
      }
    } finally {
      script.dispose()
      await session.release()
    }
    for (let i = 0; i < errors.length; i++) {
      assert.ok(errors[i][0] <= 1e-5, `TorchScript logits at ${sizes[i].join('x')}: relative error ${errors[i][0]}`)
      assert.ok(errors[i][1] <= 1e-4, `ONNX logits at ${sizes[i].join('x')}: relative error ${errors[i][1]}`)
    }
    return { torchscript, onnx, errors }
  } finally {
    if (training) await model.train()
  }
}
