/**
 * Export of our models to TorchScript (traced natively, saved by libtorch) and ONNX (our converter
 * from the same traced graph, lib/export/onnx.ts). Both take normalised float32 images
 * [N, C, H, W] (uint8 pixels / 255, minus mean, divided by std: the mean and std are in the
 * result and in the files' metadata) and return the logits [N, K, H, W] (ONNX: or the labels).
 */
import * as fs from 'fs'
import type { NativeModel } from '../binding'
import { typeError, withStack } from '../errors'
import { checkRegularFile, removeStaleTemps } from '../files'
import type { ModelConfig } from '../model'
import { Tensor } from '../tensor'
import * as v from '../validate'
import { convert, TracedGraph } from './onnx'

export interface ExportOptions {
  /**
   * The size the trace runs at: images [N, C, H, W] (their H and W are taken) or [H, W]. Default
   * 64 x 64. A size-independent export takes any size; a fixed-size one (dynamicSize: false) takes
   * batch 1 and this size (any size that pads to the same multiple of the network's input multiple).
   */
  example?: Tensor | readonly [number, number]
  /**
   * true (default): batch, height and width are free; a network whose graph cannot be made
   * size-independent is refused with the reason (a SegtorchError: export it with dynamicSize: false).
   * false: batch 1 and the example's size.
   */
  dynamicSize?: boolean
}

export interface ExportTorchScriptOptions extends ExportOptions {
  /**
   * Weights and computation of the module: 'fp32' (default), or 'bf16' (weights stored in bfloat16:
   * half the file; the module casts its float32 input to bfloat16, computes in it, and returns
   * float32 logits: fast on CPUs with native bf16 (AMX, AVX512-BF16) and on GPUs). There is no
   * 'fp16': libtorch's CPU convolutions have no float16 kernels to trace on this machine.
   */
  precision?: 'fp32' | 'bf16'
}

export interface ExportOnnxOptions extends ExportOptions {
  /** ONNX opset, 13 to 18. Default 17. */
  opset?: number
  /** 'logits' (default): float32 [N, K, H, W]; 'labels': int32 [N, H, W], the argmax over classes. */
  output?: 'logits' | 'labels'
}

export interface ExportResult {
  format: 'torchscript' | 'onnx'
  file: string
  /** Whether batch, height and width are free. */
  dynamic: boolean
  /** What the input is: [N, C, H, W] with 'batch', 'height', 'width' where dynamic. */
  inputShape: [number | 'batch', number, number | 'height', number | 'width']
  /** The network pads inputs to multiples of this (inside the exported graph). */
  inputMultiple: number
  /** Normalisation the exported model expects its float input to have had: (x / 255 - mean) / std. */
  mean: number[]
  std: number[]
  /** TorchScript: the precision of the weights and the computation. */
  precision?: 'fp32' | 'bf16'
  /** ONNX: the sidecar written next to the model (<name>.json: input name, shape, scale 1/255, mean, std; output name and kind). */
  sidecar?: string
}

const INPUT_DOC = 'float32 images [N, C, H, W], normalised: (pixel / 255 - mean) / std'

interface ExportInfo { dynamic: boolean, note: string, batch: number, height: number, width: number, inputMultiple: number }

/** The parts of Model the export needs (lib/model.ts passes itself). */
export interface Exportable {
  readonly config: Readonly<ModelConfig>
  _native(): NativeModel
}

function resolveCommon (o: Record<string, unknown>): { height: number, width: number, dynamic: boolean } {
  let height = 64
  let width = 64
  if (o.example !== undefined) {
    if (o.example instanceof Tensor) {
      if (o.example.shape.length !== 4) throw new RangeError(`Expected example images [N, C, H, W] for example but received shape [${o.example.shape.join(', ')}]`)
      height = o.example.shape[2]
      width = o.example.shape[3]
    } else if (Array.isArray(o.example) && o.example.length === 2) {
      height = v.integer('example[0]', o.example[0], 1, 16384)
      width = v.integer('example[1]', o.example[1], 1, 16384)
    } else {
      throw typeError('example', 'images [N, C, H, W] or a size [H, W]', o.example)
    }
  }
  const dynamic = o.dynamicSize === undefined ? true : v.boolean('dynamicSize', o.dynamicSize)
  return { height, width, dynamic }
}

function checkFile (file: unknown): string {
  if (typeof file !== 'string' || file.length === 0) throw typeError('file', 'a file path (non-empty string)', file)
  return file
}

function result (format: 'torchscript' | 'onnx', file: string, info: ExportInfo, m: Exportable): ExportResult {
  const c = m.config
  return {
    format,
    file,
    dynamic: info.dynamic,
    inputShape: info.dynamic ? ['batch', c.inChannels, 'height', 'width'] : [info.batch, c.inChannels, info.height, info.width],
    inputMultiple: info.inputMultiple,
    mean: resolvedMean(c),
    std: resolvedStd(c)
  }
}

// What the native Segmenter uses: the configured values, else ImageNet's for 3 channels, else 0.5.
function resolvedMean (c: Readonly<ModelConfig>): number[] {
  if (c.mean.length > 0) return [...c.mean]
  return c.inChannels === 3 ? [0.485, 0.456, 0.406] : Array(c.inChannels).fill(0.5)
}
function resolvedStd (c: Readonly<ModelConfig>): number[] {
  if (c.std.length > 0) return [...c.std]
  return c.inChannels === 3 ? [0.229, 0.224, 0.225] : Array(c.inChannels).fill(0.5)
}

export async function exportTorchScript (m: Exportable, file: string, options?: ExportTorchScriptOptions): Promise<ExportResult> {
  const path = checkFile(file)
  const o = v.optionsObject('exportTorchScript options', options)
  v.checkKeys('exportTorchScript options', o, ['example', 'dynamicSize', 'precision'])
  const common = resolveCommon(o)
  const precision = o.precision === undefined ? 'fp32' : v.oneOf('precision', o.precision, ['fp32', 'bf16'] as const)
  await checkRegularFile(path, 'a TorchScript file to write')
  await removeStaleTemps(path)
  const native = m._native()
  const c = m.config
  const metadata = JSON.stringify({ config: c, mean: resolvedMean(c), std: resolvedStd(c), input: INPUT_DOC })
  const info = await withStack(() => native.exportTorchScript(path, { ...common, precision }, metadata)) as ExportInfo
  return { ...result('torchscript', path, info, m), precision }
}

export async function exportOnnx (m: Exportable, file: string, options?: ExportOnnxOptions): Promise<ExportResult> {
  const path = checkFile(file)
  const o = v.optionsObject('exportOnnx options', options)
  v.checkKeys('exportOnnx options', o, ['example', 'dynamicSize', 'opset', 'output'])
  const common = resolveCommon(o)
  const opset = o.opset === undefined ? 17 : v.integer('opset', o.opset, 13, 18)
  const output = o.output === undefined ? 'logits' : v.oneOf('output', o.output, ['logits', 'labels'] as const)
  await checkRegularFile(path, 'an ONNX file to write')
  const native = m._native()
  const { info, graph } = await withStack(() => native.exportGraph({ ...common, precision: 'fp32' })) as { info: ExportInfo, graph: TracedGraph }
  // Tensor constants (the weights) come as native tensors: wrapped for the converter, freed after.
  const tensors: Tensor[] = []
  for (const n of graph.nodes) {
    const value = n.value as { dtype?: unknown, shape?: unknown } | null | undefined
    if (value !== null && typeof value === 'object' && 'dtype' in value && 'shape' in value) {
      n.value = Tensor.fromNative(value as never)
      tensors.push(n.value as Tensor)
    }
  }
  const c = m.config
  let bytes: Uint8Array
  try {
    bytes = convert(graph, {
      opset,
      dynamicSize: info.dynamic,
      inputShape: [info.batch, c.inChannels, info.height, info.width],
      numClasses: c.numClasses,
      output,
      producerVersion: require('../../package.json').version,
      metadata: {
        'segtorch.config': JSON.stringify(c),
        'segtorch.mean': JSON.stringify(resolvedMean(c)),
        'segtorch.std': JSON.stringify(resolvedStd(c)),
        'segtorch.input': INPUT_DOC,
        'segtorch.inputMultiple': String(info.inputMultiple)
      }
    })
  } finally {
    for (const t of tensors) t.dispose()
  }
  await removeStaleTemps(path)
  await writeFileAtomic(path, bytes)
  // The sidecar (examples/browser reads it): how to feed the model, next to it as <name>.json.
  const sidecar = path.replace(/\.onnx$/i, '') + '.json'
  const r = result('onnx', path, info, m)
  await writeFileAtomic(sidecar, Buffer.from(JSON.stringify({
    format: 'segtorch-onnx',
    arch: c.arch,
    numClasses: c.numClasses,
    dynamic: r.dynamic,
    inputMultiple: r.inputMultiple,
    input: { name: 'images', shape: r.inputShape, channels: c.inChannels, scale: 1 / 255, mean: r.mean, std: r.std, doc: INPUT_DOC },
    output: { name: output, kind: output }
  }, null, 2) + '\n'))
  return { ...r, sidecar }
}

/** Written to `<file>.tmp-<pid>`, fsynced, renamed over `file`. */
async function writeFileAtomic (file: string, bytes: Uint8Array): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}`
  try {
    const h = await fs.promises.open(tmp, 'w')
    try {
      await h.writeFile(bytes)
      await h.sync()
    } finally {
      await h.close()
    }
    await fs.promises.rename(tmp, file)
  } catch (err) {
    await fs.promises.rm(tmp, { force: true })
    throw err
  }
}
