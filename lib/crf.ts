/**
 * The fully connected CRF (Krähenbühl & Koltun 2011) that DeepLab v1/v2 apply to their
 * probabilities: mean-field inference with a Potts model over a position kernel and a
 * position + colour kernel, filtered natively with the permutohedral lattice.
 */
import { binding } from './binding'
import { typeError, withStack } from './errors'
import { Tensor } from './tensor'
import * as v from './validate'

/** Options of the dense CRF. Defaults as pydensecrf's `addPairwiseGaussian` / `addPairwiseBilateral`. */
export interface CrfOptions {
  /** Smoothness kernel on positions: `sxy` its standard deviation in pixels (default 3), `compat` its Potts weight (default 3; 0 leaves it out). */
  gaussian?: { sxy?: number, compat?: number }
  /** Appearance kernel on positions and colours: `sxy` in pixels (default 80), `srgb` in 0..255 colour units (default 13), `compat` its Potts weight (default 10; 0 leaves it out). */
  bilateral?: { sxy?: number, srgb?: number, compat?: number }
  /** Mean-field iterations (default 5, at most 1000). */
  iterations?: number
}

export interface ResolvedCrfOptions {
  gaussian: { sxy: number, compat: number }
  bilateral: { sxy: number, srgb: number, compat: number }
  iterations: number
}

export const CRF_DEFAULTS: Readonly<ResolvedCrfOptions> = Object.freeze({
  gaussian: Object.freeze({ sxy: 3, compat: 3 }),
  bilateral: Object.freeze({ sxy: 80, srgb: 13, compat: 10 }),
  iterations: 5
})

const MAX_ITERATIONS = 1000

function positive (name: string, value: unknown, def: number): number {
  return value === undefined ? def : v.number(name, value, 0, Infinity, true)
}

function nonNegative (name: string, value: unknown, def: number): number {
  return value === undefined ? def : v.number(name, value, 0)
}

/** `true` means the defaults; an object fills the missing ones. */
export function resolveCrfOptions (options: unknown, name = 'crf'): ResolvedCrfOptions {
  if (options === true) options = {}
  if (!v.isPlainObject(options)) throw typeError(name, 'true or an options object { gaussian, bilateral, iterations }', options)
  v.checkKeys(`${name} options`, options, ['gaussian', 'bilateral', 'iterations'])
  const g = options.gaussian === undefined ? {} : options.gaussian
  const b = options.bilateral === undefined ? {} : options.bilateral
  if (!v.isPlainObject(g)) throw typeError(`${name}.gaussian`, 'an options object { sxy, compat }', g)
  if (!v.isPlainObject(b)) throw typeError(`${name}.bilateral`, 'an options object { sxy, srgb, compat }', b)
  v.checkKeys(`${name}.gaussian options`, g, ['sxy', 'compat'])
  v.checkKeys(`${name}.bilateral options`, b, ['sxy', 'srgb', 'compat'])
  const d = CRF_DEFAULTS
  return {
    gaussian: { sxy: positive(`${name}.gaussian.sxy`, g.sxy, d.gaussian.sxy), compat: nonNegative(`${name}.gaussian.compat`, g.compat, d.gaussian.compat) },
    bilateral: {
      sxy: positive(`${name}.bilateral.sxy`, b.sxy, d.bilateral.sxy),
      srgb: positive(`${name}.bilateral.srgb`, b.srgb, d.bilateral.srgb),
      compat: nonNegative(`${name}.bilateral.compat`, b.compat, d.bilateral.compat)
    },
    iterations: options.iterations === undefined ? d.iterations : v.integer(`${name}.iterations`, options.iterations, 1, MAX_ITERATIONS)
  }
}

function live (name: string, t: unknown): Tensor {
  if (!(t instanceof Tensor)) throw typeError(name, 'a segtorch Tensor', t)
  if (t.disposed) throw new TypeError(`Expected a live Tensor for ${name} but received a disposed one`)
  return t
}

/**
 * Refines per-pixel class probabilities with the dense CRF, on a native thread (the promise
 * settles when it is done; the event loop is never blocked).
 *
 * - `image`: the colours, uint8 (or float32 on the same 0..255 scale), channels first `[C, H, W]`
 *   or `[1, C, H, W]` as segtorch's images, or channels last `[H, W, C]` as decoded images; C is 3
 *   (RGB) or 1 (grey: the appearance kernel uses the intensity). The layout is read from the shape
 *   against `probs`' H and W; when both read (H = W = C), channels first wins.
 * - `probs`: float32 `[K, H, W]` or `[1, K, H, W]`, e.g. `model.predict(x, { output: 'probs' })`.
 *   The unary is -log(max(p, 1e-5)).
 *
 * Returns refined probabilities, float32, shaped as `probs` (each pixel sums to 1).
 */
export async function crf<S extends readonly number[]> (image: Tensor, probs: Tensor<'float32', S>, options?: CrfOptions | true): Promise<Tensor<'float32', S>> {
  const o = resolveCrfOptions(options === undefined ? {} : options, 'crf')
  const im = live('image', image)
  const p = live('probs', probs)
  if (p.dtype !== 'float32') throw typeError('probs dtype', "'float32'", p.dtype)
  const ps = p.shape
  if (!((ps.length === 3) || (ps.length === 4 && ps[0] === 1))) {
    throw new RangeError(`Expected probs of shape [K, H, W] or [1, K, H, W] but received [${ps.join(', ')}]`)
  }
  const [k, h, w] = ps.slice(-3)
  if (k < 1 || h < 1 || w < 1) throw new RangeError(`Expected non-empty probs but received shape [${ps.join(', ')}]`)
  if (im.dtype !== 'uint8' && im.dtype !== 'float32') throw typeError('image dtype', "'uint8' or 'float32'", im.dtype)
  const s = im.shape
  const chw = (s.length === 3 && s[1] === h && s[2] === w) || (s.length === 4 && s[0] === 1 && s[2] === h && s[3] === w)
  const channels = chw ? s[s.length - 3] : s[2]
  const hwc = !chw && s.length === 3 && s[0] === h && s[1] === w
  if ((!chw && !hwc) || (channels !== 1 && channels !== 3)) {
    throw new RangeError(`Expected image of shape [C, H, W], [1, C, H, W] or [H, W, C] with C 1 or 3 and H, W = ${h}, ${w} as probs but received [${s.join(', ')}]`)
  }
  const out = await withStack(() => binding.crf(im._native(), p._native(), o as unknown as Record<string, unknown>, hwc))
  return Tensor.fromNative<'float32', S>(out)
}
