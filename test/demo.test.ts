import * as assert from 'assert'
import { flipVariants, randomCrops, rng, Sample } from '../lib/cli/demo'

// The demo's training crops: random crops with the dihedral flips, and the U-Net paper's elastic
// deformation (lib/cli/demo.ts).
describe('demo crops', () => {
  // A synthetic EM-like image: "membranes" (label 0, dark) on a grid of lines, cell interior (label 1, bright).
  const size = 160
  const label = new Uint8Array(size * size)
  const image = new Uint8Array(size * size)
  for (let i = 0; i < size; i++) {
    for (let j = 0; j < size; j++) {
      const m = j % 20 < 4 || i % 25 < 3
      label[i * size + j] = m ? 0 : 1
      image[i * size + j] = m ? 10 + ((i * 7 + j) % 20) : 200 + ((i + j * 3) % 40)
    }
  }
  const samples: Sample[] = [{ image, label, size }]
  const N = 3
  const C = 96

  // Which of the 8 dihedral variants (bit 0 flips rows, bit 1 columns, bit 2 transposes) of some
  // window of the image each crop of a batch is (every pixel compared); undefined when none matches.
  const variantsOf = ({ x, y }: { x: Uint8Array, y: Uint8Array }, n: number): Array<number | undefined> => {
    const out: Array<number | undefined> = []
    for (let b = 0; b < n; b++) {
      const xb = x.subarray(b * C * C, (b + 1) * C * C)
      const yb = y.subarray(b * C * C, (b + 1) * C * C)
      let found: number | undefined
      for (let oy = 0; oy <= size - C && found === undefined; oy++) {
        for (let ox = 0; ox <= size - C && found === undefined; ox++) {
          for (let t = 0; t < 8 && found === undefined; t++) {
            let same = true
            for (let i = 0; i < C && same; i++) {
              for (let j = 0; j < C && same; j++) {
                let a = t & 1 ? C - 1 - i : i
                let c = t & 2 ? C - 1 - j : j
                if (t & 4) [a, c] = [c, a]
                const si = (oy + a) * size + ox + c
                same = xb[i * C + j] === image[si] && yb[i * C + j] === label[si]
              }
            }
            if (same) found = t
          }
        }
      }
      out.push(found)
    }
    return out
  }

  it('flips: d4 draws all 8 variants, lr only left-right flips, none the plain window', () => {
    const n = 24
    const d4 = variantsOf(randomCrops(samples, n, C, rng(5), 0, 'd4'), n)
    const lr = variantsOf(randomCrops(samples, n, C, rng(5), 0, 'lr'), n)
    const none = variantsOf(randomCrops(samples, n, C, rng(5), 0, 'none'), n)
    for (const v of [...d4, ...lr, ...none]) assert.ok(v !== undefined, 'every crop is a variant of a window')
    // The image's pattern repeats, so a window is found at its first match: compare the variants' sets.
    const kinds = (vs: typeof d4): Set<number> => new Set(vs.map((v) => v ?? -1))
    assert.ok(kinds(d4).size >= 5, `d4 drew ${[...kinds(d4)].join(', ')}`)
    assert.ok([...kinds(d4)].some((t) => (t & 5) !== 0), 'd4 flips rows or transposes')
    for (const v of lr) assert.strictEqual((v ?? 0) & 5, 0, `lr drew variant ${v ?? -1}`)
    assert.deepStrictEqual(kinds(lr), new Set([0, 2]), 'lr flips some crops left-right and not others')
    assert.deepStrictEqual(kinds(none), new Set([0]))
    assert.deepStrictEqual(flipVariants('d4'), [0, 1, 2, 3, 4, 5, 6, 7])
    assert.deepStrictEqual(flipVariants('lr'), [0, 2])
    assert.deepStrictEqual(flipVariants('none'), [0])
  })

  it('without deformation, each crop is an exact flip / transposition of a window of the image', () => {
    for (const [b, t] of variantsOf(randomCrops(samples, N, C, rng(7)), N).entries()) assert.ok(t !== undefined, `crop ${b} is not a flipped / transposed window of the image`)
  })

  it('elastic deformation moves the content smoothly and keeps labels on their pixels', () => {
    const plain = randomCrops(samples, N, C, rng(11))
    const warped = randomCrops(samples, N, C, rng(11), 10)
    const again = randomCrops(samples, N, C, rng(11), 10)
    assert.deepStrictEqual(warped, again, 'the same seed gives the same crops')
    let changed = 0
    let agree = 0
    for (let k = 0; k < warped.y.length; k++) {
      if (warped.y[k] !== plain.y[k]) changed++
      // dark pixels are membrane, bright ones interior: bilinear mixing blurs a pixel at most at an edge
      if ((warped.x[k] < 110 ? 0 : 1) === warped.y[k]) agree++
    }
    assert.ok(changed / warped.y.length > 0.05, `labels changed by the deformation: ${changed / warped.y.length}`)
    assert.ok(agree / warped.y.length > 0.97, `image / label agreement after deformation: ${agree / warped.y.length}`)
    // The membrane fraction is about kept (a smooth deformation neither erases nor thickens the lines much).
    const frac = (y: Uint8Array): number => y.reduce((a, v) => a + (v === 0 ? 1 : 0), 0) / y.length
    assert.ok(Math.abs(frac(warped.y) - frac(plain.y)) < 0.1, `membrane fraction ${frac(warped.y)} against ${frac(plain.y)}`)
    // Smooth: neighbouring pixels' labels agree as often as in the undeformed crops (no tearing).
    const edges = (y: Uint8Array): number => {
      let e = 0
      for (let b = 0; b < N; b++) for (let i = 0; i < C; i++) for (let j = 1; j < C; j++) if (y[b * C * C + i * C + j] !== y[b * C * C + i * C + j - 1]) e++
      return e
    }
    assert.ok(edges(warped.y) < 1.5 * edges(plain.y), `label edges ${edges(warped.y)} against ${edges(plain.y)}`)
  })
})
