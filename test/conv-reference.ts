// The training convolutions' shared check (test/gemmconv.test.ts, test/depthwise.test.ts): one forward and backward of
// segtorch's Conv2d through binding._convTrain on a path forced wherever the shape fits (oneDNN's, the matrix products,
// the depthwise loops, the taps' products), against a float64 reference computed here.
import * as assert from 'assert'
import { tensor, Tensor } from '../lib'
import { binding } from '../lib/binding'
import { rng, toBf16 } from './helpers'

export interface ConvCase { n: number, c: number, h: number, w: number, k: number, kh: number, kw: number, stride: number, pad: number, dil: number, groups: number, bias: boolean }
export type ConvPath = 'onednn' | 'gemm' | 'depthwise' | 'taps'
const PATHS: ConvPath[] = ['onednn', 'gemm', 'depthwise', 'taps']

export function outputSize (k: ConvCase): [number, number] {
  return [Math.floor((k.h + 2 * k.pad - k.dil * (k.kh - 1) - 1) / k.stride) + 1, Math.floor((k.w + 2 * k.pad - k.dil * (k.kw - 1) - 1) / k.stride) + 1]
}

/** y, dx, dw[, db] of a grouped convolution in float64 (NCHW). */
export function convReference (k: ConvCase, x: Float32Array, wt: Float32Array, b: Float32Array | null, dy: Float32Array): Float64Array[] {
  const [ho, wo] = outputSize(k)
  const cg = k.c / k.groups; const kg = k.k / k.groups
  const y = new Float64Array(k.n * k.k * ho * wo); const dx = new Float64Array(x.length)
  const dw = new Float64Array(wt.length); const db = new Float64Array(k.k)
  for (let n = 0; n < k.n; n++) {
    for (let o = 0; o < k.k; o++) {
      const c0 = Math.floor(o / kg) * cg
      for (let p = 0; p < ho; p++) {
        for (let q = 0; q < wo; q++) {
          const yi = ((n * k.k + o) * ho + p) * wo + q
          const g = dy[yi]
          let s = b !== null ? b[o] : 0
          db[o] += g
          for (let i = 0; i < k.kh; i++) {
            const r = p * k.stride + i * k.dil - k.pad
            if (r < 0 || r >= k.h) continue
            for (let j = 0; j < k.kw; j++) {
              const cc = q * k.stride + j * k.dil - k.pad
              if (cc < 0 || cc >= k.w) continue
              for (let c = 0; c < cg; c++) {
                const xi = ((n * k.c + c0 + c) * k.h + r) * k.w + cc
                const wi = ((o * cg + c) * k.kh + i) * k.kw + j
                s += x[xi] * wt[wi]
                dx[xi] += g * wt[wi]
                dw[wi] += g * x[xi]
              }
            }
          }
          y[yi] = s
        }
      }
    }
  }
  return b !== null ? [y, dx, dw, db] : [y, dx, dw]
}

/** The largest difference from the reference relative to its largest magnitude. */
export function relErr (a: Float32Array, ref: Float64Array): number {
  let d = 0; let scale = 0
  for (let i = 0; i < ref.length; i++) { d = Math.max(d, Math.abs(a[i] - ref[i])); scale = Math.max(scale, Math.abs(ref[i])) }
  return d / scale
}

export interface ConvData { x: Float32Array, wt: Float32Array, b: Float32Array | null, dy: Float32Array }

export function convData (k: ConvCase, seed: number): ConvData {
  const r = rng(seed)
  const [ho, wo] = outputSize(k)
  return {
    x: new Float32Array(k.n * k.c * k.h * k.w).map(() => r() * 2 - 1),
    wt: new Float32Array(k.k * (k.c / k.groups) * k.kh * k.kw).map(() => (r() * 2 - 1) * 0.1),
    b: k.bias ? new Float32Array(k.k).map(() => r() - 0.5) : null,
    dy: new Float32Array(k.n * k.k * ho * wo).map(() => r() * 2 - 1)
  }
}

/** [y, dx, dw, (db)] from the path named (or the rules'), and the path that ran. */
export async function convTrain (k: ConvCase, d: ConvData, path: ConvPath | 'rule', bf16: boolean): Promise<{ parts: Float32Array[], ran: ConvPath }> {
  const [ho, wo] = outputSize(k)
  const out = await binding._convTrain(tensor(d.x, [k.n, k.c, k.h, k.w])._native(), tensor(d.wt, [k.k, k.c / k.groups, k.kh, k.kw])._native(),
    d.b ? tensor(d.b, [k.k])._native() : null, tensor(d.dy, [k.n, k.k, ho, wo])._native(),
    { stride: k.stride, padding: k.pad, dilation: k.dil, groups: k.groups, path, bf16 })
  const v = Tensor.fromNative(out).dataSync() as Float32Array
  const sizes = [k.n * k.k * ho * wo, d.x.length, d.wt.length, ...(d.b ? [k.k] : []), 1]
  const parts: Float32Array[] = []
  let o = 0
  for (const s of sizes) { parts.push(v.subarray(o, o + s)); o += s }
  assert.strictEqual(o, v.length)
  return { parts: parts.slice(0, -1), ran: PATHS[parts[parts.length - 1][0]] }
}

export const GRADIENT_NAMES = ['y', 'dx', 'dweight', 'dbias']

/** Each result of a path (`label`) against the float64 reference: in bf16 one rounding of each result (2^-8 relative at
 *  most), so within 8e-3 and within twice oneDNN's own error (+ 1e-3); in float32 within `fp32Bound`. */
export function assertNearReference (ours: Float32Array[], onednn: Float32Array[], ref: Float64Array[], bf16: boolean, fp32Bound: number, label: string): void {
  for (let p = 0; p < ref.length; p++) {
    const e = relErr(ours[p], ref[p]); const eo = relErr(onednn[p], ref[p])
    const what = `${GRADIENT_NAMES[p]}: ${label} ${e.toExponential(2)}, oneDNN ${eo.toExponential(2)}`
    assert.ok(bf16 ? e < 8e-3 && e <= 2 * eo + 1e-3 : e < fp32Bound, what)
  }
}

/** The float64 reference from the values a path computes with: bf16 autocast rounds x, the weight (where roundWeight)
 *  and the bias, and the output gradient arrives in bf16. */
export function referenceFor (k: ConvCase, d: ConvData, bf16: boolean, roundWeight: boolean): Float64Array[] {
  if (!bf16) return convReference(k, d.x, d.wt, d.b, d.dy)
  return convReference(k, toBf16(d.x), roundWeight ? toBf16(d.wt) : d.wt, d.b && (roundWeight ? toBf16(d.b) : d.b), toBf16(d.dy))
}

/** relu(conv(x) + dy) without gradients (dy as the addend) from the path named (or the rules'), the weight, bias and x
 *  in bf16 where bf16 (an inference copy's), and whether the taps ran. */
export async function convInfer (k: ConvCase, d: ConvData, path: ConvPath | 'rule', bf16: boolean): Promise<{ y: Float32Array, ran: ConvPath }> {
  const [ho, wo] = outputSize(k)
  const out = await binding._convTrain(tensor(d.x, [k.n, k.c, k.h, k.w])._native(), tensor(d.wt, [k.k, k.c / k.groups, k.kh, k.kw])._native(),
    d.b ? tensor(d.b, [k.k])._native() : null, tensor(d.dy, [k.n, k.k, ho, wo])._native(),
    { stride: k.stride, padding: k.pad, dilation: k.dil, groups: k.groups, path, bf16, infer: true })
  const v = Tensor.fromNative(out).dataSync() as Float32Array
  assert.strictEqual(v.length, k.n * k.k * ho * wo + 1)
  return { y: v.subarray(0, v.length - 1), ran: PATHS[v[v.length - 1]] }
}
