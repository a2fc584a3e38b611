import * as assert from 'assert'
import { spawnSync } from 'child_process'
import * as fs from 'fs'
import * as path from 'path'
import { createModel } from '../../lib'
import { randomImages, ROOT, tmpdir } from '../helpers'
import { maxAbsDiff, PYTHON, torchvisionMissing } from '../twin'
import { describeArchitecture } from './shared'

describeArchitecture({
  arch: 'fcn',
  cases: [
    { options: { arch: 'fcn', backbone: 'resnet18', numClasses: 3, outputStride: 8 } },
    { options: { arch: 'fcn', backbone: 'resnet18', numClasses: 2, inChannels: 1, outputStride: 32, aux: true }, trainOutputs: ['aux'] },
    // the classic FCN-8s on VGG-16, fc6 / fc7 narrowed from 4096 to 64 channels (at 4096 they are
    // 120 M of the 134 M parameters, and the battery took 150 s of a 2-core AVX2 CPU); the full width
    // is built below and checked against PyTorch
    { options: { arch: 'fcn', backbone: 'vgg16', numClasses: 2, variant: '8s', fcChannels: 64 }, size: [37, 45] }
  ],
  badOptions: [
    { options: { backbone: 'vgg19' }, error: RangeError, pattern: /resnet18.*for backbone/ },
    { options: { outputStride: 4 }, error: RangeError, pattern: /8, 16, 32 for outputStride/ },
    { options: { backbone: 'vgg16', variant: '4s' }, error: RangeError, pattern: /'32s', '16s', '8s' for variant/ },
    { options: { backbone: 'vgg16', aux: true }, error: RangeError, pattern: /aux: false for fcn with a VGG backbone/ },
    { options: { backbone: 'vgg16', fcChannels: 70000 }, error: RangeError, pattern: /fcChannels/ }
  ]
})

describe('architecture fcn on VGG-16 (FCN-32s / 16s / 8s)', () => {
  // The reference voc-fcn*s nets (21 classes), transposed-conv weights included; the paper: 134M.
  const counts = { '32s': 136152917, '16s': 134815994, '8s': 134489759 } as const
  for (const [variant, expected] of Object.entries(counts)) {
    it(`FCN-${variant} has the reference's ${expected.toLocaleString('en')} parameters and layer names`, async () => {
      const m = await createModel({ arch: 'fcn', backbone: 'vgg16', numClasses: 21, variant: variant as keyof typeof counts })
      const shapes = await m.stateDictShapes()
      const info = m.info()
      m.dispose()
      assert.strictEqual(info.parameters, expected)
      const heads = Object.keys(shapes).filter((k) => !k.startsWith('backbone.')).sort()
      const names = {
        '32s': ['fc6', 'fc7', 'score_fr', 'upscore'],
        '16s': ['fc6', 'fc7', 'score_fr', 'upscore2', 'score_pool4', 'upscore16'],
        '8s': ['fc6', 'fc7', 'score_fr', 'upscore2', 'score_pool4', 'upscore_pool4', 'score_pool3', 'upscore8']
      }[variant as keyof typeof counts]
      assert.deepStrictEqual(heads, names.flatMap((n) => n.startsWith('upscore') ? [`${n}.weight`] : [`${n}.bias`, `${n}.weight`]).sort())
      assert.deepStrictEqual(shapes['fc6.weight'], [4096, 512, 7, 7])
      // the final upsampling is fixed bilinear; the 2x ones are learned (learnUpsampling: true)
      const frozen = { '32s': 21 * 21 * 64 * 64, '16s': 21 * 21 * 32 * 32, '8s': 21 * 21 * 16 * 16 }[variant as keyof typeof counts]
      assert.strictEqual(info.parameters - info.trainableParameters, frozen)
    })
  }

  it('learnUpsampling: false fixes every transposed conv to bilinear, as the reference nets', async () => {
    const m = await createModel({ arch: 'fcn', backbone: 'vgg16', numClasses: 21, learnUpsampling: false })
    const info = m.info()
    m.dispose()
    assert.strictEqual(info.parameters - info.trainableParameters, 21 * 21 * (16 + 16 + 256))
  })

  it('fcChannels sets the width of fc6 / fc7 (4096 in the paper)', async () => {
    const m = await createModel({ arch: 'fcn', backbone: 'vgg16', numClasses: 21, fcChannels: 64 })
    const shapes = await m.stateDictShapes()
    const params = m.info().parameters
    m.dispose()
    assert.deepStrictEqual([shapes['fc6.weight'], shapes['fc7.weight'], shapes['score_fr.weight']], [[64, 512, 7, 7], [64, 64, 1, 1], [21, 64, 1, 1]])
    const fcs = (c: number): number => c * 512 * 49 + c + c * c + c + 21 * c
    assert.strictEqual(params, counts['8s'] - fcs(4096) + fcs(64))
  })
})

describe('architecture fcn: FCN-8s equals PyTorch (torchvision VGG-16 + F.conv_transpose2d)', function () {
  before(function () {
    const why = torchvisionMissing()
    if (why) { console.log(`      skipped: ${why}`); this.skip() }
  })
  // The upscore layers (kernel 4 stride 2 padding 1, kernel 16 stride 8 padding 4) run as a
  // convolution + pixel_shuffle (native/blocks/transposed_conv.h); PyTorch runs conv_transpose2d.
  it('eval logits within 1e-4 of PyTorch\'s on random weights for every layer', async function () {
    this.timeout(600000)
    const m = await createModel({ arch: 'fcn', backbone: 'vgg16', numClasses: 5, variant: '8s' })
    const dir = tmpdir('segtorch-fcn8s-ref-')
    const x = randomImages(1, 3, 64, 96)
    fs.writeFileSync(path.join(dir, 'x.bin'), x.dataSync())
    await m.saveStateDict(path.join(dir, 'ours.pt'))
    const r = spawnSync(PYTHON, [path.join(ROOT, 'test', 'python', 'fcn8s_ref.py'), path.join(dir, 'ours.pt'), path.join(dir, 'rand.pt'),
      path.join(dir, 'x.bin'), '1', '64', '96', path.join(dir, 'ref.bin')], { encoding: 'utf8' })
    assert.strictEqual(r.status, 0, r.stderr)
    await m.loadStateDict(path.join(dir, 'rand.pt'))
    const ours = (await m.forward(x)).dataSync()
    const b = fs.readFileSync(path.join(dir, 'ref.bin'))
    const ref = new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length))
    assert.strictEqual(ref.length, ours.length)
    let scale = 0
    for (const v of ref) scale = Math.max(scale, Math.abs(v))
    assert.ok(scale > 0.5, `reference output scale ${scale}`)
    const d = maxAbsDiff(ours, ref)
    assert.ok(d <= 1e-4, `max abs diff ${d} (output scale ${scale})`)
    m.dispose()
    fs.rmSync(dir, { recursive: true, force: true })
  })
})
