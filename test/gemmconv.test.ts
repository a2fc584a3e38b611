// Training convolutions by matrix products (blocks/conv2d.cc GemmConvTrain: im2col rows times the weight, the
// weight's and the input's gradients as two more products, col2im in float). On CPUs with AMX the large-kernel,
// channel-rich layers (the dilated network's and FCN-VGG's 7 x 7 fc6) train this way in bf16; here the path is
// forced (binding._convTrain's gemm flag) so that every CPU checks it against oneDNN's convolution and against a
// float64 reference: outputs, input, weight and bias gradients.
import * as assert from 'assert'
import { tensor, Tensor } from '../lib'
import { binding } from '../lib/binding'
import { rng } from './helpers'

interface Case { n: number, c: number, h: number, w: number, k: number, kh: number, kw: number, pad: number, dil: number, bias: boolean }

// bf16's rounding to nearest even of each value (what the bf16 paths see of their inputs).
function toBf16 (a: Float32Array): Float32Array {
  const u = new Uint32Array(a.buffer.slice(0))
  for (let i = 0; i < u.length; i++) u[i] = ((u[i] + 0x7fff + ((u[i] >>> 16) & 1)) >>> 16) << 16
  return new Float32Array(u.buffer)
}

// y, dx, dw, db of a stride-1 convolution in float64 (NCHW).
function reference (k: Case, x: Float32Array, wt: Float32Array, b: Float32Array | null, dy: Float32Array): Float64Array[] {
  const ho = k.h + 2 * k.pad - k.dil * (k.kh - 1); const wo = k.w + 2 * k.pad - k.dil * (k.kw - 1)
  const y = new Float64Array(k.n * k.k * ho * wo); const dx = new Float64Array(x.length)
  const dw = new Float64Array(wt.length); const db = new Float64Array(k.k)
  for (let n = 0; n < k.n; n++) {
    for (let o = 0; o < k.k; o++) {
      for (let p = 0; p < ho; p++) {
        for (let q = 0; q < wo; q++) {
          const yi = ((n * k.k + o) * ho + p) * wo + q
          const g = dy[yi]
          let s = b !== null ? b[o] : 0
          db[o] += g
          for (let i = 0; i < k.kh; i++) {
            const r = p + i * k.dil - k.pad
            if (r < 0 || r >= k.h) continue
            for (let j = 0; j < k.kw; j++) {
              const cc = q + j * k.dil - k.pad
              if (cc < 0 || cc >= k.w) continue
              for (let c = 0; c < k.c; c++) {
                const xi = ((n * k.c + c) * k.h + r) * k.w + cc
                const wi = ((o * k.c + c) * k.kh + i) * k.kw + j
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

function maxErr (a: Float32Array, ref: Float64Array): number {
  let d = 0; let scale = 0
  for (let i = 0; i < ref.length; i++) { d = Math.max(d, Math.abs(a[i] - ref[i])); scale = Math.max(scale, Math.abs(ref[i])) }
  return d / scale
}

async function check (k: Case, bf16: boolean): Promise<void> {
  const r = rng(k.c * 7 + k.h + (bf16 ? 1 : 0))
  const x = new Float32Array(k.n * k.c * k.h * k.w).map(() => r() * 2 - 1)
  const wt = new Float32Array(k.k * k.c * k.kh * k.kw).map(() => (r() * 2 - 1) * 0.02)
  const b = k.bias ? new Float32Array(k.k).map(() => r() - 0.5) : null
  const ho = k.h + 2 * k.pad - k.dil * (k.kh - 1); const wo = k.w + 2 * k.pad - k.dil * (k.kw - 1)
  const dy = new Float32Array(k.n * k.k * ho * wo).map(() => r() * 2 - 1)
  // The reference from the values each path computes with: bf16 autocast rounds x, the weight and the bias, and
  // the output gradient arrives in bf16.
  const ref = bf16 ? reference(k, toBf16(x), toBf16(wt), b && toBf16(b), toBf16(dy)) : reference(k, x, wt, b, dy)
  const run = async (gemm: boolean): Promise<Float32Array[]> => {
    const out = await binding._convTrain(tensor(x, [k.n, k.c, k.h, k.w])._native(), tensor(wt, [k.k, k.c, k.kh, k.kw])._native(),
      b ? tensor(b, [k.k])._native() : null, tensor(dy, [k.n, k.k, ho, wo])._native(), k.pad, k.dil, gemm, bf16)
    const v = Tensor.fromNative(out).dataSync() as Float32Array
    const sizes = [ref[0].length, x.length, wt.length, ...(b ? [k.k] : []), 1]
    const parts: Float32Array[] = []
    let o = 0
    for (const s of sizes) { parts.push(v.subarray(o, o + s)); o += s }
    assert.strictEqual(o, v.length)
    return parts
  }
  const gemm = await run(true)
  const onednn = await run(false)
  assert.strictEqual(gemm[gemm.length - 1][0], 1, 'the matrix products ran')
  assert.strictEqual(onednn[onednn.length - 1][0], 0, 'oneDNN\'s convolution ran')
  const names = ['y', 'dx', 'dweight', 'dbias']
  for (let p = 0; p < ref.length; p++) {
    const eg = maxErr(gemm[p], ref[p]); const eo = maxErr(onednn[p], ref[p])
    if (bf16) {
      // One bf16 rounding of each result (2^-8 relative at most): the products' error within that and within
      // twice oneDNN's own.
      assert.ok(eg < 8e-3 && eg <= 2 * eo + 1e-3, `${names[p]}: products ${eg.toExponential(2)}, oneDNN ${eo.toExponential(2)}`)
    } else {
      assert.ok(eg < 2e-5, `${names[p]}: products ${eg.toExponential(2)}, oneDNN ${eo.toExponential(2)}`)
    }
  }
}

describe('training convolutions by matrix products (the 7 x 7 channel-rich layers on AMX)', function () {
  this.timeout(120000)
  const same: Case = { n: 2, c: 256, h: 9, w: 11, k: 256, kh: 7, kw: 7, pad: 6, dil: 2, bias: true }
  const valid: Case = { n: 1, c: 256, h: 13, w: 12, k: 272, kh: 7, kw: 7, pad: 0, dil: 1, bias: false }
  for (const bf16 of [false, true]) {
    const t = bf16 ? 'bf16 autocast' : 'float32'
    it(`${t}: dilation 2, padding 6, bias: outputs and gradients as a float64 reference`, async () => { await check(same, bf16) })
    it(`${t}: no padding, no bias, 272 outputs: outputs and gradients as a float64 reference`, async () => { await check(valid, bf16) })
  }

  it('rejects a gradient of the wrong shape with a RangeError', async () => {
    const x = tensor(new Float32Array(256 * 7 * 7), [1, 256, 7, 7])._native()
    const w = tensor(new Float32Array(256 * 256 * 49), [256, 256, 7, 7])._native()
    await assert.rejects(binding._convTrain(x, w, null, tensor(new Float32Array(4), [1, 1, 2, 2])._native(), 3, 1, true, false), RangeError)
  })
})
