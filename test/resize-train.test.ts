// Training's bilinear resize of the logits to the labels' size (blocks/resize.h ResizeBilinearTrain): segtorch's own
// loops forward and backward (ATen's bf16 backward took 12.7 ms of ICNet's and LR-ASPP's steps on the AMX Xeon),
// checked against ATen's operator through binding._resizeTrain: up and down, align_corners both ways, one-pixel and
// unchanged dimensions, float32 and bf16.
import * as assert from 'assert'
import { tensor, Tensor } from '../lib'
import { binding } from '../lib/binding'
import { relativeError, rng, toBf16 } from './helpers'

async function resize (x: Float32Array, dy: Float32Array, n: number, c: number, h: number, w: number, H: number, W: number,
  align: boolean, bf16: boolean, aten: boolean): Promise<{ y: Float32Array, dx: Float32Array, ran: boolean }> {
  const out = Tensor.fromNative(await binding._resizeTrain(tensor(x, [n, c, h, w])._native(), tensor(dy, [n, c, H, W])._native(), align, bf16, aten))
  const v = out.dataSync() as Float32Array
  const ny = n * c * H * W
  assert.strictEqual(v.length, ny + x.length + 1)
  return { y: v.subarray(0, ny), dx: v.subarray(ny, ny + x.length), ran: v[v.length - 1] === 1 }
}

describe('training\'s resize of the logits by segtorch\'s loops', function () {
  this.timeout(60000)
  const cases: Array<[number, number, number, number]> = [[7, 9, 20, 17], [20, 17, 7, 9], [1, 5, 6, 4], [8, 8, 8, 16], [64, 64, 256, 256]]
  for (const [h, w, H, W] of cases) {
    for (const align of [false, true]) {
      it(`${h} x ${w} -> ${H} x ${W}, alignCorners ${align}: outputs and input gradients as ATen's, float32 and bf16`, async () => {
        const n = 2; const c = 3
        const r = rng(h * 31 + W)
        const x = new Float32Array(n * c * h * w).map(() => r() * 2 - 1)
        const dy = new Float32Array(n * c * H * W).map(() => r() * 2 - 1)
        const aten = await resize(x, dy, n, c, h, w, H, W, align, false, true)
        const ours = await resize(x, dy, n, c, h, w, H, W, align, false, false)
        assert.ok(ours.ran && !aten.ran, 'segtorch\'s loops ran, and ATen\'s operator under the scope')
        assert.ok(relativeError(ours.y, aten.y) < 1e-5, `y ${relativeError(ours.y, aten.y)}`)
        assert.ok(relativeError(ours.dx, aten.dx) < 1e-5, `dx ${relativeError(ours.dx, aten.dx)}`)
        // bf16: against ATen's float32 on the same bf16 inputs, within one bf16 rounding (2^-8 relative).
        const xb = toBf16(x); const dyb = toBf16(dy)
        const ref = await resize(xb, dyb, n, c, h, w, H, W, align, false, true)
        const b = await resize(x, dy, n, c, h, w, H, W, align, true, false)
        assert.ok(b.ran)
        assert.ok(relativeError(b.y, ref.y) < 8e-3, `bf16 y ${relativeError(b.y, ref.y)}`)
        assert.ok(relativeError(b.dx, ref.dx) < 8e-3, `bf16 dx ${relativeError(b.dx, ref.dx)}`)
      })
    }
  }
})
