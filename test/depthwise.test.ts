// Training depthwise convolutions by segtorch's own loops (blocks/depthwise.h): oneDNN's bf16 backward of strided,
// 5 x 5 and dilated depthwise layers ran 3-30x slower than its float32 one on a CPU with AMX (bench/README.md,
// "Depthwise convolutions"), MobileNetV3's and MobileNetV2's. Here the loops are forced (binding._convTrain's path
// 'depthwise') so that every CPU checks them against a float64 reference and against oneDNN's convolution: outputs,
// input, weight and bias gradients, odd sizes, strides, dilations, channel counts off the vector width, taps that
// only meet padding; and the rules' choice of path.
import * as assert from 'assert'
import { ConvCase, convData, convTrain, GRADIENT_NAMES, referenceFor, relErr } from './conv-reference'

function depthwise (c: number, h: number, w: number, kh: number, kw: number, stride: number, pad: number, dil: number, bias: boolean, n = 2): ConvCase {
  return { n, c, h, w, k: c, kh, kw, stride, pad, dil, groups: c, bias }
}

async function check (k: ConvCase, bf16: boolean): Promise<void> {
  const d = convData(k, k.c * 13 + k.h * 3 + k.kh + (bf16 ? 1 : 0))
  const ours = await convTrain(k, d, 'depthwise', bf16)
  const onednn = await convTrain(k, d, 'onednn', bf16)
  assert.strictEqual(ours.ran, 'depthwise')
  assert.strictEqual(onednn.ran, 'onednn')
  // The loops read the weight and bias in float32 (not rounded to bf16 as autocast's casts for oneDNN).
  const ref = referenceFor(k, d, bf16, false)
  for (let p = 0; p < ref.length; p++) {
    const e = relErr(ours.parts[p], ref[p]); const eo = relErr(onednn.parts[p], referenceFor(k, d, bf16, true)[p])
    const what = `${GRADIENT_NAMES[p]}: depthwise loops ${e.toExponential(2)}, oneDNN ${eo.toExponential(2)}`
    // bf16: one rounding of each result (2^-8 relative at most); float32: float sums.
    assert.ok(bf16 ? e < 5e-3 : e < 2e-6, what)
  }
}

describe('training depthwise convolutions by segtorch\'s loops (MobileNets\' strided, 5 x 5 and dilated layers)', function () {
  this.timeout(120000)
  const cases: Array<[string, ConvCase]> = [
    ['5 x 5, stride 2, 20 channels, 13 x 11', depthwise(20, 13, 11, 5, 5, 2, 2, 1, false)],
    ['3 x 3, stride 2, bias, 72 channels, 9 x 10', depthwise(72, 9, 10, 3, 3, 2, 1, 1, true)],
    ['5 x 5, dilation 2, 40 channels, 8 x 9', depthwise(40, 8, 9, 5, 5, 1, 4, 2, false)],
    ['3 x 3, stride 1, bias, 130 channels (three blocks), 7 x 6', depthwise(130, 7, 6, 3, 3, 1, 1, 1, true)],
    ['2 x 4, stride 3, no padding, one channel, 11 x 14', depthwise(1, 11, 14, 2, 4, 3, 0, 1, false, 3)]
  ]
  for (const bf16 of [false, true]) {
    const t = bf16 ? 'bf16 autocast' : 'float32'
    for (const [name, k] of cases) {
      it(`${t}: ${name}: outputs and gradients as a float64 reference`, async () => { await check(k, bf16) })
    }
  }

  it('taps that only ever meet padding get a zero gradient (3 x 3, dilation 4, on a 3 x 3 map)', async () => {
    const k = depthwise(16, 3, 3, 3, 3, 1, 4, 4, false)
    const d = convData(k, 5)
    for (const bf16 of [false, true]) {
      const ours = await convTrain(k, d, 'depthwise', bf16)
      assert.strictEqual(ours.ran, 'depthwise')
      const dw = ours.parts[2]
      for (let c = 0; c < 16; c++) {
        for (let t = 0; t < 9; t++) {
          if (t !== 4) assert.strictEqual(dw[c * 9 + t], 0, `channel ${c} tap ${t}`)
        }
        assert.notStrictEqual(dw[c * 9 + 4], 0)
      }
    }
  })

  it('the rules: bf16 strided, 5 x 5 and dilated layers and float32 5 x 5 and dilated ones by the loops, the rest by oneDNN', async () => {
    const expect: Array<[ConvCase, boolean, string]> = [
      [depthwise(24, 9, 9, 5, 5, 2, 2, 1, false), true, 'depthwise'],
      [depthwise(24, 9, 9, 3, 3, 2, 1, 1, false), true, 'depthwise'],
      [depthwise(24, 9, 9, 3, 3, 1, 2, 2, false), true, 'depthwise'],
      [depthwise(24, 9, 9, 3, 3, 1, 1, 1, false), true, 'onednn'],
      [depthwise(24, 9, 9, 5, 5, 1, 2, 1, false), false, 'depthwise'],
      [depthwise(24, 9, 9, 3, 3, 1, 2, 2, false), false, 'depthwise'],
      [depthwise(24, 9, 9, 3, 3, 2, 1, 1, false), false, 'onednn'],
      // Groups of two channels are not depthwise.
      [{ ...depthwise(24, 9, 9, 5, 5, 2, 2, 1, false), groups: 12 }, true, 'onednn']
    ]
    for (const [k, bf16, path] of expect) {
      const r = await convTrain(k, convData(k, 3), 'rule', bf16)
      assert.strictEqual(r.ran, path, `${k.kh}x${k.kw} stride ${k.stride} dilation ${k.dil} groups ${k.groups} ${bf16 ? 'bf16' : 'float32'}`)
    }
  })
})
