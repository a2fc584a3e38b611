/** The training loop driven from TypeScript: each step runs natively, the JS thread stays free. */
import * as fs from 'fs'
import * as path from 'path'
import type { NativeModel } from './binding'
import { SegtorchError, typeError, withStack } from './errors'
import { checkRegularFile, makeDir, removeStaleTemps } from './files'
import * as distributed from './distributed'
import type { DistributedOptions } from './distributed'
import { checkDepth, checkImages, checkMasks, Images, Masks } from './inputs'
// Type only (excluded from test/imports.test.ts): model.ts imports this module's functions.
import type { Model } from './model'
import { PredictOptions, resolvePredictOptions } from './predict'
import { Tensor, tensor } from './tensor'
import { Metrics, metrics, resolveStepOptions, StepResult, TrainStepOptions } from './train'
import * as v from './validate'

export interface Batch {
  images: Images
  masks: Masks
  /** Per-pixel depth targets for multi-task models. */
  depth?: Tensor
}

/** Batches: an array, a (re-iterable) iterable or async iterable, or a function giving a fresh one per epoch. */
export type BatchSource = Iterable<Batch> | AsyncIterable<Batch> | (() => Iterable<Batch> | AsyncIterable<Batch>)

export interface StepInfo {
  epoch: number
  /** Optimizer updates so far (all epochs). */
  step: number
  /** Batch index within the epoch. */
  batch: number
  loss: number
  parts: Record<string, number>
  lr: number
  /** Images per second over this batch (native step time plus waiting for data). */
  imagesPerSecond: number
  /** This process's rank (0 unless training is distributed). */
  rank: number
  /** With clipGradNorm > 0: the gradients' global L2 norm before clipping (StepResult.gradNorm). */
  gradNorm?: number
}

export interface Evaluation extends Metrics {
  /** int64 [K, K], rows = labels, columns = predictions. */
  confusion: Tensor<'int64'>
  /** Images evaluated. */
  images: number
}

export interface EpochRecord {
  epoch: number
  /** Optimizer updates at the end of the epoch. */
  steps: number
  /** Mean loss over the epoch's batches, and of each part. */
  loss: number
  lossParts: Record<string, number>
  lr: number
  seconds: number
  imagesPerSecond: number
  /** Samples the data loader skipped this epoch (its onError: 'skip'); absent for other sources. */
  skipped?: number
  validation?: Omit<Evaluation, 'confusion'> & { confusion: number[][] }
}

export interface History {
  epochs: EpochRecord[]
  /** Optimizer updates taken. */
  steps: number
  stopped: 'completed' | 'aborted'
  best?: { metric: 'mIoU', value: number, epoch: number }
}

export interface FitOptions extends TrainStepOptions {
  /** Passes over the data (default 1 unless iterations is given). */
  epochs?: number
  /** Total optimizer updates; stops there (may end mid-epoch). */
  iterations?: number
  /**
   * Seconds of training (validation and checkpoints not counted; a resumed run goes on with what is
   * left); stops after the step that reaches it. Without `iterations` or `schedule.total`, poly and
   * cosine schedules then run over time: at each step the schedule's length is the step count the
   * budget allows at the speed so far, so that the learning rate is lr0 x (1 - elapsed / timeLimit)^power.
   */
  timeLimit?: number
  /** Data evaluated every validateEvery epochs (mIoU etc. in the history). */
  validation?: BatchSource
  validateEvery?: number
  /** Folder for last.segtorch (resumable), best.segtorch and history.json. */
  checkpointDir?: string
  /** Keep best.segtorch by validation mIoU. Default 'mIoU' when validation is given. */
  keepBest?: 'mIoU' | false
  /** Stops after the current step and writes a resumable checkpoint. */
  signal?: AbortSignal
  onStep?: (info: StepInfo) => void | Promise<void>
  onEpoch?: (record: EpochInfo) => void | Promise<void>
  /** A checkpoint folder (or file) written by fit(): continues exactly where it stopped. */
  resume?: string
  /** Seeds libtorch's generator (dropout etc.) for reproducible runs on the CPU. */
  seed?: number
  /**
   * Data-parallel training over the ranks of distributed.init() (called here when it has not been):
   * true, or its options plus the gradient buckets' size (`bucketMB`, default 25) and whether rank
   * 0's buffers are copied to every rank before each forward (`broadcastBuffers`, default true).
   * Each rank trains on its own batches (loader's shard: 'auto'); checkpoints, history.json and best
   * are written by rank 0; validation all-reduces the confusion matrix.
   */
  distributed?: boolean | FitDistributedOptions
}

export interface FitDistributedOptions extends DistributedOptions {
  /**
   * Size of a gradient bucket in MB (default 25, as DDP). Each bucket's all-reduce starts during the
   * backward as soon as its gradients are all computed; smaller buckets start earlier, larger ones
   * make fewer calls.
   */
  bucketMB?: number
  broadcastBuffers?: boolean
  /**
   * Every BatchNorm normalises with the statistics of the global batch (all ranks' samples) in
   * training, as PyTorch's SyncBatchNorm; the state dict is unchanged. Default false.
   */
  syncBatchNorm?: boolean
}

/** What fit() passes to onEpoch: the epoch's record and this process's rank. */
export type EpochInfo = EpochRecord & { rank: number }

interface FitState {
  epoch: number
  batchInEpoch: number
  history: History
  total: number
  /** Seconds spent in training steps so far (timeLimit). */
  trainSeconds?: number
}

const FIT_KEYS = ['epochs', 'iterations', 'timeLimit', 'validation', 'validateEvery', 'checkpointDir', 'keepBest', 'signal', 'onStep', 'onEpoch', 'resume', 'seed', 'distributed'] as const

interface ResolvedFitDistributed { init: DistributedOptions, bucketBytes: number, broadcastBuffers: boolean, syncBatchNorm: boolean }

function resolveFitDistributed (value: unknown): ResolvedFitDistributed | undefined {
  if (value === undefined || value === false) return undefined
  if (value === true) return { init: {}, bucketBytes: 25 * 1024 * 1024, broadcastBuffers: true, syncBatchNorm: false }
  const o = v.optionsObject('distributed', value)
  const { bucketMB, broadcastBuffers, syncBatchNorm, ...init } = o as FitDistributedOptions
  v.checkKeys('distributed options', o, ['backend', 'timeoutMs', 'rank', 'worldSize', 'localRank', 'localWorldSize', 'masterAddr', 'masterPort', 'bucketMB', 'broadcastBuffers', 'syncBatchNorm'])
  return {
    init,
    bucketBytes: Math.max(1, Math.round((bucketMB === undefined ? 25 : v.number('distributed.bucketMB', bucketMB, 0, Infinity, true)) * 1024 * 1024)),
    broadcastBuffers: broadcastBuffers === undefined ? true : v.boolean('distributed.broadcastBuffers', broadcastBuffers),
    syncBatchNorm: syncBatchNorm === undefined ? false : v.boolean('distributed.syncBatchNorm', syncBatchNorm)
  }
}

function iterate (source: BatchSource): Iterable<Batch> | AsyncIterable<Batch> {
  const s = typeof source === 'function' ? source() : source
  if (s === null || typeof s !== 'object' || (!(Symbol.iterator in s) && !(Symbol.asyncIterator in s))) {
    throw typeError('data', 'an array, an iterable or async iterable of { images, masks } batches, or a function returning one', s)
  }
  return s
}

function batchesPerEpoch (source: BatchSource): number | undefined {
  const s = source as unknown as { length?: unknown }
  return typeof source !== 'function' && typeof s.length === 'number' ? s.length : undefined
}

function checkBatch (b: unknown, index: number, inChannels: number): Batch {
  if (b === null || typeof b !== 'object') throw typeError(`batch ${index}`, 'an object { images, masks }', b)
  const { images, masks } = b as Batch
  const x = checkImages(`batch ${index} images`, images, inChannels)
  checkMasks(masks, x)
  return b as Batch
}

async function writeJson (file: string, value: unknown): Promise<void> {
  await removeStaleTemps(file)
  const tmp = `${file}.tmp-${process.pid}`
  await fs.promises.writeFile(tmp, JSON.stringify(value, null, 2))
  await fs.promises.rename(tmp, file)
}

/** What evaluate() needs of a model: ours (Model) or a TorchScript one (ScriptModel). */
export interface EvaluableModel {
  readonly device: string
  readonly config: { readonly inChannels: number, readonly arch?: string, readonly backbone?: string }
  _native (): Pick<NativeModel, 'evalReset' | 'evalUpdate' | 'evalCompute'>
}

export interface EvaluateOptions extends PredictOptions {
  ignoreIndex?: number
  /**
   * Sum the confusion matrix over the ranks, so that every rank gets the metrics of all the data
   * (each rank evaluates its own part: loader's shard). Default: whether distributed.init() has run.
   */
  distributed?: boolean
}

export async function evaluate (model: EvaluableModel, data: BatchSource, options?: EvaluateOptions): Promise<Evaluation> {
  const o = v.optionsObject('evaluate options', options)
  const infer = resolvePredictOptions(o, 'evaluate options', ['ignoreIndex', 'distributed'], model.device, model.config)
  const ignore = o.ignoreIndex === undefined ? 255 : v.integer('ignoreIndex', o.ignoreIndex, -1)
  const across = o.distributed === undefined ? distributed.isInitialized() : v.boolean('distributed', o.distributed)
  if (across && !distributed.isInitialized()) throw new SegtorchError('distributed: not initialised: call distributed.init() before evaluate() with distributed: true')
  const native = model._native()
  await withStack(() => native.evalReset(ignore))
  let images = 0
  let index = 0
  for await (const raw of iterate(data)) {
    const b = checkBatch(raw, index++, model.config.inChannels)
    await withStack(() => native.evalUpdate(b.images._native(), b.masks._native(), infer))
    images += b.images.shape[0]
  }
  if (images === 0 && !across) throw new RangeError('Expected at least one batch to evaluate but the data set is empty')
  const r = await withStack(() => native.evalCompute())
  if (!across) return { ...r, confusion: Tensor.fromNative(r.confusion), images }
  // Every rank's confusion matrix and image count, summed (one all-reduce of K x K + 1 int64).
  const local = Tensor.fromNative(r.confusion) as Tensor<'int64'>
  const k = local.shape[0]
  const flat = new BigInt64Array(k * k + 1)
  flat.set(local.dataSync())
  flat[k * k] = BigInt(images)
  local.dispose()
  const packed = tensor(flat, [k * k + 1])
  const sum = await distributed.allReduce(packed, 'sum', 'all-reduce of the evaluation\'s confusion matrix')
  packed.dispose()
  const all = sum.dataSync() as BigInt64Array
  const total = Number(all[k * k])
  const confusion = tensor(all.slice(0, k * k), [k, k])
  sum.dispose()
  if (total === 0) throw new RangeError('Expected at least one batch to evaluate but the data set is empty on every rank')
  return { ...metrics(confusion), confusion, images: total }
}

function confusionRows (t: Tensor<'int64'>): number[][] {
  const k = t.shape[0]
  const d = t.dataSync()
  return Array.from({ length: k }, (_, i) => Array.from(d.subarray(i * k, (i + 1) * k), Number))
}

export async function fit (model: Model, data: BatchSource, options?: FitOptions): Promise<History> {
  const o = v.optionsObject('fit options', options) as FitOptions & Record<string, unknown>
  const stepKeys: Record<string, unknown> = {}
  for (const [k, val] of Object.entries(o)) if (!(FIT_KEYS as readonly string[]).includes(k)) stepKeys[k] = val
  v.checkKeys('fit options', o, [...FIT_KEYS, ...Object.keys(stepKeys)])
  iterate(data) // validates the source early
  const timeLimit = o.timeLimit === undefined ? Infinity : v.number('timeLimit', o.timeLimit, 0)
  if (!(timeLimit > 0)) throw new RangeError(`Expected timeLimit (seconds) > 0 but received ${String(o.timeLimit)}`)
  const epochs = o.epochs === undefined ? (o.iterations === undefined && !Number.isFinite(timeLimit) ? 1 : Infinity) : v.integer('epochs', o.epochs, 1)
  const iterations = o.iterations === undefined ? Infinity : v.integer('iterations', o.iterations, 1)
  const validateEvery = o.validateEvery === undefined ? 1 : v.integer('validateEvery', o.validateEvery, 1)
  if (o.validation !== undefined) iterate(o.validation)
  const keepBest = o.keepBest === undefined ? (o.validation !== undefined ? 'mIoU' : false) : o.keepBest
  if (keepBest !== false) v.oneOf('keepBest', keepBest, ['mIoU'] as const)
  if (keepBest === 'mIoU' && o.validation === undefined) throw new TypeError("Expected validation data for keepBest: 'mIoU' but received none")
  const dir = o.checkpointDir === undefined ? undefined : v.string('checkpointDir', o.checkpointDir)
  if (o.signal !== undefined && !(o.signal instanceof AbortSignal)) throw typeError('signal', 'an AbortSignal', o.signal)
  if (o.onStep !== undefined && typeof o.onStep !== 'function') throw typeError('onStep', 'a function', o.onStep)
  if (o.onEpoch !== undefined && typeof o.onEpoch !== 'function') throw typeError('onEpoch', 'a function', o.onEpoch)
  const seed = o.seed === undefined ? undefined : v.integer('seed', o.seed, 0, Number.MAX_SAFE_INTEGER)
  const dist = resolveFitDistributed(o.distributed)

  // Schedule length: iterations, or epochs x batches when the data has a length.
  const perEpoch = batchesPerEpoch(data)
  const schedule = { ...(stepKeys.schedule as object ?? {}) } as Record<string, unknown>
  const accumulate = typeof stepKeys.accumulate === 'number' ? stepKeys.accumulate : 1
  // With only a time limit, a poly / cosine schedule runs over time (its length re-estimated every step).
  const overTime = schedule.total === undefined && Number.isFinite(timeLimit) && !Number.isFinite(iterations) && !(perEpoch !== undefined && Number.isFinite(epochs))
  if (schedule.total === undefined) {
    if (Number.isFinite(iterations)) schedule.total = iterations
    else if (perEpoch !== undefined && Number.isFinite(epochs)) schedule.total = Math.max(1, Math.floor(perEpoch * epochs / accumulate))
    else if (overTime) schedule.total = 1 << 30 // replaced before every step below
  }
  const step = resolveStepOptions({ ...stepKeys, schedule }, model.config.numClasses, 'fit options', FIT_KEYS, model.device, model.config)

  let state: FitState = { epoch: 0, batchInEpoch: 0, history: { epochs: [], steps: model.info().steps, stopped: 'completed' }, total: step.schedule.total ?? 0 }
  if (o.resume !== undefined) {
    const r = v.string('resume', o.resume)
    const file = fs.existsSync(r) && fs.statSync(r).isDirectory() ? path.join(r, 'last.segtorch') : r
    await checkRegularFile(file, 'a checkpoint file to resume from')
    const stored = await model._load(file)
    if (!stored) throw new SegtorchError(`${file} holds no training state to resume from (it was not written by fit())`)
    state = JSON.parse(stored) as FitState
    state.history.stopped = 'completed'
  } else if (seed !== undefined) {
    const native = model._native()
    await withStack(() => native.seed(seed))
  }
  const native = model._native()
  if (dist !== undefined) {
    if (!distributed.isInitialized()) await distributed.init(dist.init)
    // Collective: the same model on every rank (checked), rank 0's weights copied to all.
    await withStack(() => native.distribute({ bucketBytes: dist.bucketBytes, broadcastBuffers: dist.broadcastBuffers, syncBatchNorm: dist.syncBatchNorm }))
  }
  const rank = dist === undefined ? 0 : distributed.rank
  const main = rank === 0 // writes checkpoints and history.json
  if (dir !== undefined && main) await makeDir(dir, 'checkpointDir')

  // Distributed: every rank stops after the same step (an abort on any rank; timeLimit on the
  // slowest rank's clock), with one all-reduce per step, and only when there is something to agree on.
  let stopAll = false
  const agreeEachStep = dist !== undefined && (o.signal !== undefined || Number.isFinite(timeLimit))
  const stopRequested = (): boolean => dist !== undefined ? stopAll : o.signal?.aborted === true

  const saveLast = async (): Promise<void> => {
    if (dir === undefined || !main) return
    const p = path.join(dir, 'last.segtorch')
    await removeStaleTemps(p)
    await withStack(() => native.save(p, JSON.stringify(state)))
    await writeJson(path.join(dir, 'history.json'), state.history)
  }

  const history = state.history
  state.trainSeconds = state.trainSeconds ?? 0
  const firstStep = history.steps
  let lastTotal: number | undefined
  let done = history.steps >= iterations || state.trainSeconds >= timeLimit
  while (!done && state.epoch < epochs) {
    const epoch = state.epoch
    const t0 = performance.now()
    let sum = 0
    let count = 0
    let images = 0
    let lr = 0
    const parts: Record<string, number> = {}
    let index = 0
    let last = performance.now()
    let tPrev = performance.now()
    for await (const raw of iterate(data)) {
      if (index < state.batchInEpoch) { index++; tPrev = performance.now(); continue } // resumed mid-epoch: skip what was done
      const b = checkBatch(raw, index, model.config.inChannels)
      if (overTime) {
        // steps the whole budget allows at the speed so far; before any step, a guess that keeps lr0
        const spent = state.trainSeconds
        const updates = history.steps - firstStep
        // (floored, and never more than the last length scaled by k / (k - 1): the progress k / total
        // is then at least elapsed / timeLimit and never goes back when a step is faster than the last)
        const k = history.steps
        let total = updates > 0 && spent > 0 ? Math.max(k + 1, Math.floor(k * timeLimit / spent)) : Math.max(1, k * 1000 + 1000)
        if (lastTotal !== undefined && k > 1) total = Math.max(k + 1, Math.min(total, Math.floor(lastTotal * k / (k - 1))))
        step.schedule.total = lastTotal = total
      }
      // Checked once: the batch by checkBatch, the options before the loop.
      const r: StepResult = await model._step(b.images, b.masks, step, b.depth ? checkDepth(b.depth, b.images) : undefined)
      const tStep = performance.now()
      state.trainSeconds += (tStep - tPrev) / 1000 // wall time of the training loop: waiting for data counts
      tPrev = tStep
      index++
      state.batchInEpoch = index
      history.steps = r.step
      sum += r.loss
      count++
      images += b.images.shape[0]
      lr = r.lr
      for (const [k, val] of Object.entries(r.parts)) parts[k] = (parts[k] ?? 0) + val
      const now = performance.now()
      if (o.onStep) await o.onStep({ epoch, step: r.step, batch: index - 1, loss: r.loss, parts: r.parts, lr: r.lr, imagesPerSecond: b.images.shape[0] / ((now - last) / 1000), rank, ...(r.gradNorm !== undefined ? { gradNorm: r.gradNorm } : {}) })
      last = now
      // After onStep, so that an abort from it stops every rank after this step, as on one process.
      if (agreeEachStep) {
        const flags = tensor(new Float32Array([o.signal?.aborted === true ? 1 : 0, state.trainSeconds]), [2])
        const agreed = await distributed.allReduce(flags, 'max', `agreeing on stopping after step ${r.step}`)
        const a = agreed.dataSync() as Float32Array
        stopAll = a[0] > 0
        state.trainSeconds = a[1]
        flags.dispose()
        agreed.dispose()
      }
      if (history.steps >= iterations || state.trainSeconds >= timeLimit) { done = true; break }
      if (stopRequested()) break
    }
    if (stopRequested() && !done) {
      history.stopped = 'aborted'
      await saveLast()
      return history
    }
    if (index === 0 || (count === 0 && state.batchInEpoch === 0)) {
      throw new RangeError(`Expected training data but epoch ${epoch} yielded no batches (an iterator can be consumed only once: pass an array, a re-iterable object or a function returning a fresh iterable)`)
    }
    const seconds = (performance.now() - t0) / 1000
    const record: EpochRecord = {
      epoch,
      steps: history.steps,
      loss: count ? sum / count : NaN,
      lossParts: Object.fromEntries(Object.entries(parts).map(([k, val]) => [k, val / Math.max(1, count)])),
      lr,
      seconds,
      imagesPerSecond: images / seconds
    }
    const skipped = (data as { skipped?: unknown }).skipped
    if (Array.isArray(skipped)) record.skipped = skipped.length
    if (o.validation !== undefined && ((epoch + 1) % validateEvery === 0 || done || epoch + 1 === epochs)) {
      const e = await evaluate(model, o.validation, { ignoreIndex: step.ignoreIndex, distributed: dist !== undefined })
      record.validation = { ...e, confusion: confusionRows(e.confusion) }
      e.confusion.dispose()
      if (keepBest === 'mIoU' && !Number.isNaN(e.mIoU) && (history.best === undefined || e.mIoU > history.best.value)) {
        history.best = { metric: 'mIoU', value: e.mIoU, epoch }
        if (dir !== undefined && main) {
          await removeStaleTemps(path.join(dir, 'best.segtorch'))
          await withStack(() => native.save(path.join(dir, 'best.segtorch')))
        }
      }
    }
    history.epochs.push(record)
    state.epoch = epoch + 1
    state.batchInEpoch = 0
    await saveLast()
    if (o.onEpoch) await o.onEpoch({ ...record, rank })
    if (stopRequested() && !done && state.epoch < epochs) {
      history.stopped = 'aborted'
      return history
    }
  }
  model._setInfo({ ...model.info(), steps: history.steps })
  return history
}
