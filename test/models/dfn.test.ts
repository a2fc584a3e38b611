import * as assert from 'assert'
import { createModel, tensor } from '../../lib'
import { randomImages, rng } from '../helpers'
import { describeArchitecture } from './shared'

describeArchitecture({
  arch: 'dfn',
  cases: [
    { options: { arch: 'dfn', backbone: 'resnet18', numClasses: 3 }, trainOutputs: ['smooth32', 'smooth16', 'smooth8', 'border'] },
    { options: { arch: 'dfn', backbone: 'resnet18', numClasses: 2, deepSupervision: false }, trainOutputs: ['border'] }
  ],
  badOptions: [
    { options: { backbone: 'mobilenetv2' }, error: RangeError, pattern: /'resnet18'.*for backbone/ },
    { options: { outputStride: 8 }, error: RangeError, pattern: /32 for outputStride/ },
    { options: { borderWeight: -1 }, error: RangeError, pattern: /borderWeight/ },
    { options: { deepSupervision: 'yes' }, error: TypeError, pattern: /deepSupervision/ }
  ]
})

/** Boundary targets as DFN derives them: 1 where labels differ in the 3x3 neighbourhood (ignored pixels left out), -1 on ignored pixels. */
function boundaries (labels: Uint8Array, n: number, h: number, w: number, ignore: number): Int8Array {
  const t = new Int8Array(n * h * w)
  for (let b = 0; b < n; b++) {
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const i = (b * h + y) * w + x
        if (labels[i] === ignore) { t[i] = -1; continue }
        let lo = Infinity
        let hi = -Infinity
        for (let dy = -1; dy <= 1; dy++) {
          for (let dx = -1; dx <= 1; dx++) {
            const yy = y + dy
            const xx = x + dx
            if (yy < 0 || yy >= h || xx < 0 || xx >= w) continue
            const v = labels[(b * h + yy) * w + xx]
            if (v === ignore) continue
            lo = Math.min(lo, v)
            hi = Math.max(hi, v)
          }
        }
        t[i] = hi !== lo ? 1 : 0
      }
    }
  }
  return t
}

describe('architecture dfn', () => {
  it('supervises the border output with the focal loss (gamma 2) on label boundaries, weight 0.1', async () => {
    const m = await createModel({ arch: 'dfn', backbone: 'resnet18', numClasses: 3 })
    try {
      const [n, h, w] = [2, 64, 64]
      // blocky labels (regions of 8 x 8 pixels) with some ignored blocks
      const r = rng(7)
      const blocks = Array.from({ length: n * 8 * 8 }, () => { const v = Math.floor(r() * 4); return v === 3 ? 255 : v })
      const labels = new Uint8Array(n * h * w).map((_, i) => {
        const b = Math.floor(i / (h * w))
        const y = Math.floor((i % (h * w)) / w)
        const x = i % w
        return blocks[(b * 8 + (y >> 3)) * 8 + (x >> 3)]
      })
      const x = randomImages(n, 3, h, w, 11)
      await m.train()
      const out = await m.forward(x, { outputs: 'all' })
      assert.deepStrictEqual(out.border.shape, [n, 1, h, w])
      for (const k of ['smooth32', 'smooth16', 'smooth8']) assert.deepStrictEqual(out[k].shape, [n, 3, h, w])
      const z = out.border.dataSync()
      const t = boundaries(labels, n, h, w, 255)
      let sum = 0
      let count = 0
      let positives = 0
      for (let i = 0; i < t.length; i++) {
        if (t[i] < 0) continue
        // In log space: log(pt) = -softplus(-s), 1 - pt = sigmoid(-s), s = z for a boundary pixel, -z
        // otherwise (random weights can give |z| > 37, where 1 - sigmoid(z) is 0 in float64).
        const s = t[i] === 1 ? z[i] : -z[i]
        const logPt = -(Math.max(-s, 0) + Math.log1p(Math.exp(-Math.abs(s))))
        const oneMinusPt = 1 / (1 + Math.exp(s))
        sum += -(oneMinusPt ** 2) * logPt
        count++
        positives += t[i]
      }
      assert.ok(positives > 100 && positives < count / 2, `${positives} boundary pixels of ${count}`)
      // fp32 and NCHW as the forward above (the defaults would be bf16 and channels-last on a bf16 CPU)
      const step = await m.trainStep(x, tensor(labels, [n, h, w]), { optimizer: { lr: 1e-4 }, precision: 'fp32', channelsLast: false })
      const expected = sum / count
      assert.ok(Math.abs(step.parts.border - expected) < 1e-4 * Math.max(1, expected), `border loss ${step.parts.border} vs ${expected}`)
      const p = step.parts
      const total = p.main + p.smooth32 + p.smooth16 + p.smooth8 + 0.1 * p.border
      assert.ok(Math.abs(step.loss - total) < 1e-4 * total, `loss ${step.loss} vs ${total}`)
    } finally {
      m.dispose()
    }
  })

  it('has the smooth network (RRB, CAB, global context) and the border network with TorchSeg names', async () => {
    const m = await createModel({ arch: 'dfn', backbone: 'resnet18', numClasses: 3 })
    const shapes = await m.stateDictShapes()
    m.dispose()
    assert.deepStrictEqual(shapes['global_context.1.conv.weight'], [512, 512, 1, 1])
    assert.deepStrictEqual(shapes['smooth_pre_rrbs.0.conv_1x1.weight'], [512, 512, 1, 1])
    assert.deepStrictEqual(shapes['smooth_pre_rrbs.3.conv_1x1.weight'], [512, 64, 1, 1])
    assert.deepStrictEqual(shapes['smooth_pre_rrbs.3.cbr.conv.weight'], [512, 512, 3, 3])
    assert.deepStrictEqual(shapes['cabs.0.channel_attention.1.conv.weight'], [512, 1024, 1, 1])
    assert.deepStrictEqual(shapes['smooth_heads.3.conv.weight'], [3, 27, 1, 1])
    assert.deepStrictEqual(shapes['border_pre_rrbs.0.conv_1x1.weight'], [21, 64, 1, 1])
    assert.ok(!('border_aft_rrbs.0.conv_1x1.weight' in shapes) && 'border_aft_rrbs.3.conv_1x1.weight' in shapes)
    assert.deepStrictEqual(shapes['border_head.conv.weight'], [1, 9, 1, 1])
  })
})
