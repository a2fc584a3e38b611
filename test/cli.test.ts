import * as assert from 'assert'
import { spawn, spawnSync } from 'child_process'
import * as fs from 'fs'
import * as path from 'path'
import sharp from 'sharp'
import { decodeMask } from '../lib/data/images'
import { vocColourMap } from '../lib/data/classes'
import { greyPng, labels, rgbFile } from './data-fixtures'
import { CLI_ARGS, ROOT, tmpdir } from './helpers'

// The command line (built, or from its TypeScript source: see CLI_ARGS), in a temp folder.
const ARGS = CLI_ARGS
const ENV = { ...process.env, TS_NODE_PROJECT: path.join(ROOT, 'tsconfig.json'), CI: '1' }

interface Run { status: number | null, stdout: string, stderr: string }

function cli (cwd: string, ...args: string[]): Run {
  const r = spawnSync(process.execPath, [...ARGS, ...args], { cwd, env: ENV, encoding: 'utf8', maxBuffer: 16 << 20 })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}

function ok (r: Run): Run {
  assert.strictEqual(r.status, 0, `exit ${r.status}\n${r.stdout}\n${r.stderr}`)
  return r
}

/** A usage error: non-zero exit, the expected message, no stack trace. */
function fails (r: Run, pattern: RegExp): void {
  assert.notStrictEqual(r.status, 0, r.stdout)
  assert.match(r.stderr, pattern)
  assert.doesNotMatch(r.stderr, /^\s+at .+[(:]\d+/m, 'no stack trace')
}

const W = 40
const H = 32
const TINY = ['--arch', 'unet', '--model-option', 'baseChannels=4', '--batch-size', '2', '--crop', '32', '--seed', '3']

describe('command line', function () {
  this.timeout(300000)
  let dir: string
  let data: string
  let run: string

  before(async () => {
    dir = tmpdir('segtorch-cli-')
    for (let i = 0; i < 6; i++) {
      await rgbFile(path.join(dir, 'ds', 'images', `img${i}.png`), W, H, i + 1)
      await greyPng(path.join(dir, 'ds', 'masks', `img${i}.png`), labels(W, H, 3, i + 10), W, H)
    }
    data = 'folder:ds/images,ds/masks'
    run = path.join(dir, 'run')
  })

  it('train writes a run folder: checkpoints, history, curves, per-class IoU, samples and a report', () => {
    const r = ok(cli(dir, 'train', ...TINY, '--data', data, '--classes', 'bg,a,b', '--val', '0.34', '--iterations', '3', '--out', 'run', '--samples', '2'))
    assert.match(r.stdout, /unet \(none\).*3 classes, 4 training images, 2 validation images/)
    assert.match(r.stdout, /validation: mIoU \d+\.\d+ %/)
    assert.match(r.stderr, /train step 1\/3 +epoch 1 +loss \d\.\d+ +lr 0\.0100/, 'plain log lines without a terminal')
    for (const f of ['history.json', 'curves.svg', 'report.html', 'per-class-iou.csv', 'steps.csv', 'run.json', 'last.segtorch', 'best.segtorch', 'model.segtorch']) {
      assert.ok(fs.existsSync(path.join(run, f)), f)
    }
    const history = JSON.parse(fs.readFileSync(path.join(run, 'history.json'), 'utf8'))
    assert.strictEqual(history.steps, 3)
    assert.strictEqual(history.stopped, 'completed')
    assert.ok(history.epochs.at(-1).validation.mIoU >= 0)
    assert.strictEqual(fs.readFileSync(path.join(run, 'steps.csv'), 'utf8').trim().split('\n').length, 4)
    assert.match(fs.readFileSync(path.join(run, 'per-class-iou.csv'), 'utf8'), /^index,class,iou,accuracy\n0,bg,[\d.]*,[\d.]*\n1,a,/)
    const svg = fs.readFileSync(path.join(run, 'curves.svg'), 'utf8')
    assert.strictEqual([...svg.matchAll(/<polyline[^>]*points="([^"]*)"/g)][0][1].split(' ').length, 3, 'one loss point per step')
    const html = fs.readFileSync(path.join(run, 'report.html'), 'utf8')
    const refs = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1])
    assert.ok(refs.filter((f) => f.endsWith('.png')).length === 2, refs.join())
    for (const f of refs) assert.ok(fs.existsSync(path.join(run, f)), `report.html refers to ${f}, which exists`)
    assert.doesNotMatch(html, /(src|href)="(https?:)?\/\//)
    for (const c of ['bg', 'a', 'b']) assert.ok(html.includes(`</span> ${c}</td>`), `class ${c} in the per-class table`)
  })

  it('the sample pictures show image, ground truth and prediction side by side', async () => {
    const samples = fs.readdirSync(path.join(run, 'samples'))
    assert.strictEqual(samples.length, 2)
    const meta = await sharp(path.join(run, 'samples', samples[0])).metadata()
    const f = Math.ceil(160 / H)
    assert.deepStrictEqual([meta.width, meta.height], [(3 * W + 8) * f, H * f])
  })

  it('--resume continues from the checkpoint with the run\'s options', () => {
    const r = ok(cli(dir, 'train', '--resume', 'run', '--iterations', '5'))
    assert.match(r.stdout, /resuming from .*last\.segtorch at step 3/)
    assert.doesNotMatch(r.stderr, /step [123]\//, 'the first three steps are not repeated')
    assert.match(r.stderr, /step 5\/5/)
    const history = JSON.parse(fs.readFileSync(path.join(run, 'history.json'), 'utf8'))
    assert.strictEqual(history.steps, 5)
    const steps = fs.readFileSync(path.join(run, 'steps.csv'), 'utf8').trim().split('\n').slice(1).map((l) => Number(l.split(',')[0]))
    assert.deepStrictEqual(steps, [1, 2, 3, 4, 5])
    const opts = JSON.parse(fs.readFileSync(path.join(run, 'run.json'), 'utf8')).options
    assert.strictEqual(opts.seed, 3)
    assert.strictEqual(opts.iterations, 5, 'run.json keeps the options the run goes on with')
    assert.deepStrictEqual(opts.classes, ['bg', 'a', 'b'])
  })

  it('a config file gives options and flags on the command line override it', () => {
    fs.writeFileSync(path.join(dir, 'cfg.json'), JSON.stringify({
      arch: 'unet', modelOptions: { baseChannels: 4 }, data, classes: 3, iterations: 2, 'batch-size': 3, crop: 32, lr: 0.5, schedule: 'constant', seed: 1, samples: 1
    }))
    ok(cli(dir, 'train', '--config', 'cfg.json', '--lr', '0.02', '--out', 'run-cfg'))
    const opts = JSON.parse(fs.readFileSync(path.join(dir, 'run-cfg', 'run.json'), 'utf8')).options
    assert.strictEqual(opts.lr, 0.02, 'the flag wins over the file')
    assert.strictEqual(opts.batchSize, 3, 'from the file (flag-style key)')
    assert.strictEqual(opts.iterations, 2)
    const lrs = fs.readFileSync(path.join(dir, 'run-cfg', 'steps.csv'), 'utf8').trim().split('\n').slice(1).map((l) => Number(l.split(',')[3]))
    assert.deepStrictEqual(lrs, [0.02, 0.02], 'the training used the flag\'s learning rate')
    fs.writeFileSync(path.join(dir, 'bad.json'), JSON.stringify({ arch: 'unet', lernrate: 1 }))
    fails(cli(dir, 'train', '--config', 'bad.json'), /unknown option 'lernrate' in bad\.json/)
  })

  it('eval prints mIoU, pixel accuracy and per-class IoU with class names, or JSON', () => {
    const r = ok(cli(dir, 'eval', 'run/model.segtorch', '--data', data))
    assert.match(r.stdout, /^6 images of folder:/m)
    assert.match(r.stdout, /mIoU \d+\.\d+ % +pixel accuracy \d+\.\d+ %/)
    assert.match(r.stdout, /^ +0 +bg +\d+\.\d+ +\d+\.\d+$/m, 'class names from the run folder')
    assert.match(r.stdout, /^ +2 +b +/m)
    const j = JSON.parse(ok(cli(dir, 'eval', 'run', '--data', data, '--json')).stdout)
    assert.strictEqual(j.images, 6)
    assert.ok(j.mIoU > 0 && j.mIoU <= 1)
    assert.deepStrictEqual(j.perClass.map((c: { class: string }) => c.class), ['bg', 'a', 'b'])
    const slide = JSON.parse(ok(cli(dir, 'eval', 'run', '--data', data, '--json', '--mode', 'slide', '--crop', '24', '--stride', '16', '--flip')).stdout)
    assert.strictEqual(slide.images, 6)
  })

  it('predict writes class maps, colour masks and overlays of each image\'s size', async () => {
    const r = ok(cli(dir, 'predict', 'run/model.segtorch', 'ds/images', '--out', 'pred', '--scales', '0.75,1'))
    assert.match(r.stdout, /wrote 6 class maps/)
    const palette = vocColourMap(3)
    for (let i = 0; i < 6; i++) {
      const classMap = fs.readFileSync(path.join(dir, 'pred', 'labels', `img${i}.png`))
      const m = await decodeMask(classMap)
      assert.deepStrictEqual([m.width, m.height], [W, H])
      assert.ok(m.data.every((x) => x < 3), 'class indices')
      const colour = await sharp(path.join(dir, 'pred', 'colour', `img${i}.png`)).raw().toBuffer({ resolveWithObject: true })
      assert.deepStrictEqual([colour.info.width, colour.info.height, colour.info.channels], [W, H, 3])
      for (const p of [0, 17, W * H - 1]) assert.deepStrictEqual([...colour.data.subarray(3 * p, 3 * p + 3)], [...palette[m.data[p]]], 'colour = palette[class]')
      const over = await sharp(path.join(dir, 'pred', 'overlay', `img${i}.png`)).metadata()
      assert.deepStrictEqual([over.width, over.height], [W, H])
    }
  })

  it('demo (shortened) trains on the shipped membrane images, writes masks, the model and a report', () => {
    const out = path.join(dir, 'demo')
    const r = ok(cli(dir, 'demo', '--out', out, '--steps', '2', '--batch', '2', '--crop', '64', '--base-channels', '4', '--holdout', '2', '--elastic', '4'))
    assert.match(r.stdout, /cell-interior IoU [01]\.\d{4}, membrane IoU [01]\.\d{4}/)
    assert.strictEqual(fs.readdirSync(path.join(out, 'masks')).filter((f) => f.endsWith('.png')).length, 30)
    for (const f of ['model.segtorch', 'result.json', 'report.html', 'curves.svg', 'per-class-iou.csv']) assert.ok(fs.existsSync(path.join(out, f)), f)
    const html = fs.readFileSync(path.join(out, 'report.html'), 'utf8')
    for (const m of html.matchAll(/src="([^"]+)"/g)) if (!m[1].startsWith('data:')) assert.ok(fs.existsSync(path.join(out, m[1])), m[1])
    assert.strictEqual(fs.readdirSync(path.join(out, 'samples')).length, 2)
    fails(cli(dir, 'demo', '--lr', '2'), /learning rate/)
    const result = JSON.parse(fs.readFileSync(path.join(out, 'result.json'), 'utf8'))
    assert.strictEqual(result.elastic, 4)
    assert.strictEqual(result.flips, 'lr', 'left-right flips by default (README: the labels\' vertical offset)')
    fails(cli(dir, 'demo', '--elastic', '-1'), /Expected a number >= 0 for --elastic but received '-1'/)
    fails(cli(dir, 'demo', '--elastic', '65'), /Expected a number <= 64 for --elastic but received '65'/)
    fails(cli(dir, 'demo', '--flips', 'ud'), /Expected one of lr, d4, none for --flips but received 'ud'/)
  })

  it('demo on a user\'s folder: non-square test images are predicted with the left-right averaging, masks at their size', async () => {
    const data = path.join(dir, 'membrane-like')
    const S = 48
    for (let k = 0; k < 3; k++) {
      const lab = labels(S, S, 2, 10 + k)
      await greyPng(path.join(data, 'train', 'image', `${k}.png`), lab.map((v) => (v === 1 ? 200 : 30)), S, S)
      await greyPng(path.join(data, 'train', 'label', `${k}.png`), lab.map((v) => v * 255), S, S)
    }
    const sizes: Array<[number, number]> = [[40, 72], [56, 36], [40, 72]] // [height, width]; 2 is 0 mirrored
    const test0 = labels(72, 40, 2, 20).map((v) => (v === 1 ? 200 : 30))
    const mirror = (a: Uint8Array, h: number, w: number): Uint8Array => Uint8Array.from(a, (_, q) => a[Math.floor(q / w) * w + w - 1 - (q % w)])
    await greyPng(path.join(data, 'test', '0.png'), test0, 72, 40)
    await greyPng(path.join(data, 'test', '1.png'), labels(36, 56, 2, 21).map((v) => (v === 1 ? 200 : 30)), 36, 56)
    await greyPng(path.join(data, 'test', '2.png'), mirror(test0, 40, 72), 72, 40)
    for (const flips of ['lr', 'd4']) {
      const out = path.join(dir, `demo-${flips}`)
      const r = ok(cli(dir, 'demo', '--data', data, '--out', out, '--steps', '2', '--batch', '2', '--crop', '32', '--base-channels', '4', '--holdout', '1', '--flips', flips))
      assert.match(r.stdout, /2 training images, 1 held back/)
      const masks: Uint8Array[] = []
      for (const [k, [h, w]] of sizes.entries()) {
        const { data: px, info } = await sharp(path.join(out, 'masks', `${k}.png`)).extractChannel(0).raw().toBuffer({ resolveWithObject: true })
        assert.deepStrictEqual([info.height, info.width], [h, w], `mask ${k} (${flips})`)
        assert.ok(px.every((v) => v === 0 || v === 255), 'masks are 0 (membrane) / 255 (cell interior)')
        masks.push(Uint8Array.from(px))
      }
      // Averaging an image with its mirror image makes the prediction mirror-symmetric: the mirrored
      // image's mask is the mirrored mask, pixel for pixel (without averaging it need not be).
      if (flips === 'lr') assert.deepStrictEqual(masks[2], mirror(masks[0], 40, 72), 'left-right averaging of a non-square image')
      assert.strictEqual(JSON.parse(fs.readFileSync(path.join(out, 'result.json'), 'utf8')).flips, flips)
    }
  })

  it('info prints the backend and the architectures', () => {
    const r = ok(cli(dir, 'info'))
    assert.match(r.stdout, /^libtorch +\d+\.\d+/m)
    assert.match(r.stdout, /^threads +\d+/m)
    assert.match(r.stdout, /^bf16 /m)
    assert.match(r.stdout, /^winograd +auto = fp32: .*; bf16: /m)
    assert.match(r.stdout, /^ +pspnet +resnet101, resnet18/m)
    const j = JSON.parse(ok(cli(dir, 'info', '--json')).stdout)
    assert.ok(j.models.unet.options.baseChannels)
    assert.strictEqual(typeof j.cuda, 'boolean')
  })

  it('bad flags and data specs exit non-zero with a clear message and no stack trace', () => {
    fails(cli(dir, 'train', '--arch', 'nope', '--data', data), /Expected one of fcn, .* for --arch but received 'nope'/)
    fails(cli(dir, 'train', '--arch', 'unet', '--data', 'bogus:/x'), /Expected a data spec camvid:DIR.* for --data but received 'bogus:\/x'/)
    fails(cli(dir, 'train', '--arch', 'unet', '--data', 'camvid:no/such/folder'), /camvid: folder .*no\/such\/folder does not exist/)
    fails(cli(dir, 'train', '--arch', 'unet', '--data', 'folder:ds/images,ds/masks'), /Expected --classes/)
    fails(cli(dir, 'train', ...TINY, '--data', data, '--classes', '3', '--lr', 'fast'), /Expected a number for --lr but received 'fast'/)
    fails(cli(dir, 'train', ...TINY, '--data', data, '--classes', '3', '--model-option', 'depth=3'), /option of unet for --model-option .*received 'depth'/)
    fails(cli(dir, 'train', '--arch', 'unet', '--data', data, '--bogus'), /unknown option '--bogus'/)
    fails(cli(dir, 'eval', 'missing.segtorch', '--data', data), /missing\.segtorch does not exist/)
    fails(cli(dir, 'predict', 'run', 'no-such-dir'), /no-such-dir does not exist/)
    fails(cli(dir, 'frobnicate'), /unknown command 'frobnicate'/)
  })

  it('Ctrl-C during train stops after the current step, writes a checkpoint and says how to resume', async () => {
    const child = spawn(process.execPath, [...ARGS, 'train', ...TINY, '--data', data, '--classes', '3', '--iterations', '500', '--log-every', '1', '--out', 'run-int'], { cwd: dir, env: ENV })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => { stdout += d })
    const code = await new Promise<number | null>((resolve) => {
      let sent = false
      child.stderr.on('data', (d) => {
        stderr += d
        if (!sent && /train step 1\//.test(stderr)) {
          sent = true
          child.kill('SIGINT')
        }
      })
      child.on('exit', (c) => resolve(c))
    })
    assert.strictEqual(code, 130, stderr)
    assert.match(stderr, /Ctrl-C: stopping after the current step/)
    assert.match(stdout, /resume with: segtorch train --resume .*run-int/)
    const history = JSON.parse(fs.readFileSync(path.join(dir, 'run-int', 'history.json'), 'utf8'))
    assert.strictEqual(history.stopped, 'aborted')
    assert.ok(history.steps >= 1 && history.steps < 10, `stopped early (${history.steps} steps)`)
    assert.ok(fs.existsSync(path.join(dir, 'run-int', 'last.segtorch')))
    assert.ok(fs.existsSync(path.join(dir, 'run-int', 'report.html')))
    const r = ok(cli(dir, 'train', '--resume', 'run-int', '--iterations', String(history.steps + 1)))
    assert.match(r.stdout, new RegExp(`at step ${history.steps}\\b`))
    assert.strictEqual(JSON.parse(fs.readFileSync(path.join(dir, 'run-int', 'history.json'), 'utf8')).steps, history.steps + 1)
  })
})
