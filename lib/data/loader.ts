/**
 * The data loader: an AsyncIterable of batches for `model.fit`, decoding several samples at once
 * (sharp, libvips threads) and transforming each batch natively (on a data thread of its own, so
 * the next batch is prepared while the model trains on this one). Memory stays bounded whatever
 * the data set's size: at most `prefetch` batches' worth of samples are decoded ahead of the
 * consumer, and nothing more is read until it takes a batch.
 */
import * as os from 'os'
import { binding, NativeTensor } from '../binding'
import { typeError, withStack } from '../errors'
import type { Batch } from '../fit'
import { Tensor } from '../tensor'
import * as distributed from '../distributed'
import * as v from '../validate'
import { AnyDataset, DataError, isRandomAccess, Sample } from './datasets'

/** Random (training) transforms. */
export interface AugmentOptions {
  /** Random scale factor range, on the (resized) size. Default [0.5, 2]; false for none. */
  scale?: readonly [number, number] | false
  /** Random crop [height, width]; where the scaled image is smaller, images are padded with `fill` and masks with the ignore index (bottom / right). */
  crop?: readonly [number, number]
  /** Horizontal flip with probability 1/2. Default true. */
  flip?: boolean
  /**
   * Photometric jitter, each factor drawn uniformly in [1 - x, 1 + x] (hue: a shift in [-x, x]
   * turns), applied in this order: brightness, contrast, saturation, hue. `true` is { brightness:
   * 0.25, contrast: 0.5, saturation: 0.5, hue: 0.05 }; a number sets brightness, contrast and
   * saturation. Default false. Saturation and hue need 3-channel images.
   */
  jitter?: boolean | number | { brightness?: number, contrast?: number, saturation?: number, hue?: number }
}

/** Deterministic transforms (evaluation and training alike), applied before `augment`. */
export interface TransformOptions {
  /** Resample every sample to [height, width] (images bilinear, masks nearest). */
  resize?: readonly [number, number]
  /** Without a crop: pad (bottom / right) to at least [height, width], or to the batch's largest sample with 'batch'. */
  pad?: readonly [number, number] | 'batch'
  /** Float32 images (x / 255 - mean) / std instead of uint8 (models normalise uint8 images themselves). */
  normalize?: { mean: readonly number[], std: readonly number[] }
  /** Image padding colour, 0..255 per channel. Default: the normalisation mean, else ImageNet's mean for RGB and 128 for grey. */
  fill?: readonly number[]
}

export interface LoaderOptions extends TransformOptions {
  /** Samples per batch. Default 8. */
  batchSize?: number
  /** A new random order each epoch (seeded). Default false. */
  shuffle?: boolean
  /** Drop the last batch when it is incomplete. Default false. */
  dropLast?: boolean
  /** Random training transforms; omit (or false) for evaluation. */
  augment?: AugmentOptions | false
  /** Batches prepared ahead of the consumer (the memory bound). Default 2. */
  prefetch?: number
  /** Samples decoded at once. Default min(4, max(2, cores)). */
  concurrency?: number
  /** Seeds the order and every random transform; the same seed gives the same batches. Default: random. */
  seed?: number
  /** A sample that cannot be read: 'throw' (default; a DataError with the file and reason) or 'skip' (listed in `skipped`). */
  onError?: 'throw' | 'skip'
  /** Sequential data sets with shuffle: samples held to draw from. Default 16 x batchSize. */
  shuffleBuffer?: number
  /**
   * Distributed training: each rank takes its part of every epoch, as PyTorch's DistributedSampler
   * (the same seeded order on every rank, rank r takes positions r, r + W, r + 2W, ...; padded by
   * repeating the first samples so that every rank has the same number of samples, and batches).
   * 'auto': the rank and world size of distributed.init() (else RANK / WORLD_SIZE); or given;
   * `pad: false` for evaluation (no sample counted twice; ranks may then have different batch counts).
   * The seed defaults to 0 (every rank must shuffle alike); augmentation differs per rank.
   * Random-access data sets only when padding. Default: no sharding.
   */
  shard?: 'auto' | { rank: number, worldSize: number, pad?: boolean }
}

/** The rank, world size and padding of a sharded loader. */
export interface Shard { rank: number, worldSize: number, pad: boolean }

/** What the loader yields: a batch for `model.fit` plus the files it came from. */
export interface LoaderBatch extends Batch {
  /** uint8 [N, C, H, W] (float32 with `normalize`). */
  images: Tensor<'uint8' | 'float32', readonly [number, number, number, number]>
  /** uint8 [N, H, W] class indices, ignore index where unlabelled. Absent for unlabelled data sets. */
  masks: Tensor<'uint8', readonly [number, number, number]>
  /** float32 [N, H, W] when the data set has depth. */
  depth?: Tensor<'float32', readonly [number, number, number]>
  /** The samples' files, in batch order. */
  files: string[]
}

export interface SkippedSample {
  file: string
  reason: string
}

interface NativeAugment {
  scale?: [number, number]
  crop?: [number, number]
  resize?: [number, number]
  pad?: [number, number]
  padToBatch: boolean
  flip: boolean
  brightness: number
  contrast: number
  saturation: number
  hue: number
  ignoreIndex: number
  fill: number[]
  mean?: number[]
  std?: number[]
}

const IMAGENET_MEAN = [0.485, 0.456, 0.406]

function size (name: string, value: unknown): [number, number] {
  if (!Array.isArray(value) || value.length !== 2) throw typeError(name, 'an array [height, width]', value)
  return [v.integer(`${name}[0]`, value[0], 1, 1 << 16), v.integer(`${name}[1]`, value[1], 1, 1 << 16)]
}

/** Validates transform options into the complete plain object native code receives (fill per channel count). */
export function resolveTransforms (options: TransformOptions & { augment?: AugmentOptions | false }, ignoreIndex: number): (channels: number) => NativeAugment {
  const o: NativeAugment = { padToBatch: false, flip: false, brightness: 0, contrast: 0, saturation: 0, hue: 0, ignoreIndex, fill: [] }
  if (options.resize !== undefined) o.resize = size('resize', options.resize)
  if (options.pad === 'batch') o.padToBatch = true
  else if (options.pad !== undefined) o.pad = size('pad', options.pad)
  let mean: number[] | undefined
  if (options.normalize !== undefined) {
    const n = v.optionsObject('normalize', options.normalize)
    v.checkKeys('normalize', n, ['mean', 'std'])
    if (!Array.isArray(n.mean) || n.mean.length < 1) throw typeError('normalize.mean', 'an array of numbers (one per channel)', n.mean)
    mean = v.numberArray('normalize.mean', n.mean, n.mean.length)
    const std = v.numberArray('normalize.std', n.std, mean.length)
    if (std.some((s) => s <= 0)) throw typeError('normalize.std', 'positive numbers', std)
    o.mean = mean
    o.std = std
  }
  let fill: number[] | undefined
  if (options.fill !== undefined) {
    if (!Array.isArray(options.fill) || options.fill.length < 1) throw typeError('fill', 'an array of numbers 0..255 (one per channel)', options.fill)
    fill = options.fill.map((x, i) => v.number(`fill[${i}]`, x, 0, 255))
  }
  const a = options.augment
  if (a !== undefined && a !== false) {
    const g = v.optionsObject('augment', a)
    v.checkKeys('augment options', g, ['scale', 'crop', 'flip', 'jitter'])
    if (g.scale === undefined) o.scale = [0.5, 2]
    else if (g.scale !== false) {
      if (!Array.isArray(g.scale) || g.scale.length !== 2) throw typeError('augment.scale', 'an array [min, max] or false', g.scale)
      const lo = v.number('augment.scale[0]', g.scale[0], 0, 16, true)
      const hi = v.number('augment.scale[1]', g.scale[1], lo, 16)
      o.scale = [lo, hi]
    }
    if (g.crop !== undefined) o.crop = size('augment.crop', g.crop)
    o.flip = g.flip === undefined ? true : v.boolean('augment.flip', g.flip)
    const j = g.jitter
    if (j === true) Object.assign(o, { brightness: 0.25, contrast: 0.5, saturation: 0.5, hue: 0.05 })
    else if (typeof j === 'number') {
      const x = v.number('augment.jitter', j, 0, 1)
      Object.assign(o, { brightness: x, contrast: x, saturation: x })
    } else if (j !== undefined && j !== false) {
      const jo = v.optionsObject('augment.jitter', j)
      v.checkKeys('augment.jitter', jo, ['brightness', 'contrast', 'saturation', 'hue'])
      for (const k of ['brightness', 'contrast', 'saturation'] as const) if (jo[k] !== undefined) o[k] = v.number(`augment.jitter.${k}`, jo[k], 0, 1)
      if (jo.hue !== undefined) o.hue = v.number('augment.jitter.hue', jo.hue, 0, 0.5)
    }
  }
  return (channels: number): NativeAugment => {
    if (o.mean && o.mean.length !== channels) throw new RangeError(`Expected ${channels} values in normalize.mean (one per channel) but received ${o.mean.length}`)
    if (fill && fill.length !== channels) throw new RangeError(`Expected ${channels} values in fill (one per channel) but received ${fill.length}`)
    if ((o.saturation > 0 || o.hue > 0) && channels !== 3) throw new RangeError(`Expected 3-channel images for saturation or hue jitter but received ${channels} channel(s)`)
    const m = mean ?? (channels === 3 ? IMAGENET_MEAN : Array(channels).fill(0.5))
    return { ...o, fill: fill ?? m.map((x) => Math.round(x * 255)) }
  }
}

/** A sample from a user's data set that native code could not read is that sample's error, not the batch's. */
function checkSample (s: Sample): Sample {
  const file = typeof s?.file === 'string' ? s.file : '(unnamed sample)'
  const bad = (why: string): never => { throw new DataError(file, `invalid sample: ${why}`) }
  if (s === null || typeof s !== 'object') bad('expected an object { image, mask, width, height, channels, file }')
  const { width: w, height: h, channels: c } = s
  if (![w, h, c].every((x) => Number.isInteger(x) && x > 0)) bad(`expected positive integer width, height and channels but received ${w}, ${h}, ${c}`)
  if (!(s.image instanceof Uint8Array) || s.image.length !== w * h * c) bad(`expected image to be a Uint8Array of ${w * h * c} bytes (${h} x ${w} x ${c})`)
  if (s.mask !== undefined && (!(s.mask instanceof Uint8Array) || s.mask.length !== w * h)) bad(`expected mask to be a Uint8Array of ${w * h} bytes (${h} x ${w})`)
  if (s.depth !== undefined && (!(s.depth instanceof Float32Array) || s.depth.length !== w * h)) bad(`expected depth to be a Float32Array of ${w * h} values (${h} x ${w})`)
  return s
}

// Seeds: small integer mixing, exact in doubles (< 2^53).
function mix (...xs: number[]): number {
  let h1 = 0x9e3779b9
  let h2 = 0x85ebca6b
  for (const x of xs) {
    const lo = x >>> 0
    const hi = Math.floor(x / 4294967296) >>> 0
    h1 = Math.imul(h1 ^ lo, 0xcc9e2d51)
    h1 = (h1 << 15) | (h1 >>> 17)
    h2 = Math.imul(h2 ^ hi ^ h1, 0x1b873593)
    h2 = (h2 << 13) | (h2 >>> 19)
    h1 = Math.imul(h1 ^ (h2 >>> 16), 0x85ebca6b)
  }
  return (h2 >>> 11) * 4294967296 + (h1 >>> 0)
}

function random (seed: number): () => number {
  let s = seed >>> 0
  return () => {
    s = (s + 0x6d2b79f5) >>> 0
    let t = s
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

function sampleTensors (samples: Sample[]): { images: NativeTensor[], masks?: NativeTensor[], depth?: NativeTensor[] } {
  const images = samples.map((s) => ({ dtype: 'uint8', shape: [s.height, s.width, s.channels], data: s.image }))
  const labelled = samples.filter((s) => s.mask !== undefined).length
  const withDepth = samples.filter((s) => s.depth !== undefined).length
  if (labelled !== 0 && labelled !== samples.length) throw new RangeError('Expected masks for every sample of a batch or for none')
  if (withDepth !== 0 && withDepth !== samples.length) throw new RangeError('Expected depth for every sample of a batch or for none')
  return {
    images,
    masks: labelled ? samples.map((s) => ({ dtype: 'uint8', shape: [s.height, s.width], data: s.mask as Uint8Array })) : undefined,
    depth: withDepth ? samples.map((s) => ({ dtype: 'float32', shape: [s.height, s.width], data: s.depth as Float32Array })) : undefined
  }
}

async function transformSamples (samples: Sample[], transforms: (channels: number) => NativeAugment, seed: number): Promise<LoaderBatch> {
  const t = sampleTensors(samples)
  const r = await withStack(() => binding.augmentBatch(t.images, t.masks, t.depth, transforms(samples[0].channels) as unknown as Record<string, unknown>, seed))
  const out: LoaderBatch = { images: Tensor.fromNative(r.images), masks: (r.masks ? Tensor.fromNative(r.masks) : undefined) as LoaderBatch['masks'], files: samples.map((s) => s.file) }
  if (r.depth) out.depth = Tensor.fromNative(r.depth)
  return out
}

/**
 * Transforms one batch of tensors (uint8 images [N, C, H, W], masks uint8 [N, H, W], depth float32
 * [N, H, W]) as the loader does, e.g. to augment data already in memory.
 */
export async function augment (batch: { images: Tensor, masks?: Tensor, depth?: Tensor }, options: TransformOptions & { augment?: AugmentOptions | false, ignoreIndex?: number, seed?: number } = {}): Promise<{ images: Tensor, masks?: Tensor<'uint8'>, depth?: Tensor<'float32'> }> {
  const o = v.optionsObject('augment options', options)
  v.checkKeys('augment options', o, ['resize', 'pad', 'normalize', 'fill', 'augment', 'ignoreIndex', 'seed'])
  const { images, masks, depth } = batch ?? {}
  if (!(images instanceof Tensor) || images.dtype !== 'uint8' || images.shape.length !== 4) throw typeError('images', 'a uint8 Tensor [N, C, H, W]', images)
  const [n, , h, w] = images.shape
  if (masks !== undefined && (!(masks instanceof Tensor) || masks.dtype !== 'uint8' || masks.shape.join() !== [n, h, w].join())) throw typeError('masks', `a uint8 Tensor [${n}, ${h}, ${w}]`, masks)
  if (depth !== undefined && (!(depth instanceof Tensor) || depth.dtype !== 'float32' || depth.shape.join() !== [n, h, w].join())) throw typeError('depth', `a float32 Tensor [${n}, ${h}, ${w}]`, depth)
  const ignore = o.ignoreIndex === undefined ? 255 : v.integer('ignoreIndex', o.ignoreIndex, 0, 255)
  const seed = o.seed === undefined ? Math.floor(Math.random() * 2 ** 32) : v.integer('seed', o.seed, 0, Number.MAX_SAFE_INTEGER)
  const transforms = resolveTransforms(o as TransformOptions, ignore)(images.shape[1])
  const r = await withStack(() => binding.augmentBatch(images._native(), masks?._native(), depth?._native(), transforms as unknown as Record<string, unknown>, seed))
  return { images: Tensor.fromNative(r.images), masks: r.masks ? Tensor.fromNative(r.masks) : undefined, depth: r.depth ? Tensor.fromNative(r.depth) : undefined }
}

// ---------------------------------------------------------------------------------------------

interface Resolved {
  batchSize: number
  shuffle: boolean
  dropLast: boolean
  prefetch: number
  concurrency: number
  seed: number
  onError: 'throw' | 'skip'
  shuffleBuffer: number
  transforms: (channels: number) => NativeAugment
  shard: 'auto' | Shard | undefined
}

const LOADER_KEYS = ['batchSize', 'shuffle', 'dropLast', 'augment', 'prefetch', 'concurrency', 'seed', 'onError', 'shuffleBuffer', 'resize', 'pad', 'normalize', 'fill', 'shard']

type Outcome = { ok: true, sample: Sample } | { ok: false, error: DataError }
interface Pending { promise: Promise<LoaderBatch>, count: number }

/** One pass over the data set: a starter decoding samples, an assembler forming batches, the consumer. */
class Epoch implements AsyncIterator<LoaderBatch> {
  readonly #ds: AnyDataset
  readonly #o: Resolved
  readonly #epoch: number
  readonly #skipped: SkippedSample[]
  readonly #onEnd: (samples: number) => void
  readonly #shard: Shard | undefined
  #waiters: Array<() => void> = []
  #results = new Map<number, Promise<Outcome>>() // by position, until the assembler takes it
  #positions = 0 // decodes started
  #total = -1 // positions in the pass, once known
  #sourceError: unknown
  #held = 0 // samples decoding or decoded and not yet handed out in a batch
  #inflight = 0
  #ready: Pending[] = []
  #assembled = false
  #stopped = false
  #finished = false
  #samples = 0
  #iterator?: AsyncIterator<unknown>
  /** Largest number of decodes in flight at once and of samples held (for tests and tuning). */
  readonly peak = { inflight: 0, held: 0 }

  constructor (ds: AnyDataset, o: Resolved, epoch: number, skipped: SkippedSample[], onEnd: (samples: number) => void, shard?: Shard) {
    this.#shard = shard
    this.#ds = ds
    this.#o = o
    this.#epoch = epoch
    this.#skipped = skipped
    this.#onEnd = onEnd
    void this.#start().catch((err) => this.#fail(err))
    void this.#assemble().catch((err) => {
      const p = Promise.reject(err)
      p.catch(() => {})
      this.#ready.push({ promise: p, count: 0 })
      this.#assembled = true
      this.#notify()
    })
  }

  #notify (): void {
    const w = this.#waiters
    this.#waiters = []
    for (const f of w) f()
  }

  #changed (): Promise<void> {
    return new Promise((resolve) => this.#waiters.push(resolve))
  }

  #fail (err: unknown): void {
    if (this.#total < 0) this.#total = this.#positions
    this.#sourceError ??= err
    this.#notify()
  }

  /** Yields thunks that decode the pass's samples in order. */
  #source (): () => Promise<(() => Promise<Sample>) | undefined> {
    const ds = this.#ds
    const o = this.#o
    const rng = random(mix(o.seed, this.#epoch, 1))
    const shard = this.#shard
    if (isRandomAccess(ds)) {
      let order = Array.from({ length: ds.length }, (_, i) => i)
      if (o.shuffle) {
        for (let i = order.length - 1; i > 0; i--) {
          const j = Math.floor(rng() * (i + 1))
          ;[order[i], order[j]] = [order[j], order[i]]
        }
      }
      if (shard !== undefined) order = shardOrder(order, shard)
      let p = 0
      return async () => {
        if (p >= order.length) return undefined
        const index = order[p++]
        return () => ds.get(index).then(checkSample, (err) => {
          if (err instanceof DataError) throw err
          let file = `sample ${index}`
          try {
            file = ds.file?.(index) ?? file
          } catch {}
          throw new DataError(file, (err as Error)?.message ?? String(err))
        })
      }
    }
    const it = ds.items()
    this.#iterator = it
    const buffer: Array<{ item: unknown, index: number }> = []
    let count = 0
    let exhausted = false
    const size = o.shuffle ? o.shuffleBuffer : 0
    return async () => {
      while (!exhausted && buffer.length <= size) {
        const r = await it.next()
        if (r.done) exhausted = true
        else if (shard === undefined || count % shard.worldSize === shard.rank) buffer.push({ item: r.value, index: count++ })
        else count++
      }
      if (buffer.length === 0) return undefined
      const k = o.shuffle ? Math.floor(rng() * buffer.length) : 0
      const { item, index } = buffer[k]
      buffer[k] = buffer[buffer.length - 1]
      buffer.pop()
      return () => ds.decode(item, index).then(checkSample)
    }
  }

  async #start (): Promise<void> {
    const next = this.#source()
    const capacity = this.#o.prefetch * this.#o.batchSize
    for (;;) {
      while (!this.#stopped && (this.#held >= capacity || this.#inflight >= this.#o.concurrency)) await this.#changed()
      if (this.#stopped) return
      let thunk: (() => Promise<Sample>) | undefined
      try {
        thunk = await next()
      } catch (err) {
        // Fatal even with onError 'skip': an iterator that threw cannot be resumed.
        this.#fail(new DataError('(the data source)', `its iterator threw: ${(err as Error)?.message ?? String(err)}`, err))
        return
      }
      if (this.#stopped) return
      if (thunk === undefined) {
        this.#total = this.#positions
        this.#notify()
        return
      }
      this.#held++
      this.#inflight++
      this.peak.inflight = Math.max(this.peak.inflight, this.#inflight)
      this.peak.held = Math.max(this.peak.held, this.#held)
      let decode: Promise<Sample>
      try {
        decode = thunk()
      } catch (err) {
        decode = Promise.reject(err)
      }
      this.#results.set(this.#positions++, decode.then(
        (sample): Outcome => ({ ok: true, sample }),
        (err): Outcome => ({ ok: false, error: err instanceof DataError ? err : new DataError('(unknown file)', (err as Error)?.message ?? String(err)) })
      ).finally(() => {
        this.#inflight--
        this.#notify()
      }))
      this.#notify()
    }
  }

  async #assemble (): Promise<void> {
    const o = this.#o
    let current: Sample[] = []
    let batchIndex = 0
    const emit = (samples: Sample[]): void => {
      // (sharded: each rank's augmentation differs)
      const seed = this.#shard === undefined ? mix(o.seed, this.#epoch, 2, batchIndex++) : mix(o.seed, this.#epoch, 2, batchIndex++, 3, this.#shard.rank)
      const promise = transformSamples(samples, o.transforms, seed)
      promise.catch(() => {}) // observed by the consumer; never an unhandled rejection
      this.#ready.push({ promise, count: samples.length })
      this.#samples += samples.length
      this.#notify()
    }
    for (let q = 0; ; q++) {
      while (!this.#stopped && q >= this.#positions && (this.#total < 0 || q < this.#total)) await this.#changed()
      if (this.#stopped) return
      if (this.#total >= 0 && q >= this.#total) break
      const r = await (this.#results.get(q) as Promise<Outcome>)
      this.#results.delete(q)
      if (this.#stopped) return
      if (!r.ok) {
        this.#held--
        if (o.onError === 'skip') {
          this.#skipped.push({ file: r.error.file, reason: r.error.reason })
          this.#notify()
          continue
        }
        this.#ready.push({ promise: Promise.reject(r.error), count: 0 })
        this.#ready[this.#ready.length - 1].promise.catch(() => {})
        this.#assembled = true
        this.#notify()
        return
      }
      current.push(r.sample)
      if (current.length === o.batchSize) {
        emit(current)
        current = []
      }
    }
    if (current.length > 0 && !o.dropLast) emit(current)
    else this.#held -= current.length
    if (this.#sourceError !== undefined) {
      const p = Promise.reject(this.#sourceError)
      p.catch(() => {})
      this.#ready.push({ promise: p, count: 0 })
    }
    this.#assembled = true
    this.#notify()
  }

  async next (): Promise<IteratorResult<LoaderBatch>> {
    while (!this.#stopped && this.#ready.length === 0 && !this.#assembled) await this.#changed()
    if (this.#stopped || this.#ready.length === 0) {
      if (!this.#stopped) this.#end()
      return { done: true, value: undefined }
    }
    const b = this.#ready.shift() as Pending
    let batch: LoaderBatch
    try {
      batch = await b.promise
    } catch (err) {
      this.#stop()
      throw err
    }
    this.#held -= b.count
    this.#notify()
    return { done: false, value: batch }
  }

  async return (): Promise<IteratorResult<LoaderBatch>> {
    this.#stop()
    return { done: true, value: undefined }
  }

  #end (): void {
    if (this.#finished) return
    this.#finished = true
    this.#stopped = true
    this.#onEnd(this.#samples)
  }

  #stop (): void {
    if (this.#stopped) return
    this.#stopped = true
    this.#finished = true
    this.#ready = []
    this.#notify()
    const it = this.#iterator
    if (it?.return) void Promise.resolve().then(() => it.return?.()).catch(() => {})
  }
}

/**
 * Batches from a data set for `model.fit` / `model.evaluate`: `for await (const b of loader)` runs
 * one epoch; iterate again for the next (a new order when shuffling). `length` is the number of
 * batches per epoch (undefined for a sequential data set of unknown length).
 */
export class Loader implements AsyncIterable<LoaderBatch> {
  readonly dataset: AnyDataset
  readonly batchSize: number
  readonly #o: Resolved
  #epoch = 0
  #skipped: SkippedSample[] = []
  #last?: Epoch

  /** @internal use loader() */
  constructor (dataset: AnyDataset, o: Resolved) {
    this.dataset = dataset
    this.batchSize = o.batchSize
    this.#o = o
  }

  /** Batches per epoch (fewer when samples are skipped); sharded: this rank's. */
  get length (): number | undefined {
    let n = this.dataset.length
    if (n === undefined) return undefined
    const shard = resolveShard(this.#o.shard)
    if (shard !== undefined) n = shardSize(n, shard)
    return this.#o.dropLast ? Math.floor(n / this.#o.batchSize) : Math.ceil(n / this.#o.batchSize)
  }

  /** Epochs started. */
  get epoch (): number {
    return this.#epoch
  }

  /** The samples skipped (onError: 'skip') in the current epoch, or the last one once it has ended. */
  get skipped (): readonly SkippedSample[] {
    return this.#skipped
  }

  /** Largest numbers of decodes in flight and of samples held in the last epoch. */
  get peak (): { inflight: number, held: number } {
    return { ...(this.#last?.peak ?? { inflight: 0, held: 0 }) }
  }

  [Symbol.asyncIterator] (): AsyncIterator<LoaderBatch> {
    const epoch = this.#epoch++
    const skipped: SkippedSample[] = []
    this.#skipped = skipped
    const shard = resolveShard(this.#o.shard)
    this.#last = new Epoch(this.dataset, this.#o, epoch, skipped, (samples) => {
      if (skipped.length > 0) {
        const list = skipped.slice(0, 3).map((s) => `${s.file} (${s.reason})`).join('; ')
        process.emitWarning(`segtorch loader: skipped ${skipped.length} unreadable sample(s) in epoch ${epoch} (${samples} used): ${list}${skipped.length > 3 ? '; ...' : ''}`, 'SegtorchDataWarning')
      }
    }, shard)
    return this.#last
  }
}

function checkShard (value: unknown): 'auto' | Shard | undefined {
  if (value === undefined) return undefined
  if (value === 'auto') return 'auto'
  if (!v.isPlainObject(value)) throw typeError('shard', "'auto' or { rank, worldSize, pad? }", value)
  v.checkKeys('shard', value, ['rank', 'worldSize', 'pad'])
  const worldSize = v.integer('shard.worldSize', value.worldSize, 1)
  const rank = v.integer('shard.rank', value.rank, 0, worldSize - 1)
  return { rank, worldSize, pad: value.pad === undefined ? true : v.boolean('shard.pad', value.pad) }
}

/** 'auto': distributed.init()'s rank and world size, else the environment's (torchrun's contract). */
function resolveShard (shard: 'auto' | Shard | undefined): Shard | undefined {
  if (shard !== 'auto') return shard
  if (distributed.isInitialized()) return { rank: distributed.rank, worldSize: distributed.worldSize, pad: true }
  const world = Number(process.env.WORLD_SIZE ?? 1)
  const rank = Number(process.env.RANK ?? 0)
  return Number.isInteger(world) && world >= 1 && Number.isInteger(rank) && rank >= 0 && rank < world ? { rank, worldSize: world, pad: true } : { rank: 0, worldSize: 1, pad: true }
}

/** Samples of `n` that rank `shard.rank` takes (DistributedSampler: padded to a multiple of the world size). */
function shardSize (n: number, shard: Shard): number {
  if (shard.pad) return Math.ceil(n / shard.worldSize)
  return Math.max(0, Math.ceil((n - shard.rank) / shard.worldSize))
}

/** DistributedSampler's slice: the order padded with its first samples, then every worldSize-th from rank. */
function shardOrder (order: number[], shard: Shard): number[] {
  const n = order.length
  const total = shard.pad && n > 0 ? Math.ceil(n / shard.worldSize) * shard.worldSize : n
  const out: number[] = []
  for (let i = shard.rank; i < total; i += shard.worldSize) out.push(order[i % n])
  return out
}

/** A loader over `dataset`; see LoaderOptions. Nothing is read until it is iterated. */
export function loader (dataset: AnyDataset, options?: LoaderOptions): Loader {
  if (dataset === null || typeof dataset !== 'object' || (typeof (dataset as { get?: unknown }).get !== 'function' && typeof (dataset as { items?: unknown }).items !== 'function')) {
    throw typeError('dataset', 'a data set (folder(), camvid(), voc(), cityscapes(), ade20k() or fromAsyncIterable())', dataset)
  }
  const o = v.optionsObject('loader options', options)
  v.checkKeys('loader options', o, LOADER_KEYS)
  const batchSize = o.batchSize === undefined ? 8 : v.integer('batchSize', o.batchSize, 1, 65536)
  const cores = typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length
  const resolved: Resolved = {
    batchSize,
    shuffle: o.shuffle === undefined ? false : v.boolean('shuffle', o.shuffle),
    dropLast: o.dropLast === undefined ? false : v.boolean('dropLast', o.dropLast),
    prefetch: o.prefetch === undefined ? 2 : v.integer('prefetch', o.prefetch, 1, 1024),
    concurrency: o.concurrency === undefined ? Math.min(4, Math.max(2, cores)) : v.integer('concurrency', o.concurrency, 1, 1024),
    seed: o.seed === undefined ? (o.shard === undefined ? Math.floor(Math.random() * 2 ** 32) : 0) : v.integer('seed', o.seed, 0, Number.MAX_SAFE_INTEGER),
    onError: o.onError === undefined ? 'throw' : v.oneOf('onError', o.onError, ['throw', 'skip'] as const),
    shuffleBuffer: o.shuffleBuffer === undefined ? 16 * batchSize : v.integer('shuffleBuffer', o.shuffleBuffer, 1),
    transforms: resolveTransforms(o as TransformOptions & { augment?: AugmentOptions | false }, dataset.ignoreIndex),
    shard: checkShard(o.shard)
  }
  const shard = resolved.shard
  if (shard !== undefined && (shard === 'auto' || shard.pad) && !isRandomAccess(dataset)) {
    throw new TypeError('Expected a random-access data set for shard (padding needs the length): for a sequential one pass shard: { rank, worldSize, pad: false } and make every rank\'s part the same size')
  }
  return new Loader(dataset, resolved)
}
