/** Losses and metrics, computed natively (the same code the training loop uses). */
import { binding } from './binding'
import { typeError, withStack } from './errors'
import { Tensor } from './tensor'
import * as v from './validate'

export type LossName = 'ce' | 'ohem' | 'dice' | 'focal' | 'lovasz'

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
  const n = v.oneOf('loss', name, ['ce', 'ohem', 'dice', 'focal', 'lovasz'] as const)
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
