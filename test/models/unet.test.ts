import * as assert from 'assert'
import { spawnSync } from 'child_process'
import * as fs from 'fs'
import * as path from 'path'
import { createModel } from '../../lib'
import { randomImages, ROOT, tmpdir } from '../helpers'
import { maxAbsDiff, PYTHON, torchvisionMissing } from '../twin'
import { describeArchitecture } from './shared'

describeArchitecture({
  arch: 'unet',
  cases: [
    { options: { arch: 'unet', numClasses: 2, inChannels: 1, baseChannels: 8 } },
    { options: { arch: 'unet', numClasses: 3, baseChannels: 8, upsampling: 'bilinear', batchNorm: true, dropout: 0 } }
  ],
  badOptions: [
    { options: { backbone: 'resnet18' }, error: RangeError, pattern: /'none' for backbone/ },
    { options: { upsampling: 'nearest' }, error: RangeError, pattern: /'transposed', 'bilinear' for upsampling/ },
    { options: { baseChannels: 0 }, error: RangeError, pattern: /between 1 and 1024 for baseChannels/ },
    { options: { aux: true }, error: RangeError, pattern: /aux: false for unet/ }
  ]
})

describe('architecture unet', () => {
  // No published count: these follow from the paper's layer list (64 .. 1024 channels).
  for (const [options, expected] of [
    [{ inChannels: 1, numClasses: 2 }, 31030658],
    [{ numClasses: 2, upsampling: 'bilinear' }, 28942850],
    // with batch norm: the count of milesial/Pytorch-UNet's UNet(3, 2)
    [{ numClasses: 2, batchNorm: true }, 31037698]
  ] as const) {
    it(`has ${expected.toLocaleString('en')} parameters with ${JSON.stringify(options)}`, async () => {
      const m = await createModel({ arch: 'unet', ...options })
      assert.strictEqual(m.info().parameters, expected)
      assert.strictEqual(m.info().backbone, 'none')
      m.dispose()
    })
  }
})

describe('architecture unet: transposed upsampling equals PyTorch conv_transpose2d', function () {
  before(function () {
    const why = torchvisionMissing()
    if (why) { console.log(`      skipped: ${why}`); this.skip() }
  })
  // segtorch computes the 2x2 stride-2 transposed convolutions as a 1x1 convolution + pixel_shuffle
  // (native/blocks/transposed_conv.h); PyTorch runs F.conv_transpose2d on the same state dict.
  for (const options of [{ baseChannels: 8 }, { baseChannels: 8, batchNorm: true, inChannels: 1 }]) {
    it(`eval logits within 1e-4 of PyTorch's with ${JSON.stringify(options)}`, async () => {
      const m = await createModel({ arch: 'unet', numClasses: 3, ...options })
      const c = options.inChannels ?? 3
      const x = randomImages(2, c, 48, 80)
      const dir = tmpdir('segtorch-unet-ref-')
      await m.saveStateDict(path.join(dir, 'ours.pt'))
      fs.writeFileSync(path.join(dir, 'x.bin'), x.dataSync())
      const ours = (await m.forward(x)).dataSync()
      const r = spawnSync(PYTHON, [path.join(ROOT, 'test', 'python', 'unet_ref.py'), path.join(dir, 'ours.pt'), path.join(dir, 'x.bin'),
        '2', String(c), '48', '80', path.join(dir, 'ref.bin')], { encoding: 'utf8' })
      assert.strictEqual(r.status, 0, r.stderr)
      const b = fs.readFileSync(path.join(dir, 'ref.bin'))
      const ref = new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length))
      assert.strictEqual(ref.length, ours.length)
      const d = maxAbsDiff(ours, ref)
      assert.ok(d <= 1e-4, `max abs diff ${d}`)
      m.dispose()
    })
  }
})
