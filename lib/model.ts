/** Models: create, run, train, save and load segmentation networks. */
import * as fs from 'fs'
import { binding, NativeInferenceModel, NativeModel, StateDictReport } from './binding'
import { SegtorchError, typeError, withStack } from './errors'
import { checkRegularFile, removeStaleTemps } from './files'
import { Arch, ARCHITECTURES, Backbone, OutputStride } from './models'
import { Device, DType, Shape, Tensor } from './tensor'
import { LossName, LossOptions, resolveLossOptions } from './train'
import { CrfOptions, resolveCrfOptions, ResolvedCrfOptions } from './crf'
import { BatchSource, evaluate, Evaluation, fit, FitOptions, History } from './fit'
import * as v from './validate'
import { BatchingOptions, BatchStats, resolveBatching } from './serve'

export interface ModelOptions {
  /** Architecture key, e.g. 'fcn'. */
  arch: Arch
  /** Backbone network; each architecture has a default. */
  backbone?: Backbone
  /** Number of classes K: logits are [N, K, H, W]. */
  numClasses: number
  /** Image channels (3 for RGB, 1 for grey, 4 for RGB-D). Default 3. */
  inChannels?: number
  /** Output stride of the backbone (dilation replaces the last strides). */
  outputStride?: OutputStride
  /** Auxiliary head for deep supervision (training only). Default false. */
  aux?: boolean
  /** Per-channel mean used to normalise uint8 images (after /255). ImageNet's for 3 channels, else 0.5. */
  mean?: number[]
  /** Per-channel std used to normalise uint8 images. ImageNet's for 3 channels, else 0.5. */
  std?: number[]
  /** 'cpu' (default), 'cuda' or 'cuda:N'. */
  device?: Device
  /** Architecture-specific options: see ARCHITECTURES[arch].options and the README. */
  [option: string]: unknown
}

/** The options with every default filled in: what checkpoints store. */
export type ModelConfig = Required<Pick<ModelOptions, 'arch' | 'backbone' | 'numClasses' | 'inChannels' | 'outputStride' | 'aux' | 'mean' | 'std'>> & {
  /** Architecture-specific options, defaults filled (see ARCHITECTURES[arch].options). */
  extra: Record<string, number | boolean | string>
}

export interface ModelInfo {
  arch: Arch
  backbone: Backbone
  numClasses: number
  inChannels: number
  outputStride: number
  device: string
  /** All parameters. */
  parameters: number
  trainableParameters: number
  /** Training steps taken (stored in saved models). */
  steps: number
  training: boolean
}

export interface OptimizerOptions {
  type?: 'sgd' | 'adam' | 'adamw'
  lr?: number
  /** SGD momentum. Default 0.9. */
  momentum?: number
  weightDecay?: number
  nesterov?: boolean
  /** Adam/AdamW betas. Default [0.9, 0.999]. */
  betas?: [number, number]
  eps?: number
}

export interface ScheduleOptions {
  /** Per-iteration learning-rate schedule. Default 'constant'. */
  type?: 'constant' | 'poly' | 'cosine' | 'step'
  /** Iterations the schedule spans (poly, cosine); fit() fills it from epochs x batches. */
  total?: number
  /** Linear warm-up iterations. Default 0. */
  warmup?: number
  /** Learning-rate factor at the first warm-up iteration. Default 0.1. */
  warmupStart?: number
  /** Poly exponent (the papers' 0.9). */
  power?: number
  /** Floor of poly / cosine, as a fraction of the base learning rate. Default 0. */
  minFactor?: number
  /** Step: iterations at which the lr is multiplied by gamma ... */
  milestones?: number[]
  /** ... or every stepSize iterations. */
  stepSize?: number
  /** Step decay factor. Default 0.1. */
  gamma?: number
}

export interface TrainStepOptions {
  /** Label value that never counts in the loss. Default 255. */
  ignoreIndex?: number
  /** The optimizer, created on first use and kept with the model. Default SGD, lr 0.01, momentum 0.9. */
  optimizer?: OptimizerOptions
  /** Weight of auxiliary heads' losses (aux: true, PSPNet, DeepLab v3). Default 0.4 (PSPNet's). */
  auxWeight?: number
  /** Loss of the main output. Default 'ce'. */
  loss?: LossName
  /** Class weights, label smoothing, OHEM and focal settings (see loss()). */
  lossOptions?: Omit<LossOptions, 'ignoreIndex'>
  /** Learning-rate multiplier of the new layers (everything outside the backbone); PSPNet/DeepLab use 10. Default 1. */
  headLrMultiplier?: number
  /** No weight decay on biases and normalisation weights. Default false. */
  noDecayOnNormAndBias?: boolean
  /** Learning-rate schedule, applied per optimizer update. */
  schedule?: ScheduleOptions
  /**
   * 'auto' (default): 'bf16' on a CPU with native bf16 (AMX / AVX512-BF16), 'fp16' on CUDA, else
   * 'fp32'. 'fp32' turns mixed precision off; 'bf16' is autocast (CPU or CUDA); 'fp16' is CUDA
   * autocast with a dynamic loss scaler.
   */
  precision?: 'auto' | 'fp32' | 'bf16' | 'fp16'
  /** Channels-last memory layout (faster convolutions with oneDNN / cuDNN). Default 'auto': on with oneDNN or CUDA; false turns it off. */
  channelsLast?: boolean | 'auto'
  /** Clip the gradients' global L2 norm to this (0 = off). */
  clipGradNorm?: number
  /** Micro-batches per optimizer update (gradient accumulation). Default 1. */
  accumulate?: number
  /** Depth loss of multi-task models: 'berhu' (default) or 'l1'. */
  depthLoss?: 'l1' | 'berhu'
  /** Weight of the depth loss against the segmentation loss. Default 1. */
  depthWeight?: number
}

export interface StepResult {
  /** Total loss of the step (before the update). */
  loss: number
  /** Loss parts: main, and aux / cascade / border / depth when present. */
  parts: Record<string, number>
  /** Optimizer updates taken by this model so far. */
  step: number
  /** Learning rate (first parameter group) used by this step. */
  lr: number
  /** Every parameter group's learning rate (backbone, then head when headLrMultiplier != 1; no-decay groups follow their decay group). */
  lrs: number[]
  /** Whether this call applied an update (false while accumulating). */
  updated: boolean
  /** fp16: the update was skipped because gradients overflowed. */
  skipped: boolean
}

export interface PredictOptions {
  /** 'whole' (default) or 'slide' (overlapping windows, logits averaged). */
  mode?: 'whole' | 'slide'
  /** Sliding-window size [h, w] or one number. Default 512. */
  crop?: number | [number, number]
  /** Sliding-window stride [h, w] or one number. Default 2/3 of the crop. */
  stride?: number | [number, number]
  /** Input scales; probabilities are averaged over every scale (and flip). Default [1]. */
  scales?: number[]
  /** Also run the horizontally flipped image and average. Default false. */
  flip?: boolean
  /** 'labels' (int32 [N, H, W], default), 'probs' or 'logits' (float32 [N, K, H, W]). */
  output?: 'labels' | 'probs' | 'logits'
  /** 'auto' (default: as for training, see TrainStepOptions.precision), 'fp32', 'bf16' (autocast) or 'fp16' (CUDA only). */
  precision?: 'auto' | 'fp32' | 'bf16' | 'fp16'
  /**
   * Channels-last layout. Default 'auto': on with oneDNN or CUDA, except with an explicit
   * `precision: 'fp32'` (off: the reference's NCHW kernels).
   */
  channelsLast?: boolean | 'auto'
  /**
   * Run a copy of the network with each BatchNorm folded into the convolution before it (same
   * results within float rounding, less memory traffic). The copy is rebuilt after the weights
   * change; training and saved files always use the unfolded weights. Default true, except with an
   * explicit `precision: 'fp32'`: asking for fp32 asks for PyTorch's own arithmetic (unfolded, NCHW),
   * so that logits match a PyTorch eval forward to float rounding (1e-4); pass `foldBatchNorm: true`
   * and `channelsLast: true` for fp32 at full speed.
   */
  foldBatchNorm?: boolean
  /**
   * Dense CRF (DeepLab v1/v2) on the averaged probabilities, at the images' colours (float images
   * are un-normalised with the model's mean and std): `true` for the defaults or CrfOptions.
   * Needs output 'labels' or 'probs'. Default false.
   */
  crf?: boolean | CrfOptions
}

const PREDICT_KEYS = ['mode', 'crop', 'stride', 'scales', 'flip', 'output', 'precision', 'channelsLast', 'foldBatchNorm', 'crf'] as const

let backendCache: { mkldnn: boolean, bf16: boolean } | undefined
function cpuFeatures (): { mkldnn: boolean, bf16: boolean } {
  if (backendCache === undefined) {
    const b = binding.backend()
    backendCache = { mkldnn: b.mkldnn, bf16: b.bf16 }
  }
  return backendCache
}

/** What precision 'auto' means on `device`: fp16 on CUDA, bf16 on a CPU with native bf16, else fp32. */
export function autoPrecision (device: string): 'fp32' | 'bf16' | 'fp16' {
  if (device.startsWith('cuda')) return 'fp16'
  return cpuFeatures().bf16 ? 'bf16' : 'fp32'
}

/** What channelsLast 'auto' means on `device`: on with CUDA (cuDNN) and with oneDNN on the CPU. */
export function autoChannelsLast (device: string): boolean {
  return device.startsWith('cuda') ? true : cpuFeatures().mkldnn
}

function resolvePrecision<P extends string> (value: unknown, allowed: readonly P[], device: string): P {
  const p = value === undefined ? 'auto' : v.oneOf('precision', value, ['auto', ...allowed] as const)
  const resolved = (p === 'auto' ? autoPrecision(device) : p) as P
  if (resolved === 'fp16' && !device.startsWith('cuda')) {
    throw new RangeError(`Expected precision 'auto', 'fp32' or 'bf16' on the CPU but received 'fp16' (fp16 autocast needs CUDA)`)
  }
  return resolved
}

function resolveChannelsLast (value: unknown, device: string): boolean {
  if (value === undefined || value === 'auto') return autoChannelsLast(device)
  return v.boolean('channelsLast', value)
}

function pair (name: string, value: unknown, def: [number, number]): [number, number] {
  if (value === undefined) return def
  if (typeof value === 'number') return [v.integer(name, value, 1), value]
  if (Array.isArray(value) && value.length === 2) return [v.integer(`${name}[0]`, value[0], 1), v.integer(`${name}[1]`, value[1], 1)]
  throw typeError(name, 'a positive integer or [h, w]', value)
}

export function resolvePredictOptions (options: unknown, where = 'predict options', extraKeys: readonly string[] = [], device = 'cpu'): Required<Omit<PredictOptions, 'crf'>> & { crf?: ResolvedCrfOptions, crop: [number, number], stride: [number, number], precision: 'fp32' | 'bf16' | 'fp16', channelsLast: boolean } {
  const o = v.optionsObject(where, options)
  v.checkKeys(where, o, [...PREDICT_KEYS, ...extraKeys])
  const mode = o.mode === undefined ? 'whole' : v.oneOf('mode', o.mode, ['whole', 'slide'] as const)
  const crop = pair('crop', o.crop, [512, 512])
  const stride = pair('stride', o.stride, [Math.max(1, Math.floor(crop[0] * 2 / 3)), Math.max(1, Math.floor(crop[1] * 2 / 3))])
  if (stride[0] > crop[0] || stride[1] > crop[1]) throw new RangeError(`Expected stride <= crop (windows must cover the image) but received stride [${stride.join(', ')}] for crop [${crop.join(', ')}]`)
  let scales = [1]
  if (o.scales !== undefined) {
    if (!Array.isArray(o.scales) || o.scales.length === 0) throw typeError('scales', 'a non-empty array of positive numbers', o.scales)
    scales = o.scales.map((s, i) => v.number(`scales[${i}]`, s, 0, 16, true))
  }
  const output = o.output === undefined ? 'labels' : v.oneOf('output', o.output, ['labels', 'probs', 'logits'] as const)
  const crf = o.crf === undefined || o.crf === false ? undefined : resolveCrfOptions(o.crf)
  // An explicit fp32 asks for the reference's arithmetic: unfolded BatchNorm, NCHW (see PredictOptions).
  const exact = o.precision === 'fp32'
  if (crf && output === 'logits') throw new RangeError("Expected output 'labels' or 'probs' with crf (it refines probabilities) but received 'logits'")
  return {
    mode,
    crop,
    stride,
    scales,
    flip: o.flip === undefined ? false : v.boolean('flip', o.flip),
    output,
    precision: resolvePrecision(o.precision, ['fp32', 'bf16', 'fp16'] as const, device),
    channelsLast: exact && (o.channelsLast === undefined || o.channelsLast === 'auto') ? false : resolveChannelsLast(o.channelsLast, device),
    foldBatchNorm: o.foldBatchNorm === undefined ? !exact : v.boolean('foldBatchNorm', o.foldBatchNorm),
    ...(crf ? { crf } : {})
  }
}

export type ImageDType = 'uint8' | 'float32' | 'float16' | 'bfloat16'
export type MaskDType = 'uint8' | 'int32' | 'int64'
export type Images<N extends number = number, H extends number = number, W extends number = number> =
  Tensor<ImageDType, readonly [N, number, H, W]>
export type Masks = Tensor<MaskDType, readonly [number, number, number]>

const MODEL_KEYS = ['arch', 'backbone', 'numClasses', 'inChannels', 'outputStride', 'aux', 'mean', 'std', 'device'] as const
// Stored configurations carry architecture options under `extra`.
const STORED_KEYS = [...MODEL_KEYS, 'extra'] as const

/** Validates user options and fills every default. */
export function resolveModelOptions (options: unknown, stored = false): ModelConfig & { device: string } {
  const o = v.optionsObject('createModel options', options)
  if (options === undefined) throw new TypeError('Expected an options object for createModel but received undefined')
  const arch = v.oneOf('arch', o.arch, Object.keys(ARCHITECTURES) as Arch[])
  const spec = ARCHITECTURES[arch]
  v.checkKeys(`createModel options (arch '${arch}')`, o, [...(stored ? STORED_KEYS : MODEL_KEYS), ...Object.keys(spec.options)])
  const extra: Record<string, number | boolean | string> = {}
  for (const [key, opt] of Object.entries(spec.options)) {
    const value = o[key] ?? (o.extra as Record<string, unknown> | undefined)?.[key]
    if (value === undefined) {
      extra[key] = opt.default
    } else if (opt.type === 'boolean') {
      extra[key] = v.boolean(key, value)
    } else if (opt.type === 'integer') {
      extra[key] = v.integer(key, value, opt.min, opt.max)
    } else if (opt.type === 'number') {
      extra[key] = v.number(key, value, opt.min, opt.max)
    } else {
      extra[key] = v.oneOf(`${key} (for ${arch})`, value, opt.values)
    }
  }
  const backbone = o.backbone === undefined ? spec.defaultBackbone : v.oneOf(`backbone (for ${arch})`, o.backbone, spec.backbones)
  const numClasses = v.integer('numClasses', o.numClasses, 1, 65535)
  const inChannels = o.inChannels === undefined ? 3 : v.integer('inChannels', o.inChannels, 1, 1024)
  const outputStride = o.outputStride === undefined
    ? (spec.backboneOutputStride?.[backbone] ?? spec.defaultOutputStride)
    : v.oneOf(`outputStride (for ${arch})`, o.outputStride, spec.outputStrides)
  const aux = o.aux === undefined ? (spec.defaultAux ?? false) : v.boolean('aux', o.aux)
  if (aux && !spec.aux) throw new RangeError(`Expected aux: false for ${arch} (it has no auxiliary head) but received true`)
  const imagenet = inChannels === 3
  const mean = o.mean === undefined ? (imagenet ? [0.485, 0.456, 0.406] : Array(inChannels).fill(0.5)) : v.numberArray('mean', o.mean, inChannels)
  const std = o.std === undefined ? (imagenet ? [0.229, 0.224, 0.225] : Array(inChannels).fill(0.5)) : v.numberArray('std', o.std, inChannels)
  if (std.some((s) => s <= 0)) throw typeError('std', 'positive numbers', std)
  const device = o.device === undefined ? 'cpu' : v.device('device', o.device)
  if (device.startsWith('cuda')) {
    const b = binding.backend()
    if (!b.cuda) {
      throw new SegtorchError(`device '${device}' requested but CUDA is not available: this segtorch was built against libtorch ${b.libtorch} without CUDA, or no GPU is visible. See the README, "Using a CUDA libtorch".`)
    }
    const index = device.includes(':') ? Number(device.split(':')[1]) : 0
    if (index >= b.cudaDevices) throw new RangeError(`Expected a CUDA device index below ${b.cudaDevices} for device but received '${device}'`)
  }
  return { arch, backbone, numClasses, inChannels, outputStride, aux, mean, std, extra, device }
}

export function checkImages (name: string, images: unknown, inChannels: number): Tensor {
  if (!(images instanceof Tensor)) throw typeError(name, 'a segtorch Tensor', images)
  if (images.disposed) throw new TypeError(`Expected a live Tensor for ${name} but received a disposed one`)
  if (images.shape.length !== 4) throw new RangeError(`Expected ${name} of shape [N, C, H, W] but received shape [${images.shape.join(', ')}]`)
  const [n, c, h, w] = images.shape
  if (c !== inChannels) throw new RangeError(`Expected ${name} with ${inChannels} channel(s) (shape [N, ${inChannels}, H, W]) but received shape [${images.shape.join(', ')}]`)
  if (n < 1 || h < 1 || w < 1) throw new RangeError(`Expected non-empty ${name} but received shape [${images.shape.join(', ')}]`)
  const ok: DType[] = ['uint8', 'float32', 'float16', 'bfloat16']
  if (!ok.includes(images.dtype)) throw typeError(`${name} dtype`, "'uint8', 'float32', 'float16' or 'bfloat16'", images.dtype)
  return images
}

function checkDepth (depth: unknown, images: Tensor): Tensor {
  if (!(depth instanceof Tensor)) throw typeError('depth', 'a segtorch Tensor', depth)
  const [n, , h, w] = images.shape
  const s = depth.shape
  const ok = (s.length === 3 && s[0] === n && s[1] === h && s[2] === w) || (s.length === 4 && s[0] === n && s[1] === 1 && s[2] === h && s[3] === w)
  if (!ok) throw new RangeError(`Expected depth of shape [${n}, ${h}, ${w}] or [${n}, 1, ${h}, ${w}] but received [${s.join(', ')}]`)
  if (depth.dtype !== 'float32' && depth.dtype !== 'uint8' && depth.dtype !== 'int32') throw typeError('depth dtype', "'float32'", depth.dtype)
  return depth
}

export function checkMasks (masks: unknown, images: Tensor): Tensor {
  if (!(masks instanceof Tensor)) throw typeError('masks', 'a segtorch Tensor', masks)
  if (masks.disposed) throw new TypeError('Expected a live Tensor for masks but received a disposed one')
  const ok: DType[] = ['uint8', 'int32', 'int64']
  if (!ok.includes(masks.dtype)) throw typeError('masks dtype', "'uint8', 'int32' or 'int64'", masks.dtype)
  const [n, , h, w] = images.shape
  const s = masks.shape
  if (s.length !== 3 || s[0] !== n || s[1] !== h || s[2] !== w) {
    throw new RangeError(`Expected masks of shape [${n}, ${h}, ${w}] to match images [${images.shape.join(', ')}] but received [${s.join(', ')}]`)
  }
  return masks
}

export const STEP_KEYS = ['ignoreIndex', 'optimizer', 'auxWeight', 'loss', 'lossOptions', 'headLrMultiplier', 'noDecayOnNormAndBias',
  'schedule', 'precision', 'channelsLast', 'clipGradNorm', 'accumulate', 'depthLoss', 'depthWeight'] as const
const SCHEDULE_KEYS = ['type', 'total', 'warmup', 'warmupStart', 'power', 'minFactor', 'milestones', 'stepSize', 'gamma'] as const

export function resolveSchedule (options: unknown): Required<ScheduleOptions> {
  const o = v.optionsObject('schedule', options)
  v.checkKeys('schedule options', o, SCHEDULE_KEYS)
  const type = o.type === undefined ? 'constant' : v.oneOf('schedule.type', o.type, ['constant', 'poly', 'cosine', 'step'] as const)
  const total = o.total === undefined ? 0 : v.integer('schedule.total', o.total, 0)
  if ((type === 'poly' || type === 'cosine') && total < 1) {
    throw new RangeError(`Expected schedule.total (iterations) >= 1 for a ${type} schedule but received ${total}: pass iterations to fit(), or data with a length`)
  }
  let milestones: number[] = []
  if (o.milestones !== undefined) {
    if (!Array.isArray(o.milestones)) throw typeError('schedule.milestones', 'an array of iteration numbers', o.milestones)
    milestones = o.milestones.map((m, i) => v.integer(`schedule.milestones[${i}]`, m, 0))
  }
  const stepSize = o.stepSize === undefined ? 0 : v.integer('schedule.stepSize', o.stepSize, 0) // 0: off
  if (type === 'step' && milestones.length === 0 && stepSize === 0) throw new RangeError('Expected schedule.milestones or schedule.stepSize for a step schedule but received neither')
  return {
    type,
    total,
    warmup: o.warmup === undefined ? 0 : v.integer('schedule.warmup', o.warmup, 0),
    warmupStart: o.warmupStart === undefined ? 0.1 : v.number('schedule.warmupStart', o.warmupStart, 0, 1),
    power: o.power === undefined ? 0.9 : v.number('schedule.power', o.power, 0),
    minFactor: o.minFactor === undefined ? 0 : v.number('schedule.minFactor', o.minFactor, 0, 1),
    milestones,
    stepSize,
    gamma: o.gamma === undefined ? 0.1 : v.number('schedule.gamma', o.gamma, 0, 1)
  }
}
const OPTIMIZER_KEYS = ['type', 'lr', 'momentum', 'weightDecay', 'nesterov', 'betas', 'eps'] as const

export function resolveOptimizer (options: unknown): Required<OptimizerOptions> {
  const o = v.optionsObject('optimizer', options)
  v.checkKeys('optimizer options', o, OPTIMIZER_KEYS)
  const type = o.type === undefined ? 'sgd' : v.oneOf('optimizer.type', o.type, ['sgd', 'adam', 'adamw'] as const)
  const lr = o.lr === undefined ? (type === 'sgd' ? 0.01 : 0.001) : v.number('optimizer.lr', o.lr, 0, Infinity, true)
  const momentum = o.momentum === undefined ? (type === 'sgd' ? 0.9 : 0) : v.number('optimizer.momentum', o.momentum, 0, 1)
  const weightDecay = o.weightDecay === undefined ? (type === 'adamw' ? 0.01 : 0) : v.number('optimizer.weightDecay', o.weightDecay, 0)
  const nesterov = o.nesterov === undefined ? false : v.boolean('optimizer.nesterov', o.nesterov)
  if (nesterov && (type !== 'sgd' || momentum === 0)) {
    throw new RangeError('Expected optimizer.nesterov only with type sgd and momentum > 0 but received nesterov: true with ' + `type '${type}', momentum ${momentum}`)
  }
  let betas: [number, number] = [0.9, 0.999]
  if (o.betas !== undefined) {
    const b = v.numberArray('optimizer.betas', o.betas, 2)
    betas = [v.number('optimizer.betas[0]', b[0], 0, 1), v.number('optimizer.betas[1]', b[1], 0, 1)]
  }
  const eps = o.eps === undefined ? 1e-8 : v.number('optimizer.eps', o.eps, 0, Infinity, true)
  return { type, lr, momentum, weightDecay, nesterov, betas, eps }
}

export function resolveStepOptions (options: unknown, numClasses?: number, where = 'trainStep options', extraKeys: readonly string[] = [], device = 'cpu'): Required<TrainStepOptions> & { precision: 'fp32' | 'bf16' | 'fp16', channelsLast: boolean } {
  const o = v.optionsObject(where, options)
  v.checkKeys(where, o, [...STEP_KEYS, ...extraKeys])
  if (o.lossOptions !== undefined && (o.lossOptions as Record<string, unknown>).ignoreIndex !== undefined) {
    throw new TypeError('Unknown option \'ignoreIndex\' in lossOptions: set ignoreIndex itself')
  }
  const { ignoreIndex: _ignored, ...lossOptions } = resolveLossOptions(o.lossOptions, numClasses)
  return {
    ignoreIndex: o.ignoreIndex === undefined ? 255 : v.integer('ignoreIndex', o.ignoreIndex, -1),
    optimizer: resolveOptimizer(o.optimizer),
    loss: o.loss === undefined ? 'ce' : v.oneOf('loss', o.loss, ['ce', 'ohem', 'dice', 'focal', 'lovasz'] as const),
    lossOptions,
    headLrMultiplier: o.headLrMultiplier === undefined ? 1 : v.number('headLrMultiplier', o.headLrMultiplier, 0, Infinity, true),
    noDecayOnNormAndBias: o.noDecayOnNormAndBias === undefined ? false : v.boolean('noDecayOnNormAndBias', o.noDecayOnNormAndBias),
    schedule: resolveSchedule(o.schedule),
    precision: resolvePrecision(o.precision, ['fp32', 'bf16', 'fp16'] as const, device),
    channelsLast: resolveChannelsLast(o.channelsLast, device),
    clipGradNorm: o.clipGradNorm === undefined ? 0 : v.number('clipGradNorm', o.clipGradNorm, 0),
    accumulate: o.accumulate === undefined ? 1 : v.integer('accumulate', o.accumulate, 1, 1024),
    depthLoss: o.depthLoss === undefined ? 'berhu' : v.oneOf('depthLoss', o.depthLoss, ['l1', 'berhu'] as const),
    depthWeight: o.depthWeight === undefined ? 1 : v.number('depthWeight', o.depthWeight, 0),
    auxWeight: o.auxWeight === undefined ? 0.4 : v.number('auxWeight', o.auxWeight, 0)
  }
}

function checkPath (name: string, p: unknown): string {
  if (typeof p !== 'string' || p.length === 0) throw typeError(name, 'a file path (non-empty string)', p)
  return p
}

const disposeSymbol: symbol = (Symbol as unknown as { dispose?: symbol }).dispose ?? Symbol.for('nodejs.dispose')

/**
 * What our models (Model) and TorchScript ones (ScriptModel) share: the native object and its
 * disposal, predict, evaluate, request batching and its counters.
 */
export abstract class InferenceModel<Native extends NativeInferenceModel = NativeInferenceModel> {
  abstract readonly device: string
  abstract readonly config: Readonly<{ inChannels: number }>
  #native: Native | undefined
  #batching: Required<BatchingOptions> | false = false

  constructor (native: Native) {
    this.#native = native
  }

  /** The options predict and evaluate start from, before validation (`where` names them in errors). */
  protected _inferenceDefaults<T> (where: string, options: T): T {
    return options
  }

  /** Jobs queued or running on this model. */
  get busy (): number {
    return this.#native?.busy ?? 0
  }

  /**
   * Class map [N, H, W] (int32) in eval mode without gradients; with options, as the papers
   * evaluate: sliding windows, multi-scale and flipped inputs (probabilities averaged), or
   * probabilities / logits [N, K, H, W] (float32). Images of different sizes can be passed as an
   * array of single images ([1, C, H, W] each); the result is then an array too.
   */
  predict<N extends number, H extends number, W extends number> (images: Images<N, H, W>, options?: PredictOptions & { output?: 'labels' }): Promise<Tensor<'int32', readonly [N, H, W]>>
  predict<N extends number, H extends number, W extends number> (images: Images<N, H, W>, options: PredictOptions & { output: 'probs' | 'logits' }): Promise<Tensor<'float32', readonly [N, number, H, W]>>
  predict (images: Images[], options?: PredictOptions): Promise<Tensor[]>
  async predict (images: Images | Images[], options?: PredictOptions): Promise<Tensor | Tensor[]> {
    const o = resolvePredictOptions(this._inferenceDefaults('predict options', options), 'predict options', [], this.device)
    const native = this._native()
    if (Array.isArray(images)) {
      const list = images.map((x, i) => checkImages(`images[${i}]`, x, this.config.inChannels))
      const out: Tensor[] = []
      for (const x of list) out.push(Tensor.fromNative(await withStack(() => native.predict(x._native(), o))))
      return out
    }
    const x = checkImages('images', images, this.config.inChannels)
    return Tensor.fromNative(await withStack(() => native.predict(x._native(), o)))
  }

  /** mIoU, accuracies, fwIoU, Dice and the confusion matrix of the model on `data`, accumulated natively. */
  async evaluate (data: BatchSource, options?: PredictOptions & { ignoreIndex?: number }): Promise<Evaluation> {
    return evaluate(this, data, this._inferenceDefaults('evaluate options', options))
  }

  /**
   * Request batching for services: `false` (the default) runs each predict call by itself; with
   * `{ maxBatch, maxDelayMs }` concurrent predict calls with the same image size, dtype and options
   * are collected natively (up to maxBatch images, waiting at most maxDelayMs after the first) and
   * run as one forward; each caller still gets its own result. See the README, "Serving".
   */
  setBatching (options: BatchingOptions | false): void {
    const b = resolveBatching(options)
    this._native().setBatching(b)
    this.#batching = b
  }

  /** The current batching setting (false when off). */
  get batching (): Required<BatchingOptions> | false {
    return this.#batching === false ? false : { ...this.#batching }
  }

  /** Counters of predict calls and of the native forwards that served them. */
  stats (): BatchStats {
    return this._native().stats()
  }

  /** @internal */
  _native (): Native {
    if (this.#native === undefined) throw new Error('this model was disposed')
    return this.#native
  }

  /** Frees the native model. Refused while a job is queued or running. */
  dispose (): void {
    if (this.#native === undefined) return
    this.#native.dispose()
    this.#native = undefined
  }

  [Symbol.dispose] (): void {
    this.dispose()
  }
}

if (disposeSymbol !== Symbol.dispose) {
  (InferenceModel.prototype as unknown as Record<symbol, unknown>)[disposeSymbol] = InferenceModel.prototype.dispose
}

export class Model extends InferenceModel<NativeModel> {
  readonly config: Readonly<ModelConfig>
  readonly device: string
  #info: ModelInfo

  /** @internal use createModel() or loadModel() */
  constructor (native: NativeModel, config: ModelConfig, device: string, info: ModelInfo) {
    super(native)
    this.config = Object.freeze({ ...config })
    this.device = device
    this.#info = info
  }

  /** Architecture, backbone, classes, parameter counts, steps taken. */
  info (): ModelInfo {
    return { ...this.#info }
  }

  /**
   * Logits [N, K, H, W] (float32, on the model's device) for images [N, C, H, W] of any H, W, in
   * the model's current mode (eval by default). With `{ outputs: 'all' }` returns every output by
   * name (`out`, and `aux` in training mode for models with an auxiliary head).
   */
  forward<N extends number, H extends number, W extends number> (images: Images<N, H, W>): Promise<Tensor<'float32', readonly [N, number, H, W]>>
  forward<N extends number, H extends number, W extends number> (images: Images<N, H, W>, options: { outputs?: 'main', precision?: 'fp32' | 'bf16' }): Promise<Tensor<'float32', readonly [N, number, H, W]>>
  forward (images: Images, options: { outputs: 'all', precision?: 'fp32' | 'bf16' }): Promise<Record<string, Tensor<'float32'>>>
  async forward (images: Images, options?: { outputs?: 'main' | 'all', precision?: 'fp32' | 'bf16' }): Promise<unknown> {
    const x = checkImages('images', images, this.config.inChannels)
    const o = v.optionsObject('forward options', options)
    v.checkKeys('forward options', o, ['outputs', 'precision'])
    const all = o.outputs === undefined ? false : v.oneOf('outputs', o.outputs, ['main', 'all'] as const) === 'all'
    const precision = o.precision === undefined ? 'fp32' : v.oneOf('precision', o.precision, ['fp32', 'bf16'] as const)
    const native = this._native()
    const out = await withStack(() => native.forward(x._native(), all, precision))
    if (!all) return Tensor.fromNative(out)
    const result: Record<string, Tensor<'float32'>> = {}
    for (const [k, t] of Object.entries(out)) result[k] = Tensor.fromNative(t as never)
    return result
  }

  /**
   * One SGD/Adam step on a batch: forward in training mode, cross-entropy (ignoring
   * `ignoreIndex`), backward, optimizer update. Labels outside [0, numClasses) other than
   * ignoreIndex are rejected with a RangeError before any update.
   */
  async trainStep (images: Images, masks: Masks, options?: TrainStepOptions & { depth?: Tensor }): Promise<StepResult> {
    const x = checkImages('images', images, this.config.inChannels)
    const y = checkMasks(masks, x)
    const { depth, ...rest } = v.optionsObject('trainStep options', options) as TrainStepOptions & { depth?: Tensor }
    const o = resolveStepOptions(rest, this.config.numClasses, 'trainStep options', [], this.device)
    const d = depth === undefined ? undefined : checkDepth(depth, x)
    const native = this._native()
    const r = await withStack(() => native.trainStep(x._native(), y._native(), o as unknown as Record<string, unknown>, d?._native()))
    this.#info.steps = r.step
    return r as StepResult
  }

  /**
   * Trains on `data` (an array or (async) iterable of `{ images, masks, depth? }` batches, or a
   * function returning a fresh one per epoch) for `epochs` or `iterations`, with validation,
   * checkpoints, resume, abort and callbacks. See FitOptions.
   */
  async fit (data: BatchSource, options?: FitOptions): Promise<History> {
    return fit(this, data, options)
  }

  /** @internal sets steps after a resume */
  _setInfo (info: ModelInfo): void {
    this.#info = info
  }

  /** The backbone's feature maps, shallow to deep (ResNet: layer1..layer4), float32, no gradients. */
  async features (images: Images): Promise<Array<Tensor<'float32'>>> {
    const x = checkImages('images', images, this.config.inChannels)
    const native = this._native()
    const out = await withStack(() => native.features(x._native()))
    return out.map((t) => Tensor.fromNative<'float32', Shape>(t))
  }

  /**
   * Loads a state dict saved by PyTorch (`torch.save(model.state_dict(), file)`), matched by
   * parameter name (torchvision's names where a twin exists). `strict` (default true): any
   * missing, unexpected or mis-shaped key is an error and nothing changes; otherwise the matching
   * tensors are loaded and the rest reported.
   */
  async loadStateDict (path: string, options?: { strict?: boolean, prefix?: string }): Promise<StateDictReport> {
    const p = checkPath('path', path)
    const o = v.optionsObject('loadStateDict options', options)
    v.checkKeys('loadStateDict options', o, ['strict', 'prefix'])
    const strict = o.strict === undefined ? true : v.boolean('strict', o.strict)
    const prefix = o.prefix === undefined ? '' : v.string('prefix', o.prefix)
    await checkRegularFile(p, 'a state dict file')
    const native = this._native()
    return withStack(() => native.loadStateDict(p, strict, prefix))
  }

  /**
   * Writes the weights as a PyTorch state dict (zip format) that Python's `torch.load` reads, with
   * torchvision's parameter names where a torchvision twin exists. Atomic.
   */
  async saveStateDict (path: string): Promise<void> {
    const p = checkPath('path', path)
    const native = this._native()
    await removeStaleTemps(p)
    await withStack(() => native.saveStateDict(p))
  }

  /** Parameter and buffer names with their shapes, as in a state dict. */
  async stateDictShapes (): Promise<Record<string, number[]>> {
    const native = this._native()
    return withStack(() => native.stateDictShapes())
  }

  /**
   * Runs forward, loss and backward in training mode without updating the weights and returns the
   * names of trainable parameters that got no (finite) gradient. Used by the test battery.
   */
  async checkGradients (images: Images, masks: Masks, options?: TrainStepOptions): Promise<string[]> {
    const x = checkImages('images', images, this.config.inChannels)
    const y = checkMasks(masks, x)
    const o = resolveStepOptions(options, this.config.numClasses, 'checkGradients options', [], this.device)
    const native = this._native()
    return withStack(() => native.checkGradients(x._native(), y._native(), o as unknown as Record<string, unknown>))
  }

  /** Switches to training mode (batch-norm statistics update, dropout on, aux outputs). */
  async train (on = true): Promise<void> {
    v.boolean('on', on)
    const native = this._native()
    await withStack(() => native.setTraining(on))
    this.#info.training = on
  }

  /** Switches to evaluation mode. */
  async eval (): Promise<void> {
    return this.train(false)
  }

  /** Saves weights and configuration atomically (temporary file, fsync, rename). */
  async save (path: string): Promise<void> {
    const p = checkPath('path', path)
    const native = this._native()
    await removeStaleTemps(p)
    await withStack(() => native.save(p))
  }

  /** @internal loads weights (and training state); returns the stored fit state ('' if none) */
  async _load (path: string): Promise<string> {
    const native = this._native()
    const fitState = await withStack(() => native.load(path))
    this.#info = await withStack(() => native.info())
    return fitState
  }
}

/** Builds a network (weights initialised as its paper / torchvision does). */
export async function createModel (options: ModelOptions): Promise<Model> {
  const { device, ...config } = resolveModelOptions(options)
  return create(config, device)
}

async function create (config: ModelConfig, device: string, limits?: { maxBuildBytes: number, maxParameters: number }): Promise<Model> {
  const native = new binding.NativeModel()
  const payload = { ...config, device, json: JSON.stringify(config), ...limits }
  const info = await withStack(() => native.init(payload))
  return new Model(native, config, device, info as ModelInfo)
}

/** Options of {@link loadModel}. */
export interface LoadModelOptions {
  device?: Device
  /**
   * Most parameters the network rebuilt from the file's configuration may have (default 500 million,
   * 2 GB of float32). Building it may also allocate no more than twice the file's size plus 64 MiB:
   * a configuration edited to describe a far larger network than the weights the file holds is
   * refused before it takes the machine's memory.
   */
  maxParameters?: number
}

export const DEFAULT_MAX_PARAMETERS = 500_000_000

/** Loads a model saved with `model.save()`, rebuilding its architecture from the stored configuration. */
export async function loadModel (path: string, options?: LoadModelOptions): Promise<Model> {
  const p = checkPath('path', path)
  const o = v.optionsObject('loadModel options', options)
  v.checkKeys('loadModel options', o, ['device', 'maxParameters'])
  const maxParameters = o.maxParameters === undefined ? DEFAULT_MAX_PARAMETERS : v.integer('maxParameters', o.maxParameters, 1)
  await checkRegularFile(p, 'a model file')
  const json = await withStack(() => binding.readModelConfig(p))
  let stored: unknown
  try {
    stored = JSON.parse(json)
  } catch {
    throw new SegtorchError(`${p} holds an unreadable segtorch configuration`)
  }
  if (stored === null || typeof stored !== 'object' || Array.isArray(stored)) {
    throw new SegtorchError(`${p} holds an invalid segtorch configuration: expected a JSON object`)
  }
  let resolved: ReturnType<typeof resolveModelOptions>
  try {
    resolved = resolveModelOptions({ ...(stored as object), device: o.device ?? 'cpu' }, true)
  } catch (err) {
    if (o.device !== undefined && /device/.test((err as Error).message)) throw err
    throw new SegtorchError(`${p} holds an invalid segtorch configuration: ${(err as Error).message}`)
  }
  const { device, ...config } = resolved
  const size = fs.statSync(p).size
  const model = await create(config, device, { maxBuildBytes: 2 * size + 64 * 1024 * 1024, maxParameters })
  try {
    await model._load(p)
  } catch (err) {
    model.dispose()
    throw err
  }
  return model
}

export type { Shape }
