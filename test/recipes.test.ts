import * as assert from 'assert'
import { spawnSync } from 'child_process'
import * as fs from 'fs'
import * as path from 'path'
import { createModel, recipe, recipes, getRecipe, RecipeName, ARCHITECTURES } from '../lib'
import { folder, loader, membrane, classFrequencies, classWeights, weightsFromFrequencies } from '../lib/data'
import { greyPng, labels, rgbFile } from './data-fixtures'
import { CLI_ARGS, ROOT, tmpdir, rejects } from './helpers'

const W = 40
const H = 32

describe('recipes', function () {
  this.timeout(600000)
  let dir: string

  before(async () => {
    dir = tmpdir('segtorch-recipes-')
    for (let i = 0; i < 4; i++) {
      await rgbFile(path.join(dir, 'images', `img${i}.png`), W, H, i + 1)
      await greyPng(path.join(dir, 'masks', `img${i}.png`), labels(W, H, 3, i + 10), W, H)
    }
  })

  const tiny = (channels: 1 | 3 = 3): ReturnType<typeof folder> => folder({ images: path.join(dir, 'images'), masks: path.join(dir, 'masks'), classes: ['a', 'b', 'c'], channels })

  it('has the recipes the issue names, each complete and consistent with the architecture table', () => {
    for (const name of ['camvid-cpu', 'camvid-gpu', 'voc-pspnet', 'voc-deeplabv3plus', 'cityscapes-pspnet', 'ade20k-pspnet', 'membrane']) {
      const r = getRecipe(name)
      assert.strictEqual(r.name, name)
      assert.ok(r.summary.length > 20 && r.source.length > 20, name)
      const o = r.options
      const spec = ARCHITECTURES[o.arch]
      assert.ok(spec, `${name}: ${o.arch}`)
      if (o.backbone !== undefined) assert.ok(spec.backbones.includes(o.backbone), `${name}: ${o.arch} has no backbone ${o.backbone}`)
      if (o.outputStride !== undefined) assert.ok(spec.outputStrides.includes(o.outputStride), `${name}: output stride`)
      if (o.aux) assert.ok(spec.aux, `${name}: aux`)
      assert.ok(o.iterations !== undefined || o.timeLimit !== undefined || o.epochs !== undefined, `${name}: a budget`)
      for (const k of ['batchSize', 'optimizer', 'lr', 'weightDecay', 'schedule']) assert.ok((o as unknown as Record<string, unknown>)[k] !== undefined, `${name}: ${k}`)
    }
    assert.strictEqual(Object.keys(recipes).length, 7)
    assert.throws(() => getRecipe('camvid'), (e: Error) => e instanceof RangeError && /Expected a recipe name \(camvid-cpu, .*membrane\) but received 'camvid'/.test(e.message))
  })

  it('the papers\' settings: PSPNet (SGD 0.01 poly, aux 0.4, 473 crops, 30k steps), DeepLab v3+ (0.007, 513, OS 16)', async () => {
    const psp = await recipe('voc-pspnet')
    assert.deepStrictEqual(psp.model, { arch: 'pspnet', backbone: 'resnet101', outputStride: 8, aux: true })
    assert.deepStrictEqual(psp.fit.optimizer, { type: 'sgd', lr: 0.01, weightDecay: 1e-4, momentum: 0.9 })
    assert.deepStrictEqual(psp.fit.schedule, { type: 'poly', warmup: 0 })
    assert.strictEqual(psp.fit.iterations, 30000)
    assert.strictEqual(psp.fit.auxWeight, 0.4)
    assert.strictEqual(psp.fit.headLrMultiplier, 10)
    assert.deepStrictEqual(psp.loader.augment, { scale: [0.5, 2], flip: true, jitter: false, crop: [473, 473] })
    assert.strictEqual(psp.loader.batchSize, 16)
    const dl = await recipe('voc-deeplabv3plus')
    assert.deepStrictEqual(dl.model, { arch: 'deeplabv3plus', backbone: 'xception65', outputStride: 16 })
    assert.strictEqual(dl.fit.optimizer?.lr, 0.007)
    assert.deepStrictEqual(dl.loader.augment && dl.loader.augment.crop, [513, 513])
    const city = await recipe('cityscapes-pspnet')
    assert.strictEqual(city.fit.loss, 'ohem')
    assert.deepStrictEqual(city.fit.lossOptions, { ohemThreshold: 0.7, ohemMinKept: 100000 })
    // overrides replace fields, the rest stays
    const small = await recipe('voc-pspnet', { backbone: 'resnet18', lr: 0.005 })
    assert.strictEqual(small.model.backbone, 'resnet18')
    assert.strictEqual(small.fit.optimizer?.lr, 0.005)
    assert.strictEqual(small.fit.iterations, 30000)
    assert.strictEqual(small.options.backbone, 'resnet18')
    // modelOption merges key by key over the recipe's; another network drops the recipe's
    const m = await recipe('membrane', { modelOption: { baseChannels: 8 } })
    assert.deepStrictEqual(m.model, { baseChannels: 8, batchNorm: true, arch: 'unet', inChannels: 1 })
    const plain = await recipe('membrane', { modelOption: { batchNorm: false } })
    assert.strictEqual(plain.model.batchNorm, false)
    const other = await recipe('membrane', { arch: 'fcn', backbone: 'resnet18' })
    assert.deepStrictEqual(other.model, { arch: 'fcn', backbone: 'resnet18', inChannels: 1 })
    assert.deepStrictEqual(recipes.membrane.options.modelOption, { baseChannels: 16, batchNorm: true }, 'the recipe itself is unchanged')
  })

  it('a recipe whose class weights come from the masks needs the training data, and computes them', async () => {
    await rejects(recipe('camvid-cpu'), TypeError, /Expected the training data set as recipe\(\)'s third argument: recipe 'camvid-cpu' computes its class weights \('sqrt-median-frequency'\)/)
    await rejects(recipe('nope' as RecipeName), RangeError, /Expected a recipe name/)
    const plan = await recipe('camvid-cpu', {}, tiny())
    const w = plan.fit.lossOptions?.classWeights as number[]
    assert.strictEqual(w.length, 3)
    assert.deepStrictEqual(w, await classWeights(tiny(), 'sqrt-median-frequency'))
    assert.strictEqual(plan.fit.timeLimit, 1500)
    assert.deepStrictEqual(plan.loader.resize, [180, 240])
    assert.deepStrictEqual(plan.validationLoader, { batchSize: 1, resize: [180, 240] })
    // given as numbers, no data needed
    const fixed = await recipe('camvid-cpu', { classWeights: [1, 2, 3] })
    assert.deepStrictEqual(fixed.fit.lossOptions?.classWeights, [1, 2, 3])
  })

  it("median-frequency weights: SegNet's rule, checked by hand", async () => {
    // mask A: 6 pixels of class 0, 2 of class 1 (8 labelled, 2 ignored); mask B: 4 of class 0, 4 of class 2
    const d = tmpdir('segtorch-freq-')
    await rgbFile(path.join(d, 'i', 'a.png'), 5, 2, 1)
    await rgbFile(path.join(d, 'i', 'b.png'), 4, 2, 2)
    await greyPng(path.join(d, 'm', 'a.png'), Uint8Array.from([0, 0, 0, 0, 0, 0, 1, 1, 255, 255]), 5, 2)
    await greyPng(path.join(d, 'm', 'b.png'), Uint8Array.from([0, 0, 0, 0, 2, 2, 2, 2]), 4, 2)
    const ds = folder({ images: path.join(d, 'i'), masks: path.join(d, 'm'), classes: 4 })
    const f = await classFrequencies(ds)
    assert.deepStrictEqual(f.pixels, [10, 2, 4, 0])
    assert.deepStrictEqual(f.present, [16, 8, 8, 0]) // labelled pixels of the images each class appears in
    assert.deepStrictEqual(f.frequency, [10 / 16, 2 / 8, 4 / 8, 0])
    // median of the present classes' frequencies: 0.5
    const w = weightsFromFrequencies(f, 'median-frequency')
    assert.deepStrictEqual(w, [0.5 / (10 / 16), 0.5 / 0.25, 1, 1])
    const s = weightsFromFrequencies(f, 'sqrt-median-frequency')
    assert.ok(Math.abs(s[1] - Math.SQRT2) < 1e-12)
    assert.throws(() => weightsFromFrequencies(f, 'mean' as 'median-frequency'), RangeError)
  })

  it('membrane: the shipped ISBI 2012 images as a data set (grey, 0 membrane / 1 interior), for --recipe membrane --data membrane:DIR', async () => {
    const ds = membrane(path.join(ROOT, 'data', 'membrane'))
    assert.strictEqual(ds.length, 30)
    assert.deepStrictEqual(ds.classes, ['membrane', 'cell interior'])
    const s = await ds.get(0)
    assert.strictEqual(s.channels, 1)
    assert.strictEqual(s.width * s.height, 512 * 512)
    const m = s.mask as Uint8Array
    let ones = 0
    for (const x of m) { assert.ok(x === 0 || x === 1, `label ${x}`); ones += x }
    assert.ok(ones > 0.5 * m.length && ones < 0.95 * m.length, `interior fraction ${ones / m.length}`)
  })

  for (const name of Object.keys(recipes) as RecipeName[]) {
    it(`${name}: its model, loader and fit options run two steps on tiny data`, async () => {
      const r = getRecipe(name)
      const channels = r.data === 'membrane' ? 1 : 3
      const ds = tiny(channels)
      const plan = await recipe(name, { crop: [32, 32], ...(r.options.resize ? { resize: [32, 40] as const } : {}), batchSize: 2, iterations: 2, timeLimit: undefined }, ds)
      const model = await createModel({ ...plan.model, numClasses: 3, inChannels: channels })
      try {
        assert.strictEqual(model.config.arch, r.options.arch)
        if (r.options.backbone) assert.strictEqual(model.config.backbone, r.options.backbone)
        const h = await model.fit(loader(ds, { ...plan.loader, seed: 1 }), { ...plan.fit, validation: loader(ds, plan.validationLoader) })
        assert.strictEqual(h.steps, 2)
        const last = h.epochs[h.epochs.length - 1]
        assert.ok(Number.isFinite(last.loss) && last.loss > 0, `loss ${last.loss}`)
        assert.ok(last.validation && Number.isFinite(last.validation.mIoU))
        if (r.options.aux) assert.ok('aux' in last.lossParts, 'auxiliary loss')
      } finally {
        model.dispose()
      }
    })
  }

  it('fit({ timeLimit }): stops after the time, the poly schedule follows the clock', async () => {
    const model = await createModel({ arch: 'unet', baseChannels: 4, numClasses: 3 })
    try {
      const ds = tiny()
      const lrs: number[] = []
      const t0 = Date.now()
      const h = await model.fit(loader(ds, { batchSize: 2, augment: { crop: [32, 32] }, seed: 1 }), {
        timeLimit: 3, optimizer: { type: 'adam', lr: 0.01 }, schedule: { type: 'poly' }, onStep: (s) => { lrs.push(s.lr) }
      })
      const seconds = (Date.now() - t0) / 1000
      assert.ok(h.steps >= 3, `steps ${h.steps}`)
      assert.ok(seconds >= 3 && seconds < 15, `${seconds} s`)
      assert.ok(h.epochs.length >= 1)
      assert.ok(lrs[0] > 0.009, `lr starts at lr0: ${lrs[0]}`)
      assert.ok(lrs[lrs.length - 1] < 0.5 * lrs[0], `lr ends near 0: ${lrs[lrs.length - 1]}`)
      for (let i = 2; i < lrs.length; i++) assert.ok(lrs[i] <= lrs[i - 1] + 1e-12, 'decreasing')
      await rejects(model.fit([], { timeLimit: 0 }), RangeError, /Expected timeLimit \(seconds\) > 0/)
    } finally {
      model.dispose()
    }
  })

  describe('command line', () => {
    const ARGS = CLI_ARGS
    const ENV = { ...process.env, TS_NODE_PROJECT: path.join(ROOT, 'tsconfig.json'), CI: '1' }
    const cli = (...args: string[]): { status: number | null, stdout: string, stderr: string } => spawnSync(process.execPath, [...ARGS, ...args], { cwd: dir, env: ENV, encoding: 'utf8' })

    it('segtorch recipes prints every recipe in full; --json is parseable', () => {
      const r = cli('recipes')
      assert.strictEqual(r.status, 0, r.stderr)
      for (const name of Object.keys(recipes)) assert.match(r.stdout, new RegExp(`^${name}: `, 'm'))
      assert.match(r.stdout, /arch=pspnet backbone=resnet101 outputStride=8 aux=true auxWeight=0.4 batchSize=16 iterations=30000/)
      const j = cli('recipes', 'voc-pspnet', '--json')
      assert.strictEqual(JSON.parse(j.stdout).options.crop[0], 473)
      const bad = cli('recipes', 'nope')
      assert.notStrictEqual(bad.status, 0)
      assert.match(bad.stderr, /Expected a recipe name \(camvid-cpu, /)
    })

    it('train --recipe: the recipe under --config and flags, printed at start and stored in run.json', () => {
      fs.writeFileSync(path.join(dir, 'cfg.json'), JSON.stringify({ lr: 0.002, crop: 32 }))
      const r = cli('train', '--recipe', 'membrane', '--config', 'cfg.json', '--data', 'folder:images,masks', '--classes', 'a,b,c', '--channels', '1',
        '--model-option', 'baseChannels=4', '--iterations', '2', '--batch-size', '2', '--out', 'run-membrane', '--seed', '1')
      assert.strictEqual(r.status, 0, r.stderr + r.stdout)
      assert.match(r.stdout, /options \(recipe membrane, with overrides\): recipe=membrane arch=unet .*lr=0\.002 optimizer=adam/)
      const run = JSON.parse(fs.readFileSync(path.join(dir, 'run-membrane', 'run.json'), 'utf8'))
      assert.strictEqual(run.options.recipe, 'membrane')
      assert.strictEqual(run.options.optimizer, 'adam') // the recipe's
      assert.strictEqual(run.options.lr, 0.002) // the config file's
      assert.strictEqual(run.options.batchSize, 2) // the flag's
      assert.deepStrictEqual(run.options.crop, [32, 32])
      assert.deepStrictEqual(run.options.modelOption, { baseChannels: 4, batchNorm: true }) // merged key by key over the recipe's
      assert.strictEqual(run.options.scale, false) // membrane: no rescaling
      assert.strictEqual(run.model.arch, 'unet')
      // Another network: the recipe's U-Net options are not carried over to it.
      const other = cli('train', '--recipe', 'membrane', '--arch', 'fcn', '--backbone', 'resnet18', '--data', 'folder:images,masks', '--classes', 'a,b,c', '--channels', '1',
        '--crop', '32', '--iterations', '1', '--batch-size', '2', '--out', 'run-membrane-fcn', '--seed', '1')
      assert.strictEqual(other.status, 0, other.stderr + other.stdout)
      const runFcn = JSON.parse(fs.readFileSync(path.join(dir, 'run-membrane-fcn', 'run.json'), 'utf8'))
      assert.strictEqual(runFcn.options.modelOption, undefined)
      assert.strictEqual(runFcn.options.optimizer, 'adam') // the rest of the recipe stays
    })

    it('train: --time-limit, --class-weights and bad values', () => {
      const r = cli('train', '--arch', 'unet', '--model-option', 'baseChannels=4', '--data', 'folder:images,masks', '--classes', 'a,b,c',
        '--crop', '32', '--batch-size', '2', '--time-limit', '2s', '--class-weights', 'median-frequency', '--loss', 'ohem', '--out', 'run-time', '--seed', '1')
      assert.strictEqual(r.status, 0, r.stderr + r.stdout)
      assert.match(r.stdout, /class weights: a \d\.\d{3}, b \d\.\d{3}, c \d\.\d{3}/)
      const run = JSON.parse(fs.readFileSync(path.join(dir, 'run-time', 'run.json'), 'utf8'))
      assert.strictEqual(run.options.timeLimit, 2)
      const hist = JSON.parse(fs.readFileSync(path.join(dir, 'run-time', 'history.json'), 'utf8'))
      assert.ok(hist.steps >= 1)
      for (const [args, pattern] of [
        [['--time-limit', '5 weeks'], /Expected a duration: seconds, or a number with s, m or h \(1500, 25m, 2h\) for --time-limit but received '5 weeks'/],
        [['--class-weights', '1,2'], /Expected 3 class weights \(one per class of --data\) for --class-weights but received 2/],
        [['--class-weights', 'mean'], /Expected median-frequency, sqrt-median-frequency or non-negative numbers separated by commas for --class-weights/],
        [['--recipe', 'nope'], /Expected a recipe name \(camvid-cpu, .*\) for --recipe but received 'nope'/]
      ] as Array<[string[], RegExp]>) {
        const b = cli('train', '--arch', 'unet', '--data', 'folder:images,masks', '--classes', 'a,b,c', '--iterations', '1', '--out', 'run-bad', ...args)
        assert.notStrictEqual(b.status, 0, args.join(' '))
        assert.match(b.stderr, pattern)
      }
    })
  })
})
