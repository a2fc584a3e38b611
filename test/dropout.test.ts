// Training dropout in one pass each way (blocks/dropout.h): each element kept with probability 1 - p from a
// counter-based hash of one seed drawn from libtorch's generator, the backward recomputing the same mask. Checked
// here through binding._dropoutTrain: the law (kept fraction, scale), the backward's mask equal to the forward's,
// reproducibility under a seed, both types and layouts; and that the networks with dropout train reproducibly.
import * as assert from 'assert'
import * as path from 'path'
import { createModel, loadModel, tensor, Tensor } from '../lib'
import { binding } from '../lib/binding'
import { randomImages, randomMasks, rng, tmpdir } from './helpers'

async function run (x: Float32Array, dy: Float32Array, shape: [number, number, number, number], p: number, bf16: boolean, cl: boolean, seed: number): Promise<{ y: Float32Array, dx: Float32Array, ran: boolean }> {
  const out = Tensor.fromNative(await binding._dropoutTrain(tensor(x, shape)._native(), tensor(dy, shape)._native(), p, bf16, cl, seed)).dataSync() as Float32Array
  const n = x.length
  assert.strictEqual(out.length, 2 * n + 1)
  return { y: out.slice(0, n), dx: out.slice(n, 2 * n), ran: out[2 * n] === 1 }
}

describe('training dropout in one pass (blocks/dropout.h)', function () {
  this.timeout(120000)
  // Values exactly representable in bf16 (multiples of 1/8 in [1, 2)), so that the scaled outputs are exact too.
  const shape: [number, number, number, number] = [2, 24, 33, 35]
  const n = shape.reduce((a, b) => a * b)
  const r = rng(11)
  const x = new Float32Array(n).map(() => 1 + Math.floor(r() * 8) / 8)
  const dy = new Float32Array(n).map(() => (r() < 0.5 ? -1 : 1) * (1 + Math.floor(r() * 8) / 8))

  for (const bf16 of [false, true]) {
    for (const cl of [false, true]) {
      for (const p of [0.5, 0.1, 0.9]) {
        it(`${bf16 ? 'bf16' : 'float32'} ${cl ? 'channels-last' : 'NCHW'} p = ${p}: kept with probability 1 - p, scaled by 1 / (1 - p); the backward's mask is the forward's`, async () => {
          const { y, dx, ran } = await run(x, dy, shape, p, bf16, cl, 7)
          assert.ok(ran, 'the one-pass dropout ran')
          const scale = 1 / (1 - p)
          let kept = 0
          for (let i = 0; i < n; i++) {
            if (y[i] !== 0) {
              kept++
              assert.ok(Math.abs(y[i] - x[i] * scale) <= (bf16 ? 8e-3 : 1e-6) * x[i] * scale, `y[${i}] = ${y[i]}, x = ${x[i]}`)
              assert.ok(Math.abs(dx[i] - dy[i] * scale) <= (bf16 ? 8e-3 : 1e-6) * Math.abs(dy[i]) * scale, `dx[${i}]`)
            } else {
              assert.strictEqual(dx[i], 0, `dx[${i}] where y[${i}] was dropped`)
            }
          }
          // Binomial(n, 1 - p): within 5 standard deviations.
          const sd = Math.sqrt(n * p * (1 - p))
          assert.ok(Math.abs(kept - n * (1 - p)) < 5 * sd, `kept ${kept} of ${n} at p = ${p}`)
        })
      }
    }
  }

  it('the same seed gives the same mask; another seed another; the layout does not change which elements are dropped', async () => {
    const a = await run(x, dy, shape, 0.5, false, false, 3)
    const b = await run(x, dy, shape, 0.5, false, false, 3)
    const c = await run(x, dy, shape, 0.5, false, false, 4)
    assert.deepStrictEqual(a.y, b.y)
    let same = 0
    for (let i = 0; i < n; i++) if ((a.y[i] === 0) === (c.y[i] === 0)) same++
    assert.ok(same < 0.6 * n, `seeds 3 and 4 agree on ${same} of ${n} elements`)
    // Masks are drawn per element of the tensor's memory: a channels-last input drops other elements (by
    // position) than an NCHW one, with the same law. Both are reproducible.
    const d = await run(x, dy, shape, 0.5, false, true, 3)
    const e = await run(x, dy, shape, 0.5, false, true, 3)
    assert.deepStrictEqual(d.y, e.y)
  })

  it('p = 0 and p = 1 go through libtorch\'s own dropout (identity, zeros)', async () => {
    const zero = await run(x, dy, shape, 0, false, false, 1)
    assert.ok(!zero.ran)
    assert.deepStrictEqual(zero.y, x)
    const one = await run(x, dy, shape, 1, false, false, 1)
    assert.ok(!one.ran)
    assert.ok(one.y.every((v) => v === 0))
  })

  for (const arch of ['dilated', 'deeplabv1', 'fcn', 'unet', 'deeplabv3'] as const) {
    it(`${arch}: training with dropout is reproducible under a seed${arch === 'fcn' ? '' : ' and differs between seeds'}`, async () => {
      const options = arch === 'fcn' ? { arch, backbone: 'vgg16', numClasses: 3, fcChannels: 32 }
        : arch === 'dilated' || arch === 'deeplabv1' ? { arch, numClasses: 3, fcChannels: 32 }
          : arch === 'unet' ? { arch, numClasses: 3, baseChannels: 4 } : { arch, backbone: 'resnet18', numClasses: 3 }
      const xs = randomImages(2, 3, 64, 64, 5)
      const ys = randomMasks(2, 64, 64, 3, 6)
      // One initialisation, loaded three times; each run seeded (as fit's `seed` does) before its steps.
      const file = path.join(tmpdir(), `${arch}-dropout.segtorch`)
      const init = await createModel(options as never)
      await init.save(file)
      init.dispose()
      const losses: number[] = []
      for (const seed of [1, 1, 2]) {
        const m = await loadModel(file)
        try {
          await (m as unknown as { _native: () => { seed: (s: number) => Promise<void> } })._native().seed(seed)
          // Three steps, FCN's at a larger rate (its score layers start at zero; at 0.1 the dilated network's ReLUs
          // die and its losses stay at log(3)).
          const lr = arch === 'fcn' ? 0.1 : 0.01
          let loss = NaN
          for (let i = 0; i < 3; i++) loss = (await m.trainStep(xs, ys, { optimizer: { type: 'sgd', lr }, precision: 'fp32' })).loss
          losses.push(loss)
        } finally {
          m.dispose()
        }
      }
      assert.ok(losses.every(Number.isFinite), JSON.stringify(losses))
      assert.strictEqual(losses[0], losses[1], `seed 1 twice: ${losses[0]} and ${losses[1]}`)
      // FCN's score layers start at zero and its 64 x 64 inputs leave fc6 / fc7 a 2 x 2 map: whether their masks
      // reach the loss within three steps depends on the initialisation (on Debian's 1.13 they did not), so only its
      // reproducibility is asserted.
      if (arch !== 'fcn') assert.notStrictEqual(losses[0], losses[2], `seeds 1 and 2: ${JSON.stringify(losses)}`)
    })
  }
})
