import * as assert from 'assert'
import { spawnSync } from 'child_process'
import * as fs from 'fs'
import * as path from 'path'
import { backend, createModel } from '../lib'
import { randomImages } from './helpers'
import { countParameters, makeTwin, maxAbsDiff, PYTHON, torchvisionMissing } from './twin'

// The mobilenetv2 backbone as Light-Weight RefineNet uses it: torchvision's features.0..17 (the
// paper's network has no features.18, the 1x1 conv to 1280 channels).
const OPTIONS = { arch: 'lwrefinenet', backbone: 'mobilenetv2', numClasses: 2 } as const

describe('MobileNetV2 backbone', () => {
  it("has torchvision's layout and names (features.0 .. features.17; 1,811,712 = 2,223,872 - features.18's 412,160 parameters)", async () => {
    const m = await createModel(OPTIONS)
    const shapes = await m.stateDictShapes()
    m.dispose()
    assert.strictEqual(countParameters(shapes, 'backbone.'), 2223872 - (320 * 1280 + 2 * 1280))
    assert.deepStrictEqual(shapes['backbone.features.0.0.weight'], [32, 3, 3, 3])
    assert.deepStrictEqual(shapes['backbone.features.1.conv.0.0.weight'], [32, 1, 3, 3])  // t = 1: no expansion
    assert.deepStrictEqual(shapes['backbone.features.1.conv.1.weight'], [16, 32, 1, 1])
    assert.deepStrictEqual(shapes['backbone.features.1.conv.2.running_var'], [16])
    assert.deepStrictEqual(shapes['backbone.features.2.conv.0.0.weight'], [96, 16, 1, 1])
    assert.deepStrictEqual(shapes['backbone.features.2.conv.1.0.weight'], [96, 1, 3, 3])
    assert.deepStrictEqual(shapes['backbone.features.17.conv.2.weight'], [320, 960, 1, 1])
  })

  it('gives feature maps at strides 4, 8, 16, 32 with 24, 32, 96, 320 channels, dilating at output stride 16 and 8', async () => {
    for (const [os, sizes] of [[32, [16, 8, 4, 2]], [16, [16, 8, 4, 4]], [8, [16, 8, 8, 8]]] as const) {
      const m = await createModel({ ...OPTIONS, outputStride: os })
      const feats = await m.features(randomImages(1, 3, 64, 64))
      m.dispose()
      assert.deepStrictEqual(feats.map((f) => f.shape), sizes.map((s, i) => [1, [24, 32, 96, 320][i], s, s]), `output stride ${os}`)
    }
  })

  it("computes torchvision's feature maps (max abs diff <= 1e-4)", async function () {
    const why = torchvisionMissing()
    if (why) { console.log(`      skipped: ${why}`); this.skip() }
    const twin = makeTwin('mobilenet_v2', 64, 96)
    assert.strictEqual(twin.params, 2223872)
    const m = await createModel(OPTIONS)
    try {
      // the twin's state dict is mobilenet_v2().features's: keys '0.0.weight', ...
      const report = await m.loadStateDict(twin.statePlain, { strict: false, prefix: 'backbone.features.' })
      assert.deepStrictEqual([report.missing, report.mismatched], [[], []])
      assert.deepStrictEqual(report.unexpected.sort(), ['18.0.weight', '18.1.bias', '18.1.num_batches_tracked', '18.1.running_mean', '18.1.running_var', '18.1.weight'])
      // torchvision's features.3, .6, .13 and .17 outputs for the twin's input and weights
      const script = [
        'import sys, torch, torchvision',
        'torch.set_num_threads(int(sys.argv[3]))',
        'm = torchvision.models.mobilenet_v2().features',
        'm.load_state_dict(torch.load(sys.argv[1] + "/state.pt"))',
        'm.eval()',
        'x = torch.from_numpy(__import__("numpy").fromfile(sys.argv[1] + "/x.bin", dtype="float32")).view(1, 3, 64, 96)',
        'outs = []',
        'with torch.no_grad():',
        '    for i, block in enumerate(m):',
        '        x = block(x)',
        '        if i in (3, 6, 13, 17): outs.append(x.flatten())',
        'torch.cat(outs).numpy().astype("float32").tofile(sys.argv[2])'
      ].join('\n')
      const file = path.join(twin.dir, 'taps.bin')
      const r = spawnSync(PYTHON, ['-c', script, twin.dir, file, String(backend().threads)], { encoding: 'utf8' })
      assert.strictEqual(r.status, 0, r.stderr)
      const b = fs.readFileSync(file)
      const expected = new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length))
      const feats = await m.features(twin.x as Parameters<typeof m.features>[0])
      let offset = 0
      for (const f of feats) {
        const data = f.dataSync()
        const d = maxAbsDiff(data, expected.subarray(offset, offset + data.length))
        assert.ok(d <= 1e-4, `features ${f.shape}: max abs diff ${d}`)
        offset += data.length
      }
      assert.strictEqual(offset, expected.length)
    } finally {
      m.dispose()
    }
  })
})
