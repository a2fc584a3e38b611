/**
 * The only file that loads the native addon. On failure it throws one SegtorchLoadError that says
 * why and what to do.
 */
import * as os from 'os'
import * as path from 'path'
import { SegtorchLoadError } from './errors'

/* eslint-disable @typescript-eslint/no-explicit-any */
export interface NativeTensor {
  dtype: string
  shape: number[]
  device?: string
  data?: ArrayBufferView
  buffer?: ArrayBuffer
  handle?: unknown
}

/** What both native model classes have: predict, streaming evaluation, request batching, dispose. */
export interface NativeInferenceModel {
  predict(images: NativeTensor, options?: Record<string, unknown>): Promise<NativeTensor>
  evalReset(ignoreIndex: number): Promise<void>
  evalUpdate(images: NativeTensor, masks: NativeTensor, options?: Record<string, unknown>): Promise<void>
  evalCompute(): Promise<any>
  setBatching(options: { maxBatch: number, maxDelayMs: number } | false): void
  stats(): import('./serve').BatchStats
  dispose(): void
  readonly busy: number
}

export interface NativeModel extends NativeInferenceModel {
  init(config: Record<string, unknown>): Promise<any>
  forward(images: NativeTensor, all: boolean, precision?: string): Promise<any>
  trainStep(images: NativeTensor, masks: NativeTensor, options: Record<string, unknown>, depth?: NativeTensor): Promise<any>
  setTraining(on: boolean): Promise<void>
  save(path: string, fitState?: string): Promise<void>
  load(path: string): Promise<string>
  info(): Promise<any>
  compiledStats(): Promise<{ compiled: number, runs: number, fallbacks: number, error: string }>
  features(images: NativeTensor): Promise<NativeTensor[]>
  seed(seed: number): Promise<void>
  checkGradients(images: NativeTensor, masks: NativeTensor, options: Record<string, unknown>): Promise<string[]>
  loadStateDict(path: string, strict: boolean, prefix: string): Promise<StateDictReport>
  saveStateDict(path: string): Promise<void>
  stateDictShapes(): Promise<Record<string, number[]>>
  exportTorchScript(path: string, options: { height: number, width: number, dynamic: boolean, precision: 'fp32' | 'bf16' }, metadata: string): Promise<unknown>
  exportGraph(options: { height: number, width: number, dynamic: boolean, precision: 'fp32' }): Promise<unknown>
  distribute(options: { bucketBytes: number, broadcastBuffers: boolean, syncBatchNorm: boolean } | null): Promise<void>
}

export interface NativeScriptModel extends NativeInferenceModel {
  load(config: Record<string, unknown>): Promise<{ device: string, numClasses: number, inChannels: number, parameters: number }>
}

export interface StateDictReport {
  missing: string[]
  unexpected: string[]
  mismatched: string[]
  loaded: number
}

/** The cache of large CPU blocks that segtorch keeps for reuse (see `cpuMemoryStats()`). */
export interface CpuMemoryStats {
  /** The most it keeps for reuse (SEGTORCH_CPU_CACHE_MB; default an eighth of the memory, at most 2 GiB; 0: off). */
  limitBytes: number
  /** Freed blocks kept for reuse now. */
  cachedBytes: number
  /** Large blocks (>= 128 KiB) held by tensors now. */
  inUseBytes: number
  /** Large requests served from the cache. */
  hits: number
  /** Large requests served by the system allocator. */
  misses: number
}

export interface Binding {
  shutdown(): void
  cpuMemoryStats(): CpuMemoryStats
  emptyCpuCache(): void
  backend(): { libtorch: string, cuda: boolean, cudaDevices: number, mkldnn: boolean, threads: number, bf16: boolean, prepack: boolean, winograd: boolean, cpu: { model: string, isa: 'AMX' | 'AVX512-BF16' | 'AVX512' | 'AVX2' | 'other', vendor: string }, blas: { name: 'mkl' | 'openblas' | 'reference' | 'blis' | 'atlas' | 'other' | 'none', path: string }, architectures: string[] }
  setNumThreads(n: number): void
  readModelConfig(path: string): Promise<string>
  toDevice(t: NativeTensor, device: string): Promise<NativeTensor>
  toCpuSync(t: NativeTensor): NativeTensor
  releaseHandle(handle: unknown): void
  detachBuffer(buffer: ArrayBuffer): void
  segmentationLoss(name: string, logits: NativeTensor, labels: NativeTensor, options: Record<string, unknown>): Promise<number>
  depthLoss(pred: NativeTensor, target: NativeTensor, type: string): Promise<number>
  confusionMatrix(predictions: NativeTensor, labels: NativeTensor, numClasses: number, ignoreIndex: number): Promise<NativeTensor>
  /** Tests only: blocks/max_pool.h's inference max pooling, or ATen's (aten true), on x in the given type and layout. */
  _maxPool2d(x: NativeTensor, kernel: number, stride: number, padding: number, bf16: boolean, channelsLast: boolean, aten: boolean): Promise<NativeTensor>
  /**
   * Tests only: one training batch norm (+ add) (+ ReLU) forward and backward with dy, through the fused node
   * (blocks/batch_norm.cc) or libtorch's (fused false): y, dx, dweight, dbias, [dadd,] running mean and var, and
   * whether the fused node ran, flattened into one float32 tensor.
   */
  _batchNormTrain(x: NativeTensor, weight: NativeTensor, bias: NativeTensor, add: NativeTensor | null, dy: NativeTensor, relu: boolean, fused: boolean, bf16?: boolean): Promise<NativeTensor>
  _convTrain(x: NativeTensor, weight: NativeTensor, bias: NativeTensor | null, dy: NativeTensor, options: { stride: number, padding: number, dilation: number, groups: number, path: 'rule' | 'onednn' | 'gemm' | 'depthwise' | 'taps', bf16: boolean, infer?: boolean }): Promise<NativeTensor>
  _dropoutTrain(x: NativeTensor, dy: NativeTensor, p: number, bf16: boolean, channelsLast: boolean, seed: number): Promise<NativeTensor>
  _resizeTrain(x: NativeTensor, dy: NativeTensor, alignCorners: boolean, bf16: boolean, aten: boolean): Promise<NativeTensor>
  metricsFromConfusion(confusion: NativeTensor): import('./train').Metrics
  augmentBatch(images: NativeTensor | NativeTensor[], masks: NativeTensor | NativeTensor[] | undefined, depth: NativeTensor | NativeTensor[] | undefined,
    options: Record<string, unknown>, seed: number): Promise<{ images: NativeTensor, masks?: NativeTensor, depth?: NativeTensor }>
  crf(image: NativeTensor, probs: NativeTensor, options: Record<string, unknown>, channelsLast: boolean): Promise<NativeTensor>
  distAvailable(): { c10d: boolean, gloo: boolean, nccl: boolean, why: string }
  distInit(options: Record<string, unknown>): Promise<{ rank: number, worldSize: number, backend: string, rendezvous: string }>
  distBarrier(what: string): Promise<void>
  distAllReduce(t: NativeTensor, op: 'sum' | 'max', what: string): Promise<NativeTensor>
  distDestroy(): Promise<void>
  distStats(): { reducedBytes: number, reduceSeconds: number, overlappedBytes: number }
  NativeModel: new () => NativeModel
  NativeScriptModel: new () => NativeScriptModel
}

function explain (err: Error): string {
  const msg = err.message
  const lines = [`segtorch: the native addon could not be loaded.\n  Cause: ${msg.split('\n')[0]}`]
  if (/No native build was found/.test(msg)) {
    lines.push('  No prebuilt binary matches this platform and no local build exists.',
      '  Build it from source (needs cmake, a C++17 compiler and libtorch):',
      '    apt-get install libtorch-dev cmake g++   (Debian/Ubuntu), then: npm rebuild segtorch')
  } else if (/lib(torch|c10|torch_cpu)[^ ]*\.so/.test(msg) && /cannot open shared object|No such file/.test(msg)) {
    lines.push('  libtorch is not installed where the addon looks for it.',
      '  Debian/Ubuntu: apt-get install libtorch1.13   (the prebuilt binary is built against libtorch 1.13)',
      '  Or rebuild against your own libtorch: LIBTORCH=/path/to/libtorch npm rebuild segtorch',
      '  (or, in a checkout: LIBTORCH=/path/to/libtorch npx cmake-js rebuild)')
  } else {
    lines.push('  The addon was probably built against another libtorch version than the one installed.',
      '  Debian/Ubuntu: apt-get install libtorch1.13, or rebuild against the libtorch you have:',
      '    LIBTORCH=/path/to/libtorch npm rebuild segtorch   (or LIBTORCH_USE_PYTORCH=1 to use PyTorch\'s)',
      '    in a checkout: LIBTORCH=/path/to/libtorch npx cmake-js rebuild')
  }
  return lines.join('\n')
}

function load (): Binding {
  const root = path.join(__dirname, '..')
  try {
    // SEGTORCH_ADDON=/path/to/segtorch.node loads a specific build (e.g. one against another libtorch,
    // or scripts/sanitize.sh's ASan + UBSan build in build-asan/, which the normal tests never pick up).
    const override = process.env.SEGTORCH_ADDON
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    if (override) return require(path.resolve(override)) as Binding
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    return require('node-gyp-build')(root) as Binding
  } catch (err) {
    const e = new SegtorchLoadError(explain(err as Error))
    ;(e as { cause?: unknown }).cause = err
    throw e
  }
}

export const binding: Binding = load()

// process.exit() runs no native cleanup hook on the main thread: without this, the process's
// static destructors (libtorch's among them) would run while a model's thread is in the middle of
// a job. shutdown() stops this thread's executors: the running job finishes (a libtorch operation
// cannot be interrupted), queued jobs are dropped, and the exit goes on with the code asked.
// Worker threads and normal ends are handled natively (an environment cleanup hook).
process.on('exit', () => { if (typeof binding.shutdown === 'function') binding.shutdown() })

// libtorch defaults to one thread on some machines: use every available core.
binding.setNumThreads(typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length)
