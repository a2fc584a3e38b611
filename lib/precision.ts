/** Precision and memory layout: what 'auto' means on a device, shared by training and predict. */
import { binding } from './binding'
import * as v from './validate'

interface CpuFeatures { mkldnn: boolean, bf16: boolean, bf16Faster: 'yes' | 'light' | 'no', libtorch1: boolean, winograd: boolean, prepack: boolean, avx512: boolean, amx: boolean, libtorch: string }
let backendCache: CpuFeatures | undefined
function cpuFeatures (): CpuFeatures {
  if (backendCache === undefined) {
    const b = binding.backend()
    backendCache = {
      mkldnn: b.mkldnn,
      bf16: b.bf16,
      bf16Faster: bf16FasterOn(b.cpu.isa, b.cpu.vendor ?? ''),
      libtorch1: Number.parseInt(b.libtorch, 10) < 2,
      winograd: b.winograd === true,
      prepack: b.prepack === true,
      avx512: b.cpu.isa !== 'AVX2' && b.cpu.isa !== 'other',
      amx: b.cpu.isa === 'AMX',
      libtorch: b.libtorch
    }
  }
  return backendCache
}

/**
 * How bf16 autocast compares with fp32 on a CPU of this kind (backend().cpu), by measurement:
 * - 'yes' with AMX (its tiles multiply bf16 at 16x the fp32 rate) and on AMD's AVX512-BF16 (Zen 4:
 *   training 1.05-2.2x, predictions 1.1-2.5x; bench/README "bench/precision.js");
 * - 'light' on an Intel CPU with AVX512-BF16 and no AMX (Cooper Lake, or a Sapphire / Emerald Rapids
 *   whose hypervisor hides AMX): there VDPBF16PS does no more multiply-adds per cycle than fp32's FMAs,
 *   and the casts come on top. Measured on an Emerald Rapids VM without AMX (bench/README "An Intel CPU
 *   with AVX512-BF16 and no AMX"): bf16 trained 0.58-0.88x as fast as fp32 for 16 of 17 networks and
 *   predicted 0.67-0.97x for 13; only the MobileNet networks' predictions gained (LR-ASPP 1.41x,
 *   MTRefineNet 1.79x: depthwise convolutions are bound by memory, which bf16 halves). Since fp32
 *   predictions run folded, prepacked and fused (stop 46, same CPU): MobileNetV3-Large's no longer
 *   (fp32 took LR-ASPP 0.79-0.92x bf16's time at 512 x 512, 0.80-0.83x at 1024; DeepLab v3 on it 0.80-0.98x),
 *   MobileNetV2's still (MTRefineNet 1.11-1.27x faster in bf16; LW-RefineNet on it equal) until stop 49's fused
 *   fp32 convolutions beside the fp32 Winograd (libtorch 2.x): with them fp32 predicted MTRefineNet 1.04-1.05x
 *   and LW-RefineNet on MobileNetV2 1.23x as fast as bf16 (bench/README "Inference of all 17 again, and fused
 *   fp32 convolutions beside the Winograd"), so there MobileNetV2's predictions run fp32 too; with libtorch 1.x
 *   (no fused path) bf16;
 * - 'no' elsewhere (bf16 emulated).
 */
export function bf16FasterOn (isa: string, vendor: string): 'yes' | 'light' | 'no' {
  if (isa === 'AMX') return 'yes'
  if (isa !== 'AVX512-BF16') return 'no'
  return vendor === 'GenuineIntel' ? 'light' : 'yes'
}

/**
 * Backbones whose predictions gain from bf16 where bf16FasterOn says 'light' and fp32 has no fused convolutions
 * (libtorch 1.x; bench/README, stops 46 and 49).
 */
const BF16_LIGHT_BACKBONES: ReadonlySet<string> = new Set(['mobilenetv2'])

/**
 * What precision 'auto' means on `device` for `task` and the network `net`, on a CPU where bf16 compares
 * with fp32 as `faster` says (bf16FasterOn): fp16 on CUDA; on a CPU bf16 where it is faster ('yes': AMX,
 * AMD's AVX512-BF16; 'light', Intel's AVX512-BF16 without AMX: the MobileNetV2 networks' predictions
 * only, and only where fp32 predictions have no fused convolutions: `fusedFp32` false, libtorch 1.x),
 * else fp32.
 */
export function precisionFor (faster: 'yes' | 'light' | 'no', device: string, task: 'train' | 'predict' = 'predict', net?: NetworkKind,
  fusedFp32: boolean = fusedFp32Predictions()): 'fp32' | 'bf16' | 'fp16' {
  if (device.startsWith('cuda')) return 'fp16'
  if (faster === 'yes') return 'bf16'
  if (faster === 'light' && !fusedFp32 && task === 'predict' && net?.backbone !== undefined && BF16_LIGHT_BACKBONES.has(net.backbone)) return 'bf16'
  return 'fp32'
}

/**
 * Whether 'auto' fp32 predictions on this CPU run the fp32 Winograd with the other convolutions prepacked and
 * fused beside it (a CPU with AVX-512 and a libtorch that prepacks: only 2.x does).
 */
function fusedFp32Predictions (): boolean {
  const f = cpuFeatures()
  return f.avx512 && f.prepack
}

/** What precision 'auto' means on `device` for `task` and `net`, on this CPU (precisionFor). */
export function autoPrecision (device: string, task: 'train' | 'predict' = 'predict', net?: NetworkKind): 'fp32' | 'bf16' | 'fp16' {
  return precisionFor(cpuFeatures().bf16Faster, device, task, net)
}

/**
 * Backbones whose fp32 training is faster in NCHW than in channels-last on a CPU without native bf16:
 * plain 3x3 convolutions on large maps (VGG, U-Net's encoder). Measured on an AVX2 AMD EPYC
 * (bench/README.md, "An AVX2 CPU"): channels-last / NCHW training 0.66x SegNet (VGG16-BN), 0.68x
 * U-Net, 0.76x DeepLab v1 (VGG16); the ResNets were mixed (0.85-1.25x) and stay channels-last, the
 * MobileNets gain 1.35-2.1x. Inference stays channels-last (1.03-1.34x for these). Measured with
 * libtorch 2.15; libtorch 1.x: CHANNELS_LAST_FP32_LIBTORCH1.
 */
const NCHW_FP32_TRAINING: ReadonlySet<string> = new Set(['vgg16', 'vgg16_bn', 'none'])

/** Which network a layout is chosen for (a model's config): 'auto' depends on it in places. */
export interface NetworkKind { readonly arch?: string, readonly backbone?: string }

/**
 * The networks that run fp32 faster channels-last than NCHW on libtorch 1.x (Debian's 1.13, the
 * default build) on a CPU without native bf16: the MobileNet backbones, and LW-RefineNet and ICNet
 * (light heads); Xception-65, depthwise-separable too, measured faster in NCHW (0.82x / 0.74x). Everything else runs NCHW there, training and predictions: libtorch
 * 1.13's channels-last fp32 convolutions on such a CPU measured 1.1-1.9x slower for predictions of
 * 13 of 16 architectures and 1.1-1.6x for training the ResNet networks with heavy heads (FCN,
 * DeepLab v2 / v3 / v3+, PSPNet, UPerNet, RefineNet, DFN), while LR-ASPP and MTRefineNet
 * (MobileNets), LW-RefineNet and ICNet trained 1.04-1.6x faster channels-last (bench/README.md, "Debian's PyTorch
 * 1.13 on the AVX2 CPU"). libtorch 2.x's channels-last convolutions do not have this gap.
 */
const CHANNELS_LAST_FP32_LIBTORCH1 = { backbones: new Set(['mobilenetv2', 'mobilenetv3_large']), archs: new Set(['lwrefinenet', 'icnet']) }

/**
 * The networks whose fp32 predictions run faster with NNPACK's Winograd 3x3 convolutions in NCHW than
 * with oneDNN's channels-last ones, on a CPU without AVX-512 (measured on an AVX2 AMD EPYC with PyPI's
 * torch 2.15, 1x3x512x512, two rounds, bench/README.md "Winograd"): UPerNet 1.8-2.1x, DFN 1.7x, U-Net
 * 1.5x, SegNet 1.4x, RefineNet 1.4x, DeepLab v1 1.2-1.6x, PSPNet 1.1-1.2x, FCN 1.1x. Networks whose 3x3
 * convolutions are dilated or on small maps lost in NCHW (DeepLab v2 0.71-0.97x, v3 0.90x, DeepLab v3+ and
 * dilated 0.92-0.97x, GCN 0.86x, the MobileNet / light networks 0.6-0.85x) and keep oneDNN channels-last.
 */
const WINOGRAD_ARCHS: ReadonlySet<string> = new Set(['upernet', 'dfn', 'unet', 'segnet', 'refinenet', 'deeplabv1', 'pspnet', 'fcn'])

/**
 * Which Winograd runs an fp32 prediction's 3x3 convolutions under predict's winograd option, by the
 * layout: channels-last ones run segtorch's F(4x4, 3x3) (any libtorch), NCHW ones NNPACK's F(6x6, 3x3)
 * (a libtorch with NNPACK). With channelsLast 'auto' the CPU decides: channels-last on a CPU with
 * AVX-512 (where segtorch's measured faster, bench/README.md "fp32 Winograd"), NCHW elsewhere (where
 * NNPACK was measured; segtorch's F(4x4, 3x3) was not measured on a CPU without AVX-512).
 */
export function fp32WinogradLayout (channelsLast: unknown): 'channels-last' | 'nchw' {
  if (channelsLast === true) return 'channels-last'
  if (channelsLast === false) return 'nchw'
  return cpuFeatures().avx512 ? 'channels-last' : 'nchw'
}

/**
 * What predict's winograd 'auto' means: in bf16 on a CPU, on where libtorch has oneDNN's prepacked
 * convolution (2.x) and the CPU has no AMX, whose bf16 3x3 convolutions with 256 channels or more in and out then run
 * segtorch's Winograd F(2x2, 3x3) (measured on an AVX512-BF16 AMD EPYC, bench/README.md "bf16
 * Winograd"; with AMX, oneDNN's direct bf16 convolutions on its tiles were faster: the Winograd took predictions
 * 0.69-0.90x as fast, PSPNet 0.72x, RefineNet 0.69x, bench/README.md "AMX"); in fp32 on a CPU with AVX-512, on: channels-last 3x3 convolutions with 64 channels or
 * more in and out run segtorch's F(4x4, 3x3) (measured on an Intel AVX512-BF16 CPU without AMX, where
 * fp32 is 'auto' precision: 1.6-2.6x per layer, bench/README.md "fp32 Winograd"), with libtorch 2.x
 * (whose batched fp32 matrix product is MKL's; with Debian's 1.13 and OpenBLAS it ran slower); in fp32 on a CPU
 * without AVX-512 or native bf16, on for the networks of WINOGRAD_ARCHS where libtorch has NNPACK
 * (NCHW); off everywhere else.
 */
export function autoWinograd (device: string, net: NetworkKind | undefined, precision: string): boolean {
  if (!device.startsWith('cpu')) return false
  const f = cpuFeatures()
  if (precision === 'bf16') return f.prepack && !f.amx
  if (precision !== 'fp32') return false
  // libtorch 1.13's batched fp32 matrix product (through Debian's OpenBLAS) made it 0.55-0.69x as fast.
  if (f.avx512) return !f.libtorch1
  return f.winograd && !f.bf16 && net?.arch !== undefined && WINOGRAD_ARCHS.has(net.arch)
}

/**
 * predict's winograd option. In bf16 on a CPU it means the bf16 Winograd F(2x2, 3x3) of prepacked
 * convolutions with 256 channels or more in and out (channels-last; libtorch 2.x): 'auto' is on there
 * unless compiled or the CPU has AMX. In fp32 it means segtorch's F(4x4, 3x3) on channels-last convolutions and NNPACK's
 * on NCHW ones (fp32WinogradLayout): 'auto' (autoWinograd) gives way to an explicit fp32 (`exact`),
 * compiled graphs and an explicit layout other than the CPU's Winograd layout; true needs no compile
 * and, for NCHW, a libtorch with NNPACK. true is refused on other devices and precisions.
 */
export function resolveWinograd (value: unknown, device: string, net: NetworkKind | undefined, precision: string,
  o: { exact: boolean, compile: boolean, channelsLast: unknown }): boolean {
  if (value === undefined || value === 'auto') {
    if (o.compile) return false
    if (precision === 'bf16') return autoWinograd(device, net, precision)
    const layout = fp32WinogradLayout('auto')
    if (o.exact || (o.channelsLast !== undefined && o.channelsLast !== 'auto' && fp32WinogradLayout(o.channelsLast) !== layout)) return false
    // segtorch's F(4x4, 3x3) only where the network would run channels-last anyway.
    if (layout === 'channels-last' && !autoChannelsLast(device, 'predict', net, precision)) return false
    return autoWinograd(device, net, precision)
  }
  const on = v.boolean('winograd', value)
  if (!on) return false
  if (!device.startsWith('cpu')) throw new RangeError(`Expected winograd false or 'auto' on ${device} (the Winograd convolutions are CPU paths) but received true`)
  if (precision === 'bf16') {
    if (!cpuFeatures().prepack) throw new RangeError(`Expected a libtorch with oneDNN's prepacked convolution for winograd: true in bf16 (PyPI's torch 2.x has it) but this one (${cpuFeatures().libtorch}) has none`)
    if (o.compile) throw new RangeError('Expected compile false with winograd: true (compiled graphs run oneDNN\'s convolutions) but received compile: true')
    if (o.channelsLast === false) throw new RangeError('Expected channelsLast true or \'auto\' with winograd: true in bf16 (its convolutions run channels-last) but received false')
    return true
  }
  if (precision !== 'fp32') throw new RangeError(`Expected precision 'fp32' or 'bf16' with winograd: true (the Winograd convolutions compute in float32 or bfloat16) but received '${precision}'`)
  if (o.compile) throw new RangeError('Expected compile false with winograd: true (compiled graphs run oneDNN\'s convolutions) but received compile: true')
  if (fp32WinogradLayout(o.channelsLast) === 'nchw' && !cpuFeatures().winograd) {
    const why = o.channelsLast === false ? 'channelsLast: false' : 'a CPU without AVX-512 (where fp32 Winograd runs NCHW)'
    throw new RangeError(`Expected a libtorch with NNPACK for winograd: true in NCHW (${why}; PyPI's torch 2.x has it) or channelsLast: true (segtorch's own Winograd) but this one (${cpuFeatures().libtorch}) has none`)
  }
  return true
}

/**
 * trainStep's winograd option (fp32 channels-last 3x3 convolutions' forward and input gradient by
 * segtorch's F(4x4, 3x3)): 'auto' is on where predict's fp32 Winograd is (a CPU with AVX-512, libtorch
 * 2.x), in fp32 that is not an explicit 'fp32', channels-last; true needs a CPU, fp32 and channels-last.
 */
export function resolveTrainingWinograd (value: unknown, device: string, precision: string, o: { exact: boolean, channelsLast: boolean }): boolean {
  if (value === undefined || value === 'auto') {
    const f = device.startsWith('cpu') ? cpuFeatures() : undefined
    return f !== undefined && precision === 'fp32' && !o.exact && o.channelsLast && f.avx512 && !f.libtorch1
  }
  if (!v.boolean('winograd', value)) return false
  if (!device.startsWith('cpu')) throw new RangeError(`Expected winograd false or 'auto' on ${device} (the Winograd convolutions are CPU paths) but received true`)
  if (precision !== 'fp32') throw new RangeError(`Expected precision 'fp32' with winograd: true in training (its Winograd computes in float32) but received '${precision}'`)
  if (!o.channelsLast) throw new RangeError('Expected channelsLast true with winograd: true in training (its Winograd runs channels-last) but received a layout that resolves to NCHW')
  return true
}

/**
 * What channelsLast 'auto' means on `device` for `precision` and the network `net`: on with CUDA
 * (cuDNN), and on the CPU with oneDNN, except in fp32 on a CPU without native bf16: there libtorch
 * 1.x runs NCHW but for the networks of CHANNELS_LAST_FP32_LIBTORCH1, and libtorch 2.x trains
 * NCHW_FP32_TRAINING's backbones NCHW. bf16 stays channels-last everywhere: libtorch 1.13's NCHW
 * bf16 convolution on such a CPU accumulates in bf16 (one 256-channel 3x3 convolution: relative
 * error 0.10 against 0.002 channels-last, measured on an AVX2 EPYC; test/export-check.ts). A network
 * not known (`net` undefined: a TorchScript model) counts as none of the named ones.
 */
export function autoChannelsLast (device: string, task: 'train' | 'predict' = 'predict', net?: NetworkKind, precision = 'fp32'): boolean {
  if (device.startsWith('cuda')) return true
  const f = cpuFeatures()
  if (!f.mkldnn) return false
  if (precision !== 'fp32' || f.bf16) return true
  const { arch, backbone } = net ?? {}
  if (f.libtorch1) {
    return (backbone !== undefined && CHANNELS_LAST_FP32_LIBTORCH1.backbones.has(backbone)) ||
      (arch !== undefined && CHANNELS_LAST_FP32_LIBTORCH1.archs.has(arch))
  }
  return !(task === 'train' && backbone !== undefined && NCHW_FP32_TRAINING.has(backbone))
}

export function resolvePrecision<P extends string> (value: unknown, allowed: readonly P[], device: string,
  task: 'train' | 'predict' = 'predict', net?: NetworkKind): P {
  const p = value === undefined ? 'auto' : v.oneOf('precision', value, ['auto', ...allowed] as const)
  const resolved = (p === 'auto' ? autoPrecision(device, task, net) : p) as P
  if (resolved === 'fp16' && !device.startsWith('cuda')) {
    throw new RangeError(`Expected precision 'auto', 'fp32' or 'bf16' on the CPU but received 'fp16' (fp16 autocast needs CUDA)`)
  }
  return resolved
}

export function resolveChannelsLast (value: unknown, device: string, task: 'train' | 'predict' = 'predict', net?: NetworkKind, precision?: string): boolean {
  if (value === undefined || value === 'auto') return autoChannelsLast(device, task, net, precision)
  return v.boolean('channelsLast', value)
}
