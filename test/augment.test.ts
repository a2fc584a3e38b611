import * as assert from 'assert'
import { spawnSync } from 'child_process'
import * as fs from 'fs'
import * as path from 'path'
import { tensor, Tensor } from '../lib'
import { augment } from '../lib/data'
import { rng, tmpdir } from './helpers'
import { PYTHON } from './twin'


function u8 (n: number, seed: number, k = 256): Uint8Array {
  const r = rng(seed)
  return Uint8Array.from({ length: n }, () => Math.floor(r() * k))
}

function batch (n: number, c: number, h: number, w: number, labels: number[] = [0, 3, 7], seed = 1): { images: Tensor, masks: Tensor } {
  const m = u8(n * h * w, seed + 1, labels.length).map((i) => labels[i])
  return { images: tensor(u8(n * c * h * w, seed), [n, c, h, w]), masks: tensor(m, [n, h, w]) }
}

const data = (t: Tensor | undefined): number[] => Array.from(t?.dataSync() as ArrayLike<number>)

describe('augmentation (native, seeded)', () => {
  it('with no transform the batch comes back unchanged', async () => {
    const b = batch(2, 3, 5, 7)
    const r = await augment(b, { seed: 1 })
    assert.deepStrictEqual(r.images.shape, [2, 3, 5, 7])
    assert.strictEqual(r.images.dtype, 'uint8')
    assert.deepStrictEqual(data(r.images), data(b.images))
    assert.deepStrictEqual(data(r.masks), data(b.masks))
  })

  it('is deterministic: the same seed gives the same batch, another seed another', async () => {
    const b = batch(3, 3, 20, 24)
    const opts = { augment: { scale: [0.5, 2] as [number, number], crop: [16, 16] as [number, number], flip: true, jitter: true } }
    const a1 = await augment(b, { ...opts, seed: 42 })
    const a2 = await augment(b, { ...opts, seed: 42 })
    const a3 = await augment(b, { ...opts, seed: 43 })
    assert.deepStrictEqual(data(a1.images), data(a2.images))
    assert.deepStrictEqual(data(a1.masks), data(a2.masks))
    assert.notDeepStrictEqual(data(a1.images), data(a3.images))
  })

  it('masks are never interpolated: after random scales only the input labels (and padding) appear', async () => {
    const b = batch(4, 3, 17, 23, [0, 3, 7, 200])
    const images = new Set<number>()
    for (let seed = 0; seed < 12; seed++) {
      const r = await augment(b, { seed, augment: { scale: [0.3, 2.7], crop: [20, 20] } })
      for (const x of data(r.masks)) assert.ok([0, 3, 7, 200, 255].includes(x), `label ${x} was invented`)
      for (const x of data(r.images)) images.add(x)
    }
    assert.ok(images.size > 200, 'images are interpolated (bilinear)')
  })

  it('scale 2 repeats each mask pixel in 2 x 2 blocks; resize is nearest for masks', async () => {
    const b = batch(1, 1, 3, 4)
    const r = await augment(b, { seed: 0, augment: { scale: [2, 2], flip: false } })
    assert.deepStrictEqual(r.masks?.shape, [1, 6, 8])
    const m = data(b.masks)
    const out = data(r.masks)
    for (let y = 0; y < 6; y++) for (let x = 0; x < 8; x++) assert.strictEqual(out[y * 8 + x], m[(y >> 1) * 4 + (x >> 1)])
    const z = await augment(b, { resize: [2, 2] })
    // nearest at pixel centres: rows (0.5, 1.5) x 3/2 -> 0, 2; columns (0.5, 1.5) x 4/2 -> 1, 3
    assert.deepStrictEqual(data(z.masks), [m[1], m[3], m[9], m[11]])
  })

  it('images are resampled bilinearly at pixel centres (torch align_corners=false)', async () => {
    const [c, h, w] = [3, 5, 7]
    const b = batch(1, c, h, w)
    const r = await augment(b, { seed: 0, augment: { scale: [1.5, 1.5], flip: false } })
    const [oh, ow] = [Math.round(h * 1.5), Math.round(w * 1.5)]
    assert.deepStrictEqual(r.images.shape, [1, c, oh, ow])
    const src = data(b.images)
    const out = data(r.images)
    const tap = (t: number, n: number, o: number): [number, number, number] => {
      const p = Math.max(0, (t + 0.5) * n / o - 0.5)
      const lo = Math.min(Math.floor(p), n - 1)
      return [lo, Math.min(lo + 1, n - 1), p - lo]
    }
    for (let ch = 0; ch < c; ch++) {
      for (let y = 0; y < oh; y++) {
        const [y0, y1, wy] = tap(y, h, oh)
        for (let x = 0; x < ow; x++) {
          const [x0, x1, wx] = tap(x, w, ow)
          const at = (yy: number, xx: number): number => src[(ch * h + yy) * w + xx]
          const top = at(y0, x0) + (at(y0, x1) - at(y0, x0)) * wx
          const bottom = at(y1, x0) + (at(y1, x1) - at(y1, x0)) * wx
          const want = top + (bottom - top) * wy
          assert.ok(Math.abs(out[(ch * oh + y) * ow + x] - want) <= 0.5 + 1e-3, `(${ch}, ${y}, ${x}): ${out[(ch * oh + y) * ow + x]} vs ${want}`)
        }
      }
    }
  })

  it("matches PyTorch's interpolate: bilinear (align_corners=False) for images, nearest-exact for masks", async function () {
    const check = spawnSync(PYTHON, ['-c', 'import torch'], { encoding: 'utf8' })
    if (check.status !== 0) {
      console.log(`      (skipped: ${PYTHON} cannot import torch)`)
      this.skip()
    }
    const dir = tmpdir('segtorch-interp-')
    const [c, h, w] = [3, 19, 26]
    const b = batch(1, c, h, w, [0, 1, 2, 3, 4, 5])
    fs.writeFileSync(path.join(dir, 'x.bin'), b.images.dataSync() as Uint8Array)
    fs.writeFileSync(path.join(dir, 'm.bin'), b.masks?.dataSync() as Uint8Array)
    for (const s of [0.6, 1.7]) {
      const r = await augment(b, { seed: 0, augment: { scale: [s, s], flip: false } })
      const [, , oh, ow] = r.images.shape
      const py = `
import torch, torch.nn.functional as F, sys
d = sys.argv[1]
x = torch.frombuffer(bytearray(open(d + '/x.bin', 'rb').read()), dtype=torch.uint8).reshape(1, ${c}, ${h}, ${w}).float()
m = torch.frombuffer(bytearray(open(d + '/m.bin', 'rb').read()), dtype=torch.uint8).reshape(1, 1, ${h}, ${w}).float()
y = F.interpolate(x, size=(${oh}, ${ow}), mode='bilinear', align_corners=False).round().clamp(0, 255).to(torch.uint8)
n = F.interpolate(m, size=(${oh}, ${ow}), mode='nearest-exact').to(torch.uint8)
open(d + '/y.bin', 'wb').write(y.numpy().tobytes()); open(d + '/n.bin', 'wb').write(n.numpy().tobytes())
`
      const run = spawnSync(PYTHON, ['-c', py, dir], { encoding: 'utf8' })
      assert.strictEqual(run.status, 0, run.stderr)
      const want = fs.readFileSync(path.join(dir, 'y.bin'))
      const got = data(r.images)
      let worst = 0
      got.forEach((v, i) => { worst = Math.max(worst, Math.abs(v - want[i])) })
      assert.ok(worst <= 1, `scale ${s}: images differ by up to ${worst}`)
      assert.deepStrictEqual(data(r.masks), Array.from(fs.readFileSync(path.join(dir, 'n.bin'))), `scale ${s}: masks`)
    }
    fs.rmSync(dir, { recursive: true, force: true })
  })

  it('crop padding: images with the fill (mean) colour, masks with the ignore index; the rest is the image', async () => {
    const b = batch(1, 3, 6, 5)
    const r = await augment(b, { seed: 3, augment: { scale: false, crop: [9, 8], flip: false }, fill: [10, 20, 30], ignoreIndex: 250 })
    const img = data(r.images)
    const src = data(b.images)
    const m = data(r.masks)
    const sm = data(b.masks)
    for (let y = 0; y < 9; y++) {
      for (let x = 0; x < 8; x++) {
        const inside = y < 6 && x < 5
        assert.strictEqual(m[y * 8 + x], inside ? sm[y * 5 + x] : 250)
        for (let c = 0; c < 3; c++) assert.strictEqual(img[(c * 9 + y) * 8 + x], inside ? src[(c * 6 + y) * 5 + x] : [10, 20, 30][c])
      }
    }
    // default fill: ImageNet's mean x 255 for RGB
    const d = await augment(b, { seed: 3, augment: { scale: false, crop: [7, 5], flip: false } })
    assert.deepStrictEqual([0, 1, 2].map((c) => data(d.images)[(c * 7 + 6) * 5]), [124, 116, 104])
  })

  it('flip mirrors image and mask together, about half the time', async () => {
    const b = batch(1, 2, 4, 6)
    const src = data(b.images)
    const sm = data(b.masks)
    let flipped = 0
    for (let seed = 0; seed < 40; seed++) {
      const r = await augment(b, { seed, augment: { scale: false, flip: true } })
      const img = data(r.images)
      const m = data(r.masks)
      const f = img[0] !== src[0] || m.some((x, i) => x !== sm[i])
      if (f) flipped++
      for (let y = 0; y < 4; y++) {
        for (let x = 0; x < 6; x++) {
          const sx = f ? 5 - x : x
          assert.strictEqual(m[y * 6 + x], sm[y * 6 + sx])
          for (let c = 0; c < 2; c++) assert.strictEqual(img[(c * 4 + y) * 6 + x], src[(c * 4 + y) * 6 + sx])
        }
      }
    }
    assert.ok(flipped > 8 && flipped < 32, `flipped ${flipped} of 40`)
  })

  it('photometric jitter changes images only inside the image, never masks or padding', async () => {
    const b = batch(2, 3, 8, 8)
    const opts = { augment: { scale: false as const, crop: [10, 10] as [number, number], flip: false } }
    const plain = await augment(b, { ...opts, seed: 5 })
    const jit = await augment(b, { ...opts, seed: 5, augment: { ...opts.augment, jitter: { brightness: 0.5, contrast: 0.5, saturation: 0.5, hue: 0.2 } } })
    assert.deepStrictEqual(data(jit.masks), data(plain.masks))
    const a = data(plain.images)
    const j = data(jit.images)
    let changed = 0
    for (let i = 0; i < a.length; i++) {
      const y = Math.floor(i / 10) % 10
      const x = i % 10
      if (y >= 8 || x >= 8) assert.strictEqual(j[i], a[i], 'padding keeps the fill colour')
      else if (j[i] !== a[i]) changed++
    }
    assert.ok(changed > 100)
    // saturation and hue leave grey pixels grey
    const grey = new Uint8Array(3 * 16).map((_, i) => (i % 16) * 16)
    const g = await augment({ images: tensor(grey, [1, 3, 4, 4]) }, { seed: 1, augment: { scale: false, flip: false, jitter: { saturation: 0.9, hue: 0.5 } } })
    assert.deepStrictEqual(data(g.images), Array.from(grey))
    await assert.rejects(augment(batch(1, 1, 4, 4), { augment: { jitter: { hue: 0.1 } } }), /3-channel images for saturation or hue/)
  })

  it('brightness multiplies (clamped to 255)', async () => {
    const img = Uint8Array.from([0, 10, 100, 200])
    const outs = new Set<number>()
    for (let seed = 0; seed < 5; seed++) {
      const r = data((await augment({ images: tensor(img, [1, 1, 2, 2]) }, { seed, augment: { scale: false, flip: false, jitter: { brightness: 0.5 } } })).images)
      const f = r[2] / 100
      assert.ok(f >= 0.5 && f <= 1.5)
      assert.strictEqual(r[0], 0)
      assert.ok(Math.abs(r[1] - 10 * f) <= 1.01)
      assert.ok(Math.abs(r[3] - Math.min(255, 200 * f)) <= 2.5)
      outs.add(r[2])
    }
    assert.ok(outs.size > 1)
  })

  it('normalize gives float32 (x / 255 - mean) / std', async () => {
    const b = batch(1, 3, 2, 3)
    const r = await augment(b, { normalize: { mean: [0.5, 0.4, 0.3], std: [0.2, 0.25, 0.5] } })
    assert.strictEqual(r.images.dtype, 'float32')
    const src = data(b.images)
    data(r.images).forEach((x, i) => {
      const c = Math.floor(i / 6)
      assert.ok(Math.abs(x - (src[i] / 255 - [0.5, 0.4, 0.3][c]) / [0.2, 0.25, 0.5][c]) < 1e-5)
    })
  })

  it('depth follows the geometry by nearest neighbour and pads with 0 (invalid)', async () => {
    const b = batch(1, 3, 3, 3)
    const depth = tensor(Float32Array.from({ length: 9 }, (_, i) => 1 + i * 0.5), [1, 3, 3])
    const r = await augment({ ...b, depth }, { seed: 0, augment: { scale: [2, 2], flip: false, crop: [8, 8] } })
    const d = data(r.depth)
    assert.deepStrictEqual(r.depth?.shape, [1, 8, 8])
    for (let y = 0; y < 8; y++) for (let x = 0; x < 8; x++) assert.strictEqual(d[y * 8 + x], y < 6 && x < 6 ? 1 + ((y >> 1) * 3 + (x >> 1)) * 0.5 : 0)
  })

  it('rejects bad options before any native work', async () => {
    const b = batch(1, 3, 4, 4)
    await assert.rejects(augment(b, { augment: { scale: [2, 1] } }), RangeError)
    await assert.rejects(augment(b, { augment: { crop: [0, 4] } }), RangeError)
    await assert.rejects(augment(b, { augment: { crop: 4 } as never }), TypeError)
    await assert.rejects(augment(b, { augment: { flop: true } } as never), /Unknown option 'flop'/)
    await assert.rejects(augment(b, { fill: [1, 2] }), /3 values in fill/)
    await assert.rejects(augment({ images: tensor(new Float32Array(48), [1, 3, 4, 4]) }), TypeError)
  })
})
