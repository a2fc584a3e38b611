/**
 * TorchScript models exported from Python (`torch.jit.script(model).save(f)` or
 * `torch.jit.trace(model, x).save(f)`), run with segtorch's inference (whole image or sliding
 * window, multi-scale, flip; labels, probabilities or logits) and evaluation.
 */
import * as fs from 'fs'
import { binding, NativeScriptModel } from './binding'
import { SegtorchError, typeError, withStack } from './errors'
import { checkRegularFile } from './files'
import { InferenceModel } from './model'
import { BatchingOptions, resolveBatching } from './serve'
import { Device } from './tensor'
import * as v from './validate'

export interface TorchScriptOptions {
  /** 'cpu' (default), 'cuda' or 'cuda:N': the module is loaded there. */
  device?: Device
  /** Image channels the module takes. Default 3. */
  inChannels?: number
  /**
   * Per-channel mean used to normalise uint8 images (after /255), as our own models do: ImageNet's
   * for 3 channels, else 0.5. Float images are passed to the module as they are.
   */
  mean?: number[]
  /** Per-channel std used to normalise uint8 images. ImageNet's for 3 channels, else 0.5. */
  std?: number[]
  /** Classes the module outputs: checked against the probe, or required when probeSize is 0. */
  numClasses?: number
  /**
   * Size of the zeros image [1, inChannels, h, w] run once at load to learn numClasses and check
   * that the module returns a segmentation map. Default 64; 0 skips the probe.
   */
  probeSize?: number | [number, number]
  /** Request batching from the start (see setBatching). Default false. */
  batching?: BatchingOptions | false
}

export interface TorchScriptInfo {
  type: 'torchscript'
  path: string
  numClasses: number
  inChannels: number
  device: string
  parameters: number
}

const OPTION_KEYS = ['device', 'inChannels', 'mean', 'std', 'numClasses', 'probeSize', 'batching'] as const

/**
 * A user's TorchScript module has unknown numerics: it runs in fp32 unless `precision` asks for
 * 'bf16' (our own models' 'auto' default does not apply). channelsLast and foldBatchNorm do not
 * apply to TorchScript modules.
 */
function fp32ByDefault<T> (where: string, options: T): T {
  const o = v.optionsObject(where, options)
  return (o.precision === undefined ? { ...o, precision: 'fp32' } : o) as T
}

/** A TorchScript segmentation model: predict, evaluate, batching. Created by loadTorchScript(). */
export class ScriptModel extends InferenceModel<NativeScriptModel> {
  readonly path: string
  readonly device: string
  readonly config: Readonly<{ inChannels: number, numClasses: number, mean: number[], std: number[] }>
  #info: TorchScriptInfo

  /** @internal use loadTorchScript() */
  constructor (native: NativeScriptModel, info: TorchScriptInfo, mean: number[], std: number[]) {
    super(native)
    this.#info = info
    this.path = info.path
    this.device = info.device
    this.config = Object.freeze({ inChannels: info.inChannels, numClasses: info.numClasses, mean, std })
  }

  protected _inferenceDefaults<T> (where: string, options: T): T {
    return fp32ByDefault(where, options)
  }

  info (): TorchScriptInfo {
    return { ...this.#info }
  }
}

/**
 * Loads a TorchScript segmentation model saved from Python. Its forward must take a float tensor
 * [N, C, H, W] and return the logits [N, K, H, W] as a tensor, as a dict with an 'out' entry
 * (torchvision's segmentation models), or as a tuple / list whose first element is one of those.
 * Logits at a lower resolution are resized bilinearly to the input size.
 */
export async function loadTorchScript (file: string, options?: TorchScriptOptions): Promise<ScriptModel> {
  if (typeof file !== 'string' || file.length === 0) throw typeError('file', 'a file path (non-empty string)', file)
  const o = v.optionsObject('loadTorchScript options', options)
  v.checkKeys('loadTorchScript options', o, OPTION_KEYS)
  const inChannels = o.inChannels === undefined ? 3 : v.integer('inChannels', o.inChannels, 1, 1024)
  const imagenet = inChannels === 3
  const mean = o.mean === undefined ? (imagenet ? [0.485, 0.456, 0.406] : Array(inChannels).fill(0.5)) : v.numberArray('mean', o.mean, inChannels)
  const std = o.std === undefined ? (imagenet ? [0.229, 0.224, 0.225] : Array(inChannels).fill(0.5)) : v.numberArray('std', o.std, inChannels)
  if (std.some((s) => s <= 0)) throw typeError('std', 'positive numbers', std)
  const numClasses = o.numClasses === undefined ? 0 : v.integer('numClasses', o.numClasses, 1, 65535)
  let probe: [number, number] = [64, 64]
  if (o.probeSize !== undefined) {
    if (o.probeSize === 0) probe = [0, 0]
    else if (typeof o.probeSize === 'number') probe = [v.integer('probeSize', o.probeSize, 1, 8192), o.probeSize]
    else if (Array.isArray(o.probeSize) && o.probeSize.length === 2) probe = [v.integer('probeSize[0]', o.probeSize[0], 1, 8192), v.integer('probeSize[1]', o.probeSize[1], 1, 8192)]
    else throw typeError('probeSize', 'a positive integer, [h, w] or 0', o.probeSize)
  }
  if (probe[0] === 0 && numClasses === 0) throw new RangeError('Expected numClasses when probeSize is 0 (without the probe the classes cannot be learned) but received none')
  const device = o.device === undefined ? 'cpu' : v.device('device', o.device)
  if (device.startsWith('cuda') && !binding.backend().cuda) {
    throw new SegtorchError(`device '${device}' requested but CUDA is not available in this segtorch (libtorch ${binding.backend().libtorch})`)
  }
  const batching = o.batching === undefined ? false : resolveBatching(o.batching, 'batching')
  if (!fs.existsSync(file)) throw new SegtorchError(`Expected a TorchScript file but ${file} does not exist`)
  await checkRegularFile(file, 'a TorchScript file')
  const native = new binding.NativeScriptModel()
  const info = await withStack(() => native.load({ path: file, device, inChannels, mean, std, numClasses, probeSize: probe }))
  const model = new ScriptModel(native, { type: 'torchscript', path: file, ...info }, mean, std)
  if (batching !== false) model.setBatching(batching)
  return model
}
