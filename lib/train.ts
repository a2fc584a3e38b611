/**
 * Training: the options of a training step (optimizer, schedule, loss, precision) and their
 * resolution (every default filled: what the native step receives), and the losses and metrics,
 * computed natively (the same code the training loop uses).
 */
import { binding } from './binding'
import { typeError, withStack } from './errors'
import { Arch, ARCHITECTURES, ArchSpec } from './models'
import { NetworkKind, resolveChannelsLast, resolvePrecision, resolveTrainingWinograd } from './precision'
import { Tensor } from './tensor'
import * as v from './validate'

/** The losses of the main output, by name (native/train/losses.cc SegmentationLoss). */
export const LOSS_NAMES = ['ce', 'ohem', 'dice', 'focal', 'lovasz'] as const
export type LossName = typeof LOSS_NAMES[number]

export interface LossOptions {
  /** Label value that never counts. Default 255. */
  ignoreIndex?: number
  /** One weight per class. */
  classWeights?: number[]
  /** Cross-entropy label smoothing in [0, 1). Default 0. */
  labelSmoothing?: number
  /** OHEM: pixels whose true-class probability is at most this are kept. Default 0.7. */
  ohemThreshold?: number
  /** OHEM: at least this many (the hardest) pixels are kept. Default 100000. */
  ohemMinKept?: number
  /** Focal loss exponent. Default 2. */
  focalGamma?: number
  /** Dice smoothing term. Default 1. */
  diceSmooth?: number
}

const LOSS_KEYS = ['ignoreIndex', 'classWeights', 'labelSmoothing', 'ohemThreshold', 'ohemMinKept', 'focalGamma', 'diceSmooth'] as const

export function resolveLossOptions (options: unknown, numClasses?: number): Required<Omit<LossOptions, 'classWeights'>> & { classWeights?: number[] } {
  const o = v.optionsObject('loss options', options)
  v.checkKeys('loss options', o, LOSS_KEYS)
  let classWeights: number[] | undefined
  if (o.classWeights !== undefined) {
    if (!Array.isArray(o.classWeights)) throw typeError('classWeights', 'an array of non-negative numbers', o.classWeights)
    classWeights = numberList('classWeights', o.classWeights, numClasses)
  }
  return {
    ignoreIndex: o.ignoreIndex === undefined ? 255 : v.integer('ignoreIndex', o.ignoreIndex, -1),
    labelSmoothing: o.labelSmoothing === undefined ? 0 : v.number('labelSmoothing', o.labelSmoothing, 0, 0.999),
    ohemThreshold: o.ohemThreshold === undefined ? 0.7 : v.number('ohemThreshold', o.ohemThreshold, 0, 1),
    ohemMinKept: o.ohemMinKept === undefined ? 100000 : v.integer('ohemMinKept', o.ohemMinKept, 0),
    focalGamma: o.focalGamma === undefined ? 2 : v.number('focalGamma', o.focalGamma, 0),
    diceSmooth: o.diceSmooth === undefined ? 1 : v.number('diceSmooth', o.diceSmooth, 0),
    ...(classWeights ? { classWeights } : {})
  }
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
  /**
   * Channels-last memory layout (faster convolutions with oneDNN / cuDNN). Default 'auto': on with oneDNN
   * or CUDA, except in fp32 on a CPU without native bf16, where most networks train faster in NCHW
   * (which ones depends on the libtorch version: README, Speed defaults); false turns it off.
   */
  channelsLast?: boolean | 'auto'
  /**
   * fp32 channels-last 3x3 convolutions (stride 1, padding = dilation, 64 channels or more in and out,
   * maps at least 8 dilations high and wide) compute their forward and their input gradient by
   * segtorch's Winograd F(4x4, 3x3) (4x fewer multiplications; the weight gradient stays oneDNN's),
   * as predict's `winograd` does in fp32. Gradients within about 1e-5 relative of the direct
   * convolution's. Default 'auto': on in fp32 ('auto' precision, not an explicit 'fp32') with
   * channels-last on a CPU with AVX-512 and libtorch 2.x (measured 1.2-1.3x faster steps for U-Net and
   * DeepLab v1 on an Intel AVX512-BF16 CPU without AMX, where 'auto' trains in fp32: bench/README.md,
   * "fp32 Winograd"); off elsewhere. true needs a CPU, fp32 and channels-last.
   */
  winograd?: boolean | 'auto'
  /**
   * Clip the gradients' global L2 norm to this (0 = off). Default 0, except 1 for `gcn`: its head has
   * no normalisation (the paper's), and from scratch at the default SGD 0.01 / momentum 0.9 it diverges
   * within 4-10 steps (PyTorch's twin too); clipped at 1 it trains (README, Architectures).
   */
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
  /**
   * With `clipGradNorm` > 0, on the steps that update: the gradients' global L2 norm before clipping (what
   * PyTorch's `clip_grad_norm_` returns); they were scaled by clipGradNorm / (gradNorm + 1e-6) where that is below 1.
   */
  gradNorm?: number
}

export const STEP_KEYS = ['ignoreIndex', 'optimizer', 'auxWeight', 'loss', 'lossOptions', 'headLrMultiplier', 'noDecayOnNormAndBias',
  'schedule', 'precision', 'channelsLast', 'winograd', 'clipGradNorm', 'accumulate', 'depthLoss', 'depthWeight'] as const
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

/** clipGradNorm's default per network: its architecture's `defaultClipGradNorm` (1 for GCN, see TrainStepOptions.clipGradNorm), else 0 (off). */
export function autoClipGradNorm (net?: NetworkKind): number {
  const spec: ArchSpec | undefined = net?.arch !== undefined && Object.hasOwn(ARCHITECTURES, net.arch) ? ARCHITECTURES[net.arch as Arch] : undefined
  return spec?.defaultClipGradNorm ?? 0
}

/** Step options with every default filled: what the native step receives. */
export type ResolvedStepOptions = Required<TrainStepOptions> & { precision: 'fp32' | 'bf16' | 'fp16', channelsLast: boolean, winograd: boolean }

export function resolveStepOptions (options: unknown, numClasses?: number, where = 'trainStep options', extraKeys: readonly string[] = [], device = 'cpu', net?: NetworkKind): ResolvedStepOptions {
  const o = v.optionsObject(where, options)
  v.checkKeys(where, o, [...STEP_KEYS, ...extraKeys])
  if (o.lossOptions !== undefined && (o.lossOptions as Record<string, unknown>).ignoreIndex !== undefined) {
    throw new TypeError('Unknown option \'ignoreIndex\' in lossOptions: set ignoreIndex itself')
  }
  const { ignoreIndex: _ignored, ...lossOptions } = resolveLossOptions(o.lossOptions, numClasses)
  const precision = resolvePrecision(o.precision, ['fp32', 'bf16', 'fp16'] as const, device, 'train', net)
  const channelsLast = resolveChannelsLast(o.channelsLast, device, 'train', net, precision)
  return {
    ignoreIndex: o.ignoreIndex === undefined ? 255 : v.integer('ignoreIndex', o.ignoreIndex, -1),
    optimizer: resolveOptimizer(o.optimizer),
    loss: o.loss === undefined ? 'ce' : v.oneOf('loss', o.loss, LOSS_NAMES),
    lossOptions,
    headLrMultiplier: o.headLrMultiplier === undefined ? 1 : v.number('headLrMultiplier', o.headLrMultiplier, 0, Infinity, true),
    noDecayOnNormAndBias: o.noDecayOnNormAndBias === undefined ? false : v.boolean('noDecayOnNormAndBias', o.noDecayOnNormAndBias),
    schedule: resolveSchedule(o.schedule),
    precision,
    channelsLast,
    winograd: resolveTrainingWinograd(o.winograd, device, precision, { exact: o.precision === 'fp32', channelsLast }),
    clipGradNorm: o.clipGradNorm === undefined ? autoClipGradNorm(net) : v.number('clipGradNorm', o.clipGradNorm, 0),
    accumulate: o.accumulate === undefined ? 1 : v.integer('accumulate', o.accumulate, 1, 1024),
    depthLoss: o.depthLoss === undefined ? 'berhu' : v.oneOf('depthLoss', o.depthLoss, ['l1', 'berhu'] as const),
    depthWeight: o.depthWeight === undefined ? 1 : v.number('depthWeight', o.depthWeight, 0),
    auxWeight: o.auxWeight === undefined ? 0.4 : v.number('auxWeight', o.auxWeight, 0)
  }
}

function numberList (name: string, a: unknown[], length?: number): number[] {
  if (a.some((x) => typeof x !== 'number' || !Number.isFinite(x) || x < 0)) throw typeError(name, 'an array of non-negative numbers', a)
  if (length !== undefined && a.length !== length) throw new RangeError(`Expected ${length} entries (one per class) for ${name} but received ${a.length}`)
  return a as number[]
}

function checkPair (logits: unknown, labels: unknown): [Tensor, Tensor] {
  if (!(logits instanceof Tensor)) throw typeError('logits', 'a segtorch Tensor', logits)
  if (!(labels instanceof Tensor)) throw typeError('labels', 'a segtorch Tensor', labels)
  const [n, , h, w] = logits.shape
  if (logits.shape.length !== 4) throw new RangeError(`Expected logits of shape [N, K, H, W] but received [${logits.shape.join(', ')}]`)
  if (labels.shape.length !== 3 || labels.shape[0] !== n || labels.shape[1] !== h || labels.shape[2] !== w) {
    throw new RangeError(`Expected labels of shape [${n}, ${h}, ${w}] but received [${labels.shape.join(', ')}]`)
  }
  return [logits, labels]
}

/** A segmentation loss of logits [N, K, H, W] against labels [N, H, W]. */
export async function loss (name: LossName, logits: Tensor, labels: Tensor, options?: LossOptions): Promise<number> {
  const n = v.oneOf('loss', name, LOSS_NAMES)
  const [x, y] = checkPair(logits, labels)
  const o = resolveLossOptions(options, x.shape[1])
  return withStack(() => binding.segmentationLoss(n, x._native(), y._native(), o))
}

/** Depth regression loss on valid pixels (target > 0): 'l1' or 'berhu'. */
export async function depthLoss (pred: Tensor, target: Tensor, type: 'l1' | 'berhu' = 'berhu'): Promise<number> {
  if (!(pred instanceof Tensor)) throw typeError('pred', 'a segtorch Tensor', pred)
  if (!(target instanceof Tensor)) throw typeError('target', 'a segtorch Tensor', target)
  const t = v.oneOf('type', type, ['l1', 'berhu'] as const)
  return withStack(() => binding.depthLoss(pred._native(), target._native(), t))
}

export interface Metrics {
  /** Mean IoU over classes present in the labels or the predictions. */
  mIoU: number
  pixelAccuracy: number
  /** Mean per-class accuracy (recall) over classes present in the labels. */
  meanAccuracy: number
  /** Frequency-weighted IoU. */
  fwIoU: number
  meanDice: number
  /** NaN for classes absent from both labels and predictions. */
  perClassIoU: number[]
  perClassAccuracy: number[]
  perClassDice: number[]
}

/** Confusion matrix [K, K] (int64; rows = labels, columns = predictions); ignoreIndex never counts. */
export async function confusionMatrix (predictions: Tensor, labels: Tensor, numClasses: number, ignoreIndex = 255): Promise<Tensor<'int64'>> {
  if (!(predictions instanceof Tensor)) throw typeError('predictions', 'a segtorch Tensor', predictions)
  if (!(labels instanceof Tensor)) throw typeError('labels', 'a segtorch Tensor', labels)
  if (predictions.shape.join() !== labels.shape.join()) {
    throw new RangeError(`Expected predictions and labels of the same shape but received [${predictions.shape.join(', ')}] and [${labels.shape.join(', ')}]`)
  }
  const k = v.integer('numClasses', numClasses, 1, 65535)
  const ignore = v.integer('ignoreIndex', ignoreIndex, -1)
  return Tensor.fromNative(await withStack(() => binding.confusionMatrix(predictions._native(), labels._native(), k, ignore)))
}

/**
 * mIoU, pixel accuracy, mean class accuracy, frequency-weighted IoU, Dice from a confusion
 * matrix. Classes absent from both labels and predictions are excluded from the means.
 */
export function metrics (confusion: Tensor<'int64'>): Metrics {
  if (!(confusion instanceof Tensor) || confusion.dtype !== 'int64' || confusion.shape.length !== 2 || confusion.shape[0] !== confusion.shape[1]) {
    throw typeError('confusion', 'an int64 Tensor of shape [K, K]', confusion)
  }
  return binding.metricsFromConfusion(confusion._native())
}
