/** segtorch export: a saved model as TorchScript or ONNX (lib/export). */
import type { ExportResult } from '../export'
import { openModel } from './infer'
import { UsageError } from './options'

export interface ExportCliOptions {
  format?: string
  out?: string
  opset?: string
  output?: string
  fixedSize?: string
  precision?: string
  json?: boolean
}

function size (v: string): [number, number] {
  const m = /^(\d+)(?:x(\d+))?$/.exec(v)
  if (m === null) throw new UsageError(`Expected a size HxW (or one number) for --fixed-size but received '${v}'`)
  const h = Number(m[1])
  const w = Number(m[2] ?? m[1])
  if (h < 1 || w < 1 || h > 16384 || w > 16384) throw new UsageError(`Expected a size between 1 and 16384 for --fixed-size but received '${v}'`)
  return [h, w]
}

export async function runExport (modelFile: string, o: ExportCliOptions, out: (s: string) => void): Promise<ExportResult> {
  if (o.format !== 'onnx' && o.format !== 'torchscript') throw new UsageError(`Expected onnx or torchscript for --format but received '${String(o.format)}'`)
  if (typeof o.out !== 'string' || o.out.length === 0) throw new UsageError('Expected a file to write for --out')
  if (o.output !== undefined && o.format !== 'onnx') throw new UsageError('--output applies to --format onnx only')
  if (o.opset !== undefined && o.format !== 'onnx') throw new UsageError('--opset applies to --format onnx only')
  const opset = o.opset === undefined ? 17 : Number(o.opset)
  if (!Number.isInteger(opset) || opset < 13 || opset > 18) throw new UsageError(`Expected an opset from 13 to 18 for --opset but received '${o.opset}'`)
  const output = o.output ?? 'logits'
  if (output !== 'logits' && output !== 'labels') throw new UsageError(`Expected logits or labels for --output but received '${output}'`)
  if (o.precision !== undefined && o.format !== 'torchscript') throw new UsageError('--precision applies to --format torchscript only')
  const precision = o.precision ?? 'fp32'
  if (precision !== 'fp32' && precision !== 'bf16') throw new UsageError(`Expected fp32 or bf16 for --precision but received '${precision}'`)
  const fixed = o.fixedSize === undefined ? undefined : size(o.fixedSize)
  const sizeOptions = fixed === undefined ? {} : { dynamicSize: false, example: fixed }
  const model = await openModel(modelFile, 'cpu')
  try {
    const r = o.format === 'onnx'
      ? await model.exportOnnx(o.out, { opset, output, ...sizeOptions })
      : await model.exportTorchScript(o.out, { precision, ...sizeOptions })
    if (o.json === true) {
      out(JSON.stringify(r, null, 2))
    } else {
      out(`wrote ${r.file} (${r.format === 'onnx' ? `ONNX opset ${opset}, output ${output}` : `TorchScript, ${precision}`})`)
      out(`input: float32 [${r.inputShape.join(', ')}], normalised: (pixel / 255 - mean) / std with mean ${JSON.stringify(r.mean)}, std ${JSON.stringify(r.std)}`)
    }
    return r
  } finally {
    model.dispose()
  }
}
