/** Models: create, run, train, save and load segmentation networks. */
import * as fs from 'fs'
import { binding, NativeInferenceModel, NativeModel, StateDictReport } from './binding'
import { SegtorchError, typeError, withStack } from './errors'
import { checkRegularFile, removeStaleTemps } from './files'
import { Arch, ARCHITECTURES, Backbone, OutputStride } from './models'
import { Device, Shape, Tensor } from './tensor'
import { resolveStepOptions, ResolvedStepOptions, StepResult, TrainStepOptions } from './train'
import { BatchSource, evaluate, EvaluateOptions, Evaluation, fit, FitOptions, History } from './fit'
import { checkDepth, checkImages, checkMasks, Images, Masks } from './inputs'
import { PredictOptions, resolvePredictOptions } from './predict'
import * as v from './validate'
import { BatchingOptions, BatchStats, resolveBatching } from './serve'
import { exportOnnx, ExportOnnxOptions, ExportResult, exportTorchScript, ExportTorchScriptOptions } from './export'

// The option types and helpers that lived here, for code that imports them from this module.
export { autoChannelsLast, autoPrecision, autoWinograd, bf16FasterOn, precisionFor } from './precision'
export { checkImages, checkMasks } from './inputs'
export type { ImageDType, Images, Masks, MaskDType } from './inputs'
export { resolvePredictOptions } from './predict'
export type { PredictOptions } from './predict'
export { resolveOptimizer, resolveSchedule, resolveStepOptions, STEP_KEYS } from './train'
export type { OptimizerOptions, ScheduleOptions, StepResult, TrainStepOptions } from './train'

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
  abstract readonly config: Readonly<{ inChannels: number, arch?: string, backbone?: string }>
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
    const o = resolvePredictOptions(this._inferenceDefaults('predict options', options), 'predict options', [], this.device, this.config)
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
  async evaluate (data: BatchSource, options?: EvaluateOptions): Promise<Evaluation> {
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
   * What predict's compiled path (`compile: true`) did so far: graphs compiled (one per input shape,
   * precision and layout), calls that ran one, calls that ran the eager network instead, and why the
   * last of those did.
   */
  async compiledStats (): Promise<{ compiled: number, runs: number, fallbacks: number, error: string }> {
    const native = this._native()
    return await withStack(() => native.compiledStats())
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
    const o = resolveStepOptions(rest, this.config.numClasses, 'trainStep options', [], this.device, this.config)
    const d = depth === undefined ? undefined : checkDepth(depth, x)
    return this._step(x, y, o, d)
  }

  /** @internal one step on checked images, masks and depth with resolved options (fit() checks each batch once) */
  async _step (x: Tensor, y: Tensor, o: ResolvedStepOptions, d?: Tensor): Promise<StepResult> {
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

  /**
   * Data-parallel training for users who call trainStep() themselves (fit() does this itself with
   * `distributed`): after distributed.init(), every rank calls it at the same point; it checks that
   * the model is the same on every rank, copies rank 0's parameters and buffers to all, and from then
   * on each trainStep averages the gradients over the ranks (buckets of `bucketMB`, default 25)
   * before clipping and the update; syncBatchNorm: BatchNorm statistics over every rank's batch.
   * false: this process trains alone again.
   */
  async distribute (options?: { bucketMB?: number, broadcastBuffers?: boolean, syncBatchNorm?: boolean } | false): Promise<void> {
    const native = this._native()
    if (options === false) return withStack(() => native.distribute(null))
    const o = v.optionsObject('distribute options', options)
    v.checkKeys('distribute options', o, ['bucketMB', 'broadcastBuffers', 'syncBatchNorm'])
    const syncBatchNorm = o.syncBatchNorm === undefined ? false : v.boolean('syncBatchNorm', o.syncBatchNorm)
    const bucketMB = o.bucketMB === undefined ? 25 : v.number('bucketMB', o.bucketMB, 0, Infinity, true)
    const broadcastBuffers = o.broadcastBuffers === undefined ? true : v.boolean('broadcastBuffers', o.broadcastBuffers)
    return withStack(() => native.distribute({ bucketBytes: Math.max(1, Math.round(bucketMB * 1024 * 1024)), broadcastBuffers, syncBatchNorm }))
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
    const o = resolveStepOptions(options, this.config.numClasses, 'checkGradients options', [], this.device, this.config)
    const native = this._native()
    return withStack(() => native.checkGradients(x._native(), y._native(), o as unknown as Record<string, unknown>))
  }

  /**
   * Writes the network as a TorchScript module (traced by libtorch in eval mode, BatchNorms folded)
   * that Python's `torch.jit.load` and our `loadTorchScript` read: normalised float32 images
   * [N, C, H, W] in, logits [N, K, H, W] out, any batch and size by default. See the README, "Export".
   */
  async exportTorchScript (file: string, options?: ExportTorchScriptOptions): Promise<ExportResult> {
    return exportTorchScript(this, file, options)
  }

  /**
   * Writes the network as an ONNX model (our converter from the traced graph): normalised float32
   * images [N, C, H, W] in, logits [N, K, H, W] (or labels [N, H, W] int32) out. See the README, "Export".
   */
  async exportOnnx (file: string, options?: ExportOnnxOptions): Promise<ExportResult> {
    return exportOnnx(this, file, options)
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
