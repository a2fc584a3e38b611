import * as assert from 'assert'
import { execFileSync, spawnSync } from 'child_process'
import * as fs from 'fs'
import * as path from 'path'
import { createModel, FileError, loadModel, loadTorchScript, Model, tensor } from '../lib'
import { DataError, decodeImage, folder, readImage } from '../lib/data'
import { checkWritableDir, removeStaleTemps } from '../lib/files'
import { greyPng, labels, rgbFile } from './data-fixtures'
import { CLI_ARGS, rejects, ROOT, tmpdir } from './helpers'

const TINY = { arch: 'unet', baseChannels: 4, numClasses: 2, inChannels: 1 } as const

/** Settles within `ms` or fails the test (a hang would otherwise hold the run until mocha's timeout). */
async function within<T> (ms: number, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const t0 = performance.now()
  try {
    return await Promise.race([p, new Promise<T>((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`did not settle within ${ms} ms`)), ms) })])
  } finally {
    clearTimeout(timer)
    assert.ok(performance.now() - t0 < ms)
  }
}

function batches (): Array<{ images: ReturnType<typeof tensor>, masks: ReturnType<typeof tensor> }> {
  const images = new Uint8Array(2 * 32 * 32).map((_, i) => (i * 37) % 256)
  const masks = new Uint8Array(2 * 32 * 32).map((_, i) => (i >> 4) % 2)
  return [{ images: tensor(images, [2, 1, 32, 32]), masks: tensor(masks, [2, 32, 32]) }]
}

/** A pid that is certainly not running: a child that has exited (and been reaped). */
function deadPid (): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' })
  const pid = Number(r.stdout)
  assert.ok(pid > 0)
  assert.throws(() => process.kill(pid, 0), { code: 'ESRCH' })
  return pid
}

describe('hardening (TypeScript side): special files, unwritable folders, stale temporary files', function () {
  this.timeout(60000)
  let dir: string
  let model: Model
  before(async () => {
    dir = tmpdir('segtorch-hardening-')
    model = await createModel(TINY)
  })
  after(() => model.dispose())

  describe('a FIFO (named pipe) with no writer is refused before anything opens it', () => {
    let fifo: string
    before(() => {
      fifo = path.join(dir, 'pipe.segtorch')
      execFileSync('mkfifo', [fifo])
    })
    after(() => {
      // If a check ever regresses, release whoever is blocked opening the FIFO, so that the run can end.
      try {
        fs.closeSync(fs.openSync(fifo, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK))
      } catch {}
    })

    it('loadModel, loadTorchScript and loadStateDict reject with a FileError naming the path, within a second', async () => {
      const err = await within(1000, rejects(loadModel(fifo), FileError, /Expected a model file but .*pipe\.segtorch is a FIFO \(named pipe\), not a regular file/))
      assert.strictEqual((err as FileError).path, fifo)
      assert.strictEqual((err as FileError).code, 'ERR_SEGTORCH_FILE')
      await within(1000, rejects(loadTorchScript(fifo), FileError, /Expected a TorchScript file but .* is a FIFO/))
      await within(1000, rejects(model.loadStateDict(fifo), FileError, /Expected a state dict file but .* is a FIFO/))
    })

    it('fit({ resume }) rejects a FIFO, and the model\'s executor is not blocked afterwards', async () => {
      await within(1000, rejects(model.fit(batches(), { epochs: 1, resume: fifo }), FileError, /checkpoint file to resume from but .* is a FIFO/))
      const x = tensor(new Uint8Array(32 * 32), [1, 1, 32, 32])
      const y = await within(10000, model.predict(x))
      assert.deepStrictEqual(y.shape, [1, 32, 32])
    })

    it('character devices and folders are refused the same way', async () => {
      await within(1000, rejects(loadModel('/dev/zero'), FileError, /\/dev\/zero is a character device/))
      await within(1000, rejects(loadModel(dir), FileError, /is a folder, not a regular file/))
    })

    it('data set files and decodeImage / readImage paths that are FIFOs are DataErrors / FileErrors, within a second', async () => {
      const images = path.join(dir, 'ds', 'images')
      const masks = path.join(dir, 'ds', 'masks')
      fs.mkdirSync(images, { recursive: true })
      fs.mkdirSync(masks, { recursive: true })
      execFileSync('mkfifo', [path.join(images, 'a.png')])
      await rgbFile(path.join(images, 'b.png'), 4, 4)
      execFileSync('mkfifo', [path.join(masks, 'b.png')])
      fs.copyFileSync(path.join(images, 'b.png'), path.join(masks, 'a.png'))
      const ds = folder({ images, masks, classes: 2 })
      const a = await within(1000, rejects(ds.get(0), DataError, /images\/a\.png: Expected an image file but .* is a FIFO/))
      assert.ok((a as { cause?: unknown }).cause instanceof FileError)
      await within(1000, rejects(ds.get(1), DataError, /masks\/b\.png: Expected an image file but .* is a FIFO/))
      await within(1000, rejects(decodeImage(fifo), FileError, /is a FIFO/))
      await within(1000, rejects(readImage(fifo), FileError, /is a FIFO/))
      for (const f of [path.join(images, 'a.png'), path.join(masks, 'b.png')]) {
        try { fs.closeSync(fs.openSync(f, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK)) } catch {}
      }
    })
  })

  describe('output folders must be (under) a writable folder, never /proc or /sys', () => {
    it('fit({ checkpointDir }) under /proc rejects with a FileError within a second (Node 20\'s recursive mkdir spun there)', async () => {
      await within(1000, rejects(model.fit(batches(), { epochs: 1, checkpointDir: '/proc/segtorch-test/run' }), FileError,
        /Cannot use \/proc\/segtorch-test\/run as checkpointDir: .*\/proc.* is under \/proc, a kernel file system/))
      await within(1000, rejects(model.fit(batches(), { epochs: 1, checkpointDir: '/proc/self/segtorch' }), FileError, /under \/proc/))
      await within(1000, rejects(model.fit(batches(), { epochs: 1, checkpointDir: '/sys/kernel/segtorch' }), FileError, /under \/sys/))
    })

    it('a path through a regular file is refused, naming the file; a new nested folder is created', async () => {
      const file = path.join(dir, 'plain.txt')
      fs.writeFileSync(file, 'x')
      assert.throws(() => checkWritableDir(path.join(file, 'a', 'b'), 'checkpointDir'), (err: Error) =>
        err instanceof FileError && /its nearest existing ancestor .*plain\.txt is a file, not a folder/.test(err.message))
      const run = path.join(dir, 'new', 'nested', 'run')
      await model.fit(batches(), { epochs: 1, checkpointDir: run })
      assert.ok(fs.existsSync(path.join(run, 'last.segtorch')))
    })

    it('a folder without write permission is refused (when not running as root)', function () {
      if (process.getuid?.() === 0) this.skip() // root may write anywhere
      const ro = path.join(dir, 'readonly')
      fs.mkdirSync(ro)
      fs.chmodSync(ro, 0o500)
      try {
        assert.throws(() => checkWritableDir(path.join(ro, 'run')), /is not writable/)
      } finally {
        fs.chmodSync(ro, 0o700)
      }
    })

    it('the CLI\'s --out under /proc exits with the error instead of hanging', async () => {
      const data = path.join(dir, 'cli')
      for (let i = 0; i < 2; i++) {
        await rgbFile(path.join(data, 'images', `a${i}.png`), 8, 8)
        await greyPng(path.join(data, 'masks', `a${i}.png`), labels(8, 8, 2), 8, 8)
      }
      const r = spawnSync(process.execPath, [...CLI_ARGS,
        'train', '--arch', 'unet', '--data', `folder:${path.join(data, 'images')},${path.join(data, 'masks')}`, '--classes', '2', '--out', '/proc/segtorch-cli/run'],
      { cwd: dir, encoding: 'utf8', timeout: 60000, env: { ...process.env, TS_NODE_PROJECT: path.join(ROOT, 'tsconfig.json'), CI: '1' } })
      assert.strictEqual(r.signal, null, 'ended by itself (no hang)')
      assert.notStrictEqual(r.status, 0)
      assert.match(r.stderr, /Cannot use \/proc\/segtorch-cli\/run as the output folder \(--out\): .* is under \/proc/)
    })
  })

  describe('saves remove <file>.tmp-<pid> left by processes that died (kill -9) before their rename', () => {
    it('model.save and saveStateDict remove stale temporary files of dead processes, and only those', async () => {
      const file = path.join(dir, 'm.segtorch')
      const dead = `${file}.tmp-${deadPid()}`
      const live = `${file}.tmp-${process.ppid}` // a live process (our parent)
      const other = `${file}.tmp-notapid`
      const otherFile = path.join(dir, `x.segtorch.tmp-${deadPid()}`)
      for (const f of [dead, live, other, otherFile]) fs.writeFileSync(f, 'partial')
      await model.save(file)
      assert.ok(!fs.existsSync(dead), 'the dead process\'s temporary file is gone')
      for (const f of [live, other, otherFile]) assert.ok(fs.existsSync(f), `${path.basename(f)} stays`)
      assert.ok(fs.existsSync(file))
      assert.deepStrictEqual(fs.readdirSync(dir).filter((f) => f.startsWith('m.segtorch.tmp-')).sort(), [path.basename(live), path.basename(other)].sort())

      const sd = path.join(dir, 'weights.pt')
      const deadSd = `${sd}.tmp-${deadPid()}`
      fs.writeFileSync(deadSd, 'partial')
      await model.saveStateDict(sd)
      assert.ok(!fs.existsSync(deadSd))
      assert.ok(fs.existsSync(sd))
    })

    it('a save killed with SIGKILL leaves a temporary file that the next save removes', async () => {
      const file = path.join(dir, 'killed.segtorch')
      // A child that creates its temporary file as the native save does, then is killed before the rename.
      const r = spawnSync(process.execPath, ['-e', `require('fs').writeFileSync(${JSON.stringify(file)} + '.tmp-' + process.pid, 'x'); process.kill(process.pid, 'SIGKILL')`], { encoding: 'utf8' })
      assert.strictEqual(r.signal, 'SIGKILL')
      const left = fs.readdirSync(dir).filter((f) => f.startsWith('killed.segtorch.tmp-'))
      assert.strictEqual(left.length, 1)
      await model.save(file)
      assert.deepStrictEqual(fs.readdirSync(dir).filter((f) => f.startsWith('killed.segtorch.tmp-')), [])
    })

    it('fit checkpoints (last, best, history.json) remove stale temporary files too', async () => {
      const run = path.join(dir, 'fitrun')
      fs.mkdirSync(run)
      const stale = ['last.segtorch', 'best.segtorch', 'history.json'].map((f) => path.join(run, `${f}.tmp-${deadPid()}`))
      for (const f of stale) fs.writeFileSync(f, 'partial')
      const b = batches()
      await model.fit(b, { epochs: 1, checkpointDir: run, validation: b })
      for (const f of stale) assert.ok(!fs.existsSync(f), `${path.basename(f)} removed`)
      for (const f of ['last.segtorch', 'best.segtorch', 'history.json']) assert.ok(fs.existsSync(path.join(run, f)), f)
    })

    it('removeStaleTemps never throws (missing folder) and skips folders named like a temporary file', async () => {
      assert.deepStrictEqual(await removeStaleTemps(path.join(dir, 'no', 'such', 'file')), [])
      const d = path.join(dir, `q.segtorch.tmp-${deadPid()}`)
      fs.mkdirSync(d)
      assert.deepStrictEqual(await removeStaleTemps(path.join(dir, 'q.segtorch')), [])
      assert.ok(fs.existsSync(d))
    })
  })
})
