// Training convolutions by matrix products (blocks/conv2d.cc GemmConvTrain: im2col rows times the weight, the
// weight's and the input's gradients as two more products, col2im in float). On CPUs with AMX the large-kernel,
// channel-rich layers (the dilated network's and FCN-VGG's 7 x 7 fc6) and the channel-rich layers on maps of 512
// pixels or fewer in the batch (a ResNet's last stages at 8 x 8) train this way in bf16; here the path is
// forced (binding._convTrain's path 'gemm') so that every CPU checks it against oneDNN's convolution and against a
// float64 reference: outputs, input, weight and bias gradients.
import * as assert from 'assert'
import { tensor } from '../lib'
import { binding } from '../lib/binding'
import { assertNearReference, ConvCase, convData, convTrain, referenceFor } from './conv-reference'

async function check (k: ConvCase, bf16: boolean): Promise<void> {
  const d = convData(k, k.c * 7 + k.h + (bf16 ? 1 : 0))
  // bf16 autocast rounds the weight and bias for both paths.
  const ref = referenceFor(k, d, bf16, true)
  const gemm = await convTrain(k, d, 'gemm', bf16)
  const onednn = await convTrain(k, d, 'onednn', bf16)
  assert.strictEqual(gemm.ran, 'gemm')
  assert.strictEqual(onednn.ran, 'onednn')
  assertNearReference(gemm.parts, onednn.parts, ref, bf16, 2e-5, 'products')
}

describe('training convolutions by matrix products (the 7 x 7 channel-rich layers and small maps on AMX)', function () {
  this.timeout(120000)
  const same: ConvCase = { n: 2, c: 256, h: 9, w: 11, k: 256, kh: 7, kw: 7, stride: 1, pad: 6, dil: 2, groups: 1, bias: true }
  const valid: ConvCase = { n: 1, c: 256, h: 13, w: 12, k: 272, kh: 7, kw: 7, stride: 1, pad: 0, dil: 1, groups: 1, bias: false }
  // ICNet's low branch: 3 x 3 with a dilation near the map's size (most taps on padding), and a 1 x 1.
  const small: ConvCase = { n: 2, c: 256, h: 6, w: 5, k: 256, kh: 3, kw: 3, stride: 1, pad: 4, dil: 4, groups: 1, bias: false }
  const pointwise: ConvCase = { n: 2, c: 320, h: 4, w: 5, k: 256, kh: 1, kw: 1, stride: 1, pad: 0, dil: 1, groups: 1, bias: true }
  for (const bf16 of [false, true]) {
    const t = bf16 ? 'bf16 autocast' : 'float32'
    it(`${t}: dilation 2, padding 6, bias: outputs and gradients as a float64 reference`, async () => { await check(same, bf16) })
    it(`${t}: no padding, no bias, 272 outputs: outputs and gradients as a float64 reference`, async () => { await check(valid, bf16) })
    it(`${t}: 3 x 3, dilation 4 on a 6 x 5 map: outputs and gradients as a float64 reference`, async () => { await check(small, bf16) })
    it(`${t}: 1 x 1, bias, 320 -> 256: outputs and gradients as a float64 reference`, async () => { await check(pointwise, bf16) })
  }

  it('rejects a gradient of the wrong shape with a RangeError', async () => {
    const x = tensor(new Float32Array(256 * 7 * 7), [1, 256, 7, 7])._native()
    const w = tensor(new Float32Array(256 * 256 * 49), [256, 256, 7, 7])._native()
    const options = { stride: 1, padding: 3, dilation: 1, groups: 1, path: 'gemm' as const, bf16: false }
    await assert.rejects(binding._convTrain(x, w, null, tensor(new Float32Array(4), [1, 1, 2, 2])._native(), options), RangeError)
  })
})
