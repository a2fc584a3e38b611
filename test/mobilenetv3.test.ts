import * as assert from 'assert'
import { spawnSync } from 'child_process'
import * as path from 'path'
import { createModel } from '../lib'
import { randomImages, randomMasks, tmpdir } from './helpers'
import { countParameters, PYTHON, torchvisionMissing } from './twin'

// The mobilenetv3_large backbone: torchvision's mobilenet_v3_large().features as its segmentation
// models hold it (children 0..16 under backbone., no `features.`), 2,971,952 parameters.
// Its parity with torchvision is checked through deeplabv3 and lraspp in test/parity.test.ts.
const OPTIONS = { arch: 'lraspp', backbone: 'mobilenetv3_large', numClasses: 2, interChannels: 8 } as const

describe('MobileNetV3-Large backbone', () => {
  it("has torchvision's layout, names and 2,971,952 parameters", async () => {
    const m = await createModel(OPTIONS)
    const shapes = await m.stateDictShapes()
    m.dispose()
    assert.strictEqual(countParameters(shapes, 'backbone.'), 2971952)
    assert.deepStrictEqual(shapes['backbone.0.0.weight'], [16, 3, 3, 3])
    assert.deepStrictEqual(shapes['backbone.1.block.0.0.weight'], [16, 1, 3, 3])  // expansion 16 -> 16: no 1x1 expand
    assert.deepStrictEqual(shapes['backbone.1.block.1.0.weight'], [16, 16, 1, 1])
    assert.deepStrictEqual(shapes['backbone.4.block.1.0.weight'], [72, 1, 5, 5])
    assert.deepStrictEqual(shapes['backbone.4.block.2.fc1.weight'], [24, 72, 1, 1])  // squeeze 72 / 4 -> 24 (multiple of 8)
    assert.deepStrictEqual(shapes['backbone.4.block.2.fc2.bias'], [72])
    assert.deepStrictEqual(shapes['backbone.13.block.2.fc1.weight'], [168, 672, 1, 1])
    assert.deepStrictEqual(shapes['backbone.15.block.3.1.running_var'], [160])
    assert.deepStrictEqual(shapes['backbone.16.0.weight'], [960, 160, 1, 1])
    assert.ok(!('backbone.17.0.weight' in shapes))
  })

  it("loads torchvision's mobilenet_v3_large().features state dict (ImageNet weights) with prefix 'backbone.'", async function () {
    const why = torchvisionMissing()
    if (why) { console.log(`      skipped: ${why}`); this.skip() }
    const file = path.join(tmpdir(), 'features.pt')
    const r = spawnSync(PYTHON, ['-c', 'import sys, torch, torchvision; torch.save(torchvision.models.mobilenet_v3_large().features.state_dict(), sys.argv[1])', file], { encoding: 'utf8' })
    assert.strictEqual(r.status, 0, r.stderr)
    const m = await createModel({ arch: 'deeplabv3', backbone: 'mobilenetv3_large', numClasses: 21 })
    try {
      // strict: every backbone.* parameter and buffer is in the file (the head keeps its own)
      const report = await m.loadStateDict(file, { prefix: 'backbone.' })
      assert.deepStrictEqual([report.missing, report.unexpected, report.mismatched], [[], [], []])
    } finally {
      m.dispose()
    }
  })

  it('gives feature maps of 24, 40, 112, 960 channels at strides 4, 8, 16, 32, dilating the last stages at output stride 16 and 8', async () => {
    for (const [os, sizes] of [[32, [16, 8, 4, 2]], [16, [16, 8, 4, 4]], [8, [16, 8, 8, 8]]] as const) {
      const m = await createModel({ ...OPTIONS, outputStride: os })
      const feats = await m.features(randomImages(1, 3, 64, 64))
      m.dispose()
      assert.deepStrictEqual(feats.map((f) => f.shape), sizes.map((s, i) => [1, [24, 40, 112, 960][i], s, s]), `output stride ${os}`)
    }
  })

  it('trains in bf16 with channels-last (hardswish and hardsigmoid have bf16 CPU backward kernels in libtorch 1.13)', async () => {
    const m = await createModel({ arch: 'deeplabv3', backbone: 'mobilenetv3_large', numClasses: 3, aux: true })
    try {
      const x = randomImages(2, 3, 48, 56, 3)
      const y = randomMasks(2, 48, 56, 3, 4)
      const options = { precision: 'bf16', channelsLast: true, optimizer: { type: 'adamw', lr: 1e-3 } } as const
      assert.deepStrictEqual(await m.checkGradients(x, y, options), [])
      for (let i = 0; i < 2; i++) {
        const r = await m.trainStep(x, y, options)
        assert.ok(Number.isFinite(r.loss) && r.loss > 0, `loss ${r.loss}`)
      }
    } finally {
      m.dispose()
    }
  })
})
