import * as assert from 'assert'
import { createModel } from '../../lib'
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
