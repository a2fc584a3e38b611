/** Precision and memory layout: what 'auto' means on a device, shared by training and predict. */
import { binding } from './binding'
import * as v from './validate'

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

/**
 * Backbones whose fp32 training is faster in NCHW than in channels-last on a CPU without native bf16:
 * plain 3x3 convolutions on large maps (VGG, U-Net's encoder). Measured on an AVX2 AMD EPYC
 * (bench/README.md, "An AVX2 CPU"): channels-last / NCHW training 0.66x SegNet (VGG16-BN), 0.68x
 * U-Net, 0.76x DeepLab v1 (VGG16); the ResNets were mixed (0.85-1.25x) and stay channels-last, the
 * MobileNets gain 1.35-2.1x. Inference stays channels-last (1.03-1.34x for these).
 */
const NCHW_FP32_TRAINING: ReadonlySet<string> = new Set(['vgg16', 'vgg16_bn', 'none'])

/**
 * What channelsLast 'auto' means on `device`: on with CUDA (cuDNN) and with oneDNN on the CPU, except
 * for fp32 training of `backbone` on a CPU without native bf16 when it is one of NCHW_FP32_TRAINING.
 * bf16 stays channels-last there: libtorch 1.13's NCHW bf16 convolution on such a CPU accumulates in
 * bf16 (one 256-channel 3x3 convolution: relative error 0.10 against 0.002 channels-last, measured
 * on an AVX2 EPYC; test/export-check.ts).
 */
export function autoChannelsLast (device: string, task: 'train' | 'predict' = 'predict', backbone?: string, precision = 'fp32'): boolean {
  if (device.startsWith('cuda')) return true
  const f = cpuFeatures()
  if (!f.mkldnn) return false
  return !(task === 'train' && precision === 'fp32' && !f.bf16 && backbone !== undefined && NCHW_FP32_TRAINING.has(backbone))
}

export function resolvePrecision<P extends string> (value: unknown, allowed: readonly P[], device: string): P {
  const p = value === undefined ? 'auto' : v.oneOf('precision', value, ['auto', ...allowed] as const)
  const resolved = (p === 'auto' ? autoPrecision(device) : p) as P
  if (resolved === 'fp16' && !device.startsWith('cuda')) {
    throw new RangeError(`Expected precision 'auto', 'fp32' or 'bf16' on the CPU but received 'fp16' (fp16 autocast needs CUDA)`)
  }
  return resolved
}

export function resolveChannelsLast (value: unknown, device: string, task: 'train' | 'predict' = 'predict', backbone?: string, precision?: string): boolean {
  if (value === undefined || value === 'auto') return autoChannelsLast(device, task, backbone, precision)
  return v.boolean('channelsLast', value)
}
