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

/** What channelsLast 'auto' means on `device`: on with CUDA (cuDNN) and with oneDNN on the CPU. */
export function autoChannelsLast (device: string): boolean {
  return device.startsWith('cuda') ? true : cpuFeatures().mkldnn
}

export function resolvePrecision<P extends string> (value: unknown, allowed: readonly P[], device: string): P {
  const p = value === undefined ? 'auto' : v.oneOf('precision', value, ['auto', ...allowed] as const)
  const resolved = (p === 'auto' ? autoPrecision(device) : p) as P
  if (resolved === 'fp16' && !device.startsWith('cuda')) {
    throw new RangeError(`Expected precision 'auto', 'fp32' or 'bf16' on the CPU but received 'fp16' (fp16 autocast needs CUDA)`)
  }
  return resolved
}

export function resolveChannelsLast (value: unknown, device: string): boolean {
  if (value === undefined || value === 'auto') return autoChannelsLast(device)
  return v.boolean('channelsLast', value)
}
