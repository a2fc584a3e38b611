import * as assert from 'assert'
import { spawnSync } from 'child_process'
import * as fs from 'fs'
import * as path from 'path'
import { backend, createModel, ModelOptions, SegtorchError } from '../lib'
import { autoChannelsLast } from '../lib/model'
import { randomImages, randomMasks, rejects, ROOT, tmpdir } from './helpers'
import { makeTwin, maxAbsDiff, parityTolerance, PYTHON, torchvisionMissing } from './twin'

describe('PyTorch state dicts', function () {
  before(function () {
    const why = torchvisionMissing()
    if (why) { console.log(`      skipped: ${why}`); this.skip() }
  })

  const kinds: Array<[string, ModelOptions]> = [
    ['fcn_resnet50', { arch: 'fcn', backbone: 'resnet50', numClasses: 21, aux: true, outputStride: 8 }],
    ['deeplabv3_resnet50', { arch: 'deeplabv3', backbone: 'resnet50', numClasses: 21, aux: true, outputStride: 8 }],
    ['deeplabv3_mobilenet_v3_large', { arch: 'deeplabv3', backbone: 'mobilenetv3_large', numClasses: 21, aux: true }],
    ['lraspp_mobilenet_v3_large', { arch: 'lraspp', numClasses: 21 }]
  ]
  for (const [kind, options] of kinds) {
    it(`loads torchvision ${kind} (OrderedDict) and Python loads ours back into torchvision`, async () => {
      const twin = makeTwin(kind, 64, 96)
      const m = await createModel(options)
      const report = await m.loadStateDict(twin.state)
      assert.deepStrictEqual(report, { missing: [], unexpected: [], mismatched: [], loaded: twin.keys })
      // Train a step (at the defaults) so our weights differ from the file, then hand them to Python.
      // Training leaves the weights channels-last where 'auto' trains so (autoChannelsLast); Python then uses
      // that layout too, so both sides run the same convolution kernels (NCHW weights would pick
      // others and differ by fp32 reduction noise, ~5e-5 of the output's scale here).
      await m.trainStep(randomImages(2, 3, 64, 64), randomMasks(2, 64, 64, 21), { optimizer: { lr: 0.01 } })
      const layout = autoChannelsLast('cpu', 'train', m.config) ? ['channels_last'] : []
      const ours = path.join(twin.dir, 'ours.pt')
      await m.saveStateDict(ours)
      const expected = (await m.forward(twin.x)).dataSync()
      const out = path.join(twin.dir, 'ours_out.bin')
      const r = spawnSync(PYTHON, [path.join(ROOT, 'test', 'python', 'load_ours.py'), kind, ours, path.join(twin.dir, 'x.bin'), '64', '96', out, ...layout],
        { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: String(backend().threads) } })
      assert.strictEqual(r.status, 0, r.stderr)
      const b = fs.readFileSync(out)
      const theirs = new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length))
      const d = maxAbsDiff(expected, theirs)
      assert.ok(d <= parityTolerance(twin), `max abs diff ${d}`)
      m.dispose()
    })
  }

  it('reports missing, unexpected and mis-shaped keys, and strict loading changes nothing', async () => {
    const twin = makeTwin('fcn_resnet50', 32, 32)
    const m = await createModel({ arch: 'fcn', backbone: 'resnet50', numClasses: 5 }) // other class count, no aux
    const x = randomImages(1, 3, 32, 32)
    const before = (await m.forward(x)).dataSync()
    const err = await rejects(m.loadStateDict(twin.state), SegtorchError, /does not match this fcn\/resnet50 model \(nothing was loaded\)/)
    assert.match(err.message, /unexpected keys: aux_classifier/)
    assert.match(err.message, /mis-shaped keys: classifier\.4\.bias: file \[21\] vs model \[5\]/)
    assert.deepStrictEqual((await m.forward(x)).dataSync(), before)
    const loose = await m.loadStateDict(twin.state, { strict: false })
    assert.deepStrictEqual(loose.missing, [])
    assert.strictEqual(loose.mismatched.length, 2)
    assert.ok(loose.unexpected.every((k) => k.startsWith('aux_classifier.')))
    assert.strictEqual(loose.loaded, 334 - 8 - 2) // 8 aux_classifier tensors, 2 mis-shaped
    m.dispose()
  })

  it('refuses a non-zip, a truncated file and a whole pickled module with clear errors', async () => {
    const dir = tmpdir()
    const m = await createModel({ arch: 'fcn', backbone: 'resnet18', numClasses: 2, outputStride: 32 })
    fs.writeFileSync(path.join(dir, 'text.pt'), 'not a checkpoint')
    await rejects(m.loadStateDict(path.join(dir, 'text.pt')), SegtorchError, /not a PyTorch zip checkpoint/)
    const twin = makeTwin('resnet18', 32, 32)
    const bytes = fs.readFileSync(twin.state)
    fs.writeFileSync(path.join(dir, 'half.pt'), bytes.subarray(0, bytes.length >> 1))
    await rejects(m.loadStateDict(path.join(dir, 'half.pt')), SegtorchError, /not a PyTorch zip checkpoint|central directory/)
    const r = spawnSync(PYTHON, ['-c', `import torch, torchvision; torch.save(torchvision.models.resnet18(), ${JSON.stringify(path.join(dir, 'module.pt'))})`], { encoding: 'utf8' })
    assert.strictEqual(r.status, 0, r.stderr)
    await rejects(m.loadStateDict(path.join(dir, 'module.pt')), SegtorchError, /unsupported global torchvision\.models\.resnet\.ResNet/)
    await rejects(m.loadStateDict(path.join(dir, 'missing.pt')), SegtorchError, /cannot open/)
    m.dispose()
  })
})
