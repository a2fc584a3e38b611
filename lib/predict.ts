/** Predict and evaluate options: the types users pass and their resolution (every default filled). */
import { CrfOptions, resolveCrfOptions, ResolvedCrfOptions } from './crf'
import { typeError } from './errors'
import { fp32WinogradLayout, NetworkKind, resolveChannelsLast, resolvePrecision, resolveWinograd } from './precision'
import * as v from './validate'

export interface PredictOptions {
  /** 'whole' (default) or 'slide' (overlapping windows, logits averaged). */
  mode?: 'whole' | 'slide'
  /** Sliding-window size [h, w] or one number. Default 512. */
  crop?: number | [number, number]
  /** Sliding-window stride [h, w] or one number. Default 2/3 of the crop. */
  stride?: number | [number, number]
  /** Input scales; probabilities are averaged over every scale (and flip). Default [1]. */
  scales?: number[]
  /** Also run the horizontally flipped image and average. Default false. */
  flip?: boolean
  /** 'labels' (int32 [N, H, W], default), 'probs' or 'logits' (float32 [N, K, H, W]). */
  output?: 'labels' | 'probs' | 'logits'
  /** 'auto' (default: as for training, see TrainStepOptions.precision), 'fp32', 'bf16' (autocast) or 'fp16' (CUDA only). */
  precision?: 'auto' | 'fp32' | 'bf16' | 'fp16'
  /**
   * Channels-last layout. Default 'auto': on with oneDNN or CUDA, except with an explicit
   * `precision: 'fp32'` (off: the reference's NCHW kernels) and, with libtorch 1.x in fp32 on a CPU
   * without native bf16, for the networks that run faster in NCHW there (README, Speed defaults).
   */
  channelsLast?: boolean | 'auto'
  /**
   * Run a copy of the network with each BatchNorm folded into the convolution before it (same
   * results within float rounding, less memory traffic). The copy is rebuilt after the weights
   * change; training and saved files always use the unfolded weights. Default true, except with an
   * explicit `precision: 'fp32'`: asking for fp32 asks for PyTorch's own arithmetic (unfolded, NCHW),
   * so that logits match a PyTorch eval forward to float rounding (1e-4); pass `foldBatchNorm: true`
   * and `channelsLast: true` for fp32 at full speed.
   */
  foldBatchNorm?: boolean
  /**
   * Run the network through a graph compiled for each input shape (libtorch's tracer, then
   * torch::jit::optimize_for_inference: constant folding, convolution + BatchNorm / add / ReLU
   * fusions, oneDNN's prepacked weights in fp32 on the CPU), kept per shape, precision and layout
   * until the weights change (8 shapes at most, then it starts again). The first call at a shape
   * pays the compilation; a shape that cannot be compiled runs eagerly (see model.compiledStats()).
   * Outputs equal the eager path's to float rounding. Default false (bench/README.md: measured
   * per architecture). TorchScript models ignore it.
   */
  compile?: boolean
  /**
   * Winograd convolutions: about 2x fewer multiplications for 3x3 kernels, on the CPU.
   * - bf16 (where libtorch prepacks convolutions: PyPI's torch 2.x): 3x3 convolutions with stride 1,
   *   padding = dilation and 256 channels or more in and out run segtorch's Winograd F(2x2, 3x3)
   *   (dilated ones as interleaved plain ones; transforms by ATen, the 16 products as one oneDNN bf16
   *   batched matrix product) instead of oneDNN's direct convolution, channels-last. Whole
   *   predictions measured 1.1-1.85x faster on an AVX512-BF16 CPU for 13 of 17 networks, the rest
   *   unchanged (bench/README.md, "bf16 Winograd"); logits within 1.4-2x the direct bf16 error of fp32.
   * - fp32, channels-last (any libtorch): segtorch's Winograd F(4x4, 3x3) (Lavin & Gray 2016) for 3x3
   *   convolutions with stride 1, padding = dilation and 64 channels or more in and out on maps at least
   *   8 dilations high and wide: 6 x 6 input tiles transformed in one pass, the 36 products as one fp32
   *   batched matrix product, the bias, the residual addition and the activation in the output
   *   transform; 4x fewer multiplications. 1.6-2.6x per layer and whole predictions 1.08-2.0x faster
   *   for 15 of 17 networks on an Intel AVX512-BF16 CPU without AMX (bench/README.md, "fp32 Winograd");
   *   logits within about 1e-5 relative of the direct convolution's. Beside it (libtorch 2.x) the other
   *   convolutions (1x1, strided, depthwise, other kernels) run with their weights reordered once for
   *   oneDNN and the folded BatchNorm's residual addition and activation fused into them: 1.03-1.22x faster predictions
   *   there (bench/README.md, "Inference of all 17 again, and fused fp32 convolutions beside the
   *   Winograd").
   * - fp32, NCHW: NNPACK's Winograd F(6x6, 3x3) (stride 1, at least 64 x 64 pixels and 64 channels in
   *   and out) where libtorch has NNPACK (PyPI's torch 2.x; Debian's 1.13 has not); on a CPU without
   *   AVX-512 whole predictions of eight networks measured 1.1-2.1x faster (bench/README.md,
   *   "Winograd"); logits within about 2e-5 relative of the direct convolution's.
   * Default 'auto': in bf16 on (where libtorch prepacks); in fp32 on a CPU with AVX-512 and libtorch 2.x
   * on for networks that run channels-last (segtorch's; with Debian's 1.13 its batched products through
   * OpenBLAS made predictions 0.55-0.69x as fast); in fp32 on a CPU without AVX-512 or native bf16 on for the
   * networks where NNPACK measured faster (channelsLast 'auto' then means NCHW); off with an explicit
   * `precision: 'fp32'` (the reference's arithmetic), with `compile: true` (compiled graphs keep
   * oneDNN), with a layout other than the CPU's fp32 Winograd's, and elsewhere. true asks for it on any
   * network (fp32: the layout picks which, channelsLast 'auto' the CPU's: channels-last with AVX-512,
   * NCHW without; bf16: channels-last only); false: oneDNN's direct convolutions.
   */
  winograd?: boolean | 'auto'
  /**
   * Dense CRF (DeepLab v1/v2) on the averaged probabilities, at the images' colours (float images
   * are un-normalised with the model's mean and std): `true` for the defaults or CrfOptions.
   * Needs output 'labels' or 'probs'. Default false.
   */
  crf?: boolean | CrfOptions
}

const PREDICT_KEYS = ['mode', 'crop', 'stride', 'scales', 'flip', 'output', 'precision', 'channelsLast', 'foldBatchNorm', 'compile', 'winograd', 'crf'] as const

function pair (name: string, value: unknown, def: [number, number]): [number, number] {
  if (value === undefined) return def
  if (typeof value === 'number') return [v.integer(name, value, 1), value]
  if (Array.isArray(value) && value.length === 2) return [v.integer(`${name}[0]`, value[0], 1), v.integer(`${name}[1]`, value[1], 1)]
  throw typeError(name, 'a positive integer or [h, w]', value)
}

/** Predict options with every default filled: what the native side receives. */
export type ResolvedPredictOptions = Required<Omit<PredictOptions, 'crf'>> & { crf?: ResolvedCrfOptions, crop: [number, number], stride: [number, number], precision: 'fp32' | 'bf16' | 'fp16', channelsLast: boolean, winograd: boolean }

export function resolvePredictOptions (options: unknown, where = 'predict options', extraKeys: readonly string[] = [], device = 'cpu', net?: NetworkKind): ResolvedPredictOptions {
  const o = v.optionsObject(where, options)
  v.checkKeys(where, o, [...PREDICT_KEYS, ...extraKeys])
  const mode = o.mode === undefined ? 'whole' : v.oneOf('mode', o.mode, ['whole', 'slide'] as const)
  const crop = pair('crop', o.crop, [512, 512])
  const stride = pair('stride', o.stride, [Math.max(1, Math.floor(crop[0] * 2 / 3)), Math.max(1, Math.floor(crop[1] * 2 / 3))])
  if (stride[0] > crop[0] || stride[1] > crop[1]) throw new RangeError(`Expected stride <= crop (windows must cover the image) but received stride [${stride.join(', ')}] for crop [${crop.join(', ')}]`)
  let scales = [1]
  if (o.scales !== undefined) {
    if (!Array.isArray(o.scales) || o.scales.length === 0) throw typeError('scales', 'a non-empty array of positive numbers', o.scales)
    scales = o.scales.map((s, i) => v.number(`scales[${i}]`, s, 0, 16, true))
  }
  const output = o.output === undefined ? 'labels' : v.oneOf('output', o.output, ['labels', 'probs', 'logits'] as const)
  const crf = o.crf === undefined || o.crf === false ? undefined : resolveCrfOptions(o.crf)
  // An explicit fp32 asks for the reference's arithmetic: unfolded BatchNorm, NCHW (see PredictOptions).
  const exact = o.precision === 'fp32'
  if (crf && output === 'logits') throw new RangeError("Expected output 'labels' or 'probs' with crf (it refines probabilities) but received 'logits'")
  const precision = resolvePrecision(o.precision, ['fp32', 'bf16', 'fp16'] as const, device, 'predict', net)
  const compile = o.compile === undefined ? false : v.boolean('compile', o.compile)
  const winograd = resolveWinograd(o.winograd, device, net, precision, { exact, compile, channelsLast: o.channelsLast })
  return {
    mode,
    crop,
    stride,
    scales,
    flip: o.flip === undefined ? false : v.boolean('flip', o.flip),
    output,
    precision,
    channelsLast: o.channelsLast === undefined || o.channelsLast === 'auto'
      ? (winograd && precision === 'fp32' ? fp32WinogradLayout('auto') === 'channels-last' : !exact && resolveChannelsLast(o.channelsLast, device, 'predict', net, precision))
      : resolveChannelsLast(o.channelsLast, device, 'predict', net, precision),
    foldBatchNorm: o.foldBatchNorm === undefined ? !exact : v.boolean('foldBatchNorm', o.foldBatchNorm),
    compile,
    winograd,
    ...(crf ? { crf } : {})
  }
}
