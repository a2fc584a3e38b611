/**
 * segtorch: semantic-segmentation networks for Node.js, on libtorch.
 */
import { binding, CpuMemoryStats } from './binding'
import { threadsSetByUser } from './distributed'
import { integer } from './validate'

export { tensor, zeros, Tensor } from './tensor'
export type { DType, DataTypeMap, Shape, TypedArray, Device } from './tensor'
export { createModel, loadModel, Model, DEFAULT_MAX_PARAMETERS } from './model'
export type { LoadModelOptions } from './model'
export type { ModelOptions, ModelConfig, ModelInfo } from './model'
export type { OptimizerOptions, TrainStepOptions, ScheduleOptions, StepResult } from './train'
export type { PredictOptions } from './predict'
export type { Images, Masks, ImageDType, MaskDType } from './inputs'
export type { Batch, BatchSource, FitOptions, History, EpochRecord, StepInfo, Evaluation } from './fit'
export { ARCHITECTURES } from './models'
export { recipes, recipe, getRecipe, trainingPlan, RECIPES } from './recipes'
export type { Recipe, RecipeName, TrainingOptions, TrainingPlan } from './recipes'
export { crf } from './crf'
export type { CrfOptions } from './crf'
export { loadTorchScript, ScriptModel } from './torchscript'
export type { TorchScriptOptions, TorchScriptInfo } from './torchscript'
export type { ExportOptions, ExportOnnxOptions, ExportTorchScriptOptions, ExportResult } from './export'
export type { BatchingOptions, BatchStats } from './serve'
export { loss, depthLoss, confusionMatrix, metrics } from './train'
export type { LossName, LossOptions, Metrics } from './train'
export type { Arch, Backbone, ResNetBackbone, VGGBackbone, OutputStride, ArchSpec } from './models'
/** Data-parallel training over several processes and machines (c10d: Gloo on CPU, NCCL on CUDA). */
export * as distributed from './distributed'
export type { DistributedOptions } from './distributed'
export { DistributedError } from './errors'
export { SegtorchError, SegtorchLoadError, ImageError, PngError, LimitError, FileError } from './errors'
/** Data sets, decoding, augmentation and the loader (also `segtorch/data`). */
export * as data from './data'
/** Training reports: curves.svg, per-class IoU, sample pictures, report.html (also `segtorch/report`). */
export * as report from './report'
export type { StateDictReport, CpuMemoryStats } from './binding'

export interface Backend {
  /** libtorch version the addon was built against. */
  libtorch: string
  cuda: boolean
  cudaDevices: number
  /** oneDNN (MKL-DNN) available for CPU convolutions. */
  mkldnn: boolean
  /** Threads native work uses. */
  threads: number
  /** The CPU has native bf16 (AVX512-BF16 or AMX). */
  bf16: boolean
  /**
   * predict's bf16 CPU convolutions run with their weights reordered once per input shape for oneDNN
   * (libtorch 2.x's prepacked convolution, as torch.compile's freezing uses) instead of on every
   * call. false on libtorch 1.13 (no such operator) or with SEGTORCH_PREPACK=0.
   */
  prepack: boolean
  /**
   * libtorch has NNPACK, whose Winograd 3x3 convolution predict's `winograd` option uses (PyPI's
   * torch 2.x has it; Debian's libtorch 1.13 has not).
   */
  winograd: boolean
  /**
   * The CPU's model name, its widest matrix instructions (results differ by kind: AMX, AVX512-BF16, AVX2)
   * and its vendor (/proc/cpuinfo's vendor_id: 'GenuineIntel', 'AuthenticAMD'; '' when unknown).
   */
  cpu: { model: string, isa: 'AMX' | 'AVX512-BF16' | 'AVX512' | 'AVX2' | 'other', vendor: string }
  /**
   * The BLAS libtorch uses (fp32 matrix products outside oneDNN: linear layers, some convolutions,
   * the CRF). 'mkl' inside PyPI's torch; Debian's libtorch uses the libblas.so.3 its alternatives
   * point at: 'reference' (Netlib's, slow) unless OpenBLAS is installed (README: Installing).
   */
  blas: { name: 'mkl' | 'openblas' | 'reference' | 'blis' | 'atlas' | 'other' | 'none', path: string }
  /** Architectures compiled into the addon. */
  architectures: string[]
}

/** What the native side can do. */
export function backend (): Backend {
  return binding.backend()
}

/**
 * The cache of large CPU blocks. libtorch allocates every activation of a forward pass afresh, and
 * glibc serves blocks above 128 KiB with new mappings that the kernel then page-faults in, on every
 * call; segtorch keeps freed blocks of 128 KiB or more for reuse instead, up to `limitBytes`
 * (SEGTORCH_CPU_CACHE_MB, read at load: default an eighth of the physical memory, at most 2 GiB; 0
 * turns the cache off). The memory stays with the process, as PyTorch's CUDA caching allocator's does.
 */
export function cpuMemoryStats (): CpuMemoryStats {
  return binding.cpuMemoryStats()
}

/** Returns the cached CPU blocks to the system allocator (tensors in use are not affected). */
export function emptyCpuCache (): void {
  binding.emptyCpuCache()
}

/** Threads used by native work (default: the number of available cores; under distributed.init(), cores / LOCAL_WORLD_SIZE). */
export function setNumThreads (n: number): void {
  binding.setNumThreads(integer('n', n, 1, 1024))
  threadsSetByUser()
}

// eslint-disable-next-line @typescript-eslint/no-var-requires
export const version: string = require('../package.json').version
