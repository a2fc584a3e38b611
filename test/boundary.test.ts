/**
 * Memory safety at the JS/native boundary and shutdown (issue 12, items 4-6): what could crash
 * the process runs in a child process (test/boundary-child.ts), so that a crash shows as a signal
 * or an exit code, repeated to catch races.
 */
import * as assert from 'assert'
import { spawn } from 'child_process'
import * as fs from 'fs'
import * as path from 'path'
import * as ts from 'typescript'
import { createModel, loadModel, loadTorchScript, Model, tensor } from '../lib'
import { randomImages, randomMasks, rejects, ROOT, tmpdir } from './helpers'
import { UNET } from './boundary-child'

const SCRIPT = path.join(ROOT, 'test', 'fixtures', 'script-tiny.pt')

/**
 * test/boundary-child.ts and lib/, transpiled once (no type check) into build/boundary-test/: the
 * children start in plain node (about 1 s of CPU less than ts-node each, and the suite starts
 * about thirty) and still run the current sources. They load this checkout's addon.
 */
function transpileChild (): string {
  const out = path.join(ROOT, 'build', 'boundary-test')
  const options: ts.CompilerOptions = { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true }
  const files = [path.join(ROOT, 'test', 'boundary-child.ts')]
  const walk = (dir: string): void => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      if (e.isDirectory()) walk(path.join(dir, e.name))
      else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) files.push(path.join(dir, e.name))
    }
  }
  walk(path.join(ROOT, 'lib'))
  for (const file of files) {
    const js = ts.transpileModule(fs.readFileSync(file, 'utf8'), { compilerOptions: options, fileName: file }).outputText
    const target = path.join(out, path.relative(ROOT, file)).replace(/\.ts$/, '.js')
    fs.mkdirSync(path.dirname(target), { recursive: true })
    fs.writeFileSync(target, js)
  }
  fs.copyFileSync(path.join(ROOT, 'package.json'), path.join(out, 'package.json'))
  return path.join(out, 'test', 'boundary-child.js')
}

let CHILD = ''
// The addon this process loaded: SEGTORCH_ADDON when set (scripts/sanitize.sh's build), else this checkout's.
// eslint-disable-next-line @typescript-eslint/no-var-requires
const ADDON: string = process.env.SEGTORCH_ADDON ? path.resolve(process.env.SEGTORCH_ADDON) : require('node-gyp-build').path(ROOT)

interface Run { status: number | null, signal: string | null, stdout: string, stderr: string }

function child (...args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [CHILD, ...args], {
      cwd: ROOT, env: { ...process.env, SEGTORCH_ADDON: ADDON, OMP_WAIT_POLICY: 'PASSIVE' }
    })
    let stdout = ''
    let stderr = ''
    p.stdout.on('data', (d) => { stdout += d })
    p.stderr.on('data', (d) => { stderr += d })
    p.on('close', (status, signal) => resolve({ status, signal, stdout, stderr }))
  })
}

/** Runs `runs` children, `parallel` at a time. */
async function children (runs: number, parallel: number, args: (i: number) => string[]): Promise<Run[]> {
  const out: Run[] = []
  let next = 0
  await Promise.all(Array.from({ length: parallel }, async () => {
    while (next < runs) {
      const i = next++
      out[i] = await child(...args(i))
    }
  }))
  return out
}

function json (r: Run): any { // eslint-disable-line @typescript-eslint/no-explicit-any
  assert.strictEqual(r.signal, null, `killed by ${r.signal}\n${r.stderr}`)
  assert.strictEqual(r.status, 0, `exit ${r.status}\n${r.stderr}`)
  return JSON.parse(r.stdout.trim().split('\n').pop() as string)
}

// ------------------------------------------------------------------------------------------------
// A zip record rewritten with a consistent CRC-32 (so that the change reaches libtorch's loader
// even when the archive's checksums are checked).

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1
  return c >>> 0
})

function crc32 (b: Buffer): number {
  let c = 0xffffffff
  for (const x of b) c = CRC_TABLE[(c ^ x) & 0xff] ^ (c >>> 8)
  return (c ^ 0xffffffff) >>> 0
}

/** Offsets of a stored (uncompressed) record: its data and the CRC fields that describe it. */
function storedRecord (zip: Buffer, suffix: string): { data: number, size: number, crcFields: number[] } {
  const eocd = zip.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]))
  let p = zip.readUInt32LE(eocd + 16)
  const entries = zip.readUInt16LE(eocd + 10)
  for (let i = 0; i < entries; i++) {
    const nameLength = zip.readUInt16LE(p + 28)
    const extra = zip.readUInt16LE(p + 30)
    const comment = zip.readUInt16LE(p + 32)
    const name = zip.toString('utf8', p + 46, p + 46 + nameLength)
    if (name.endsWith(suffix)) {
      assert.strictEqual(zip.readUInt16LE(p + 10), 0, `${name} is stored uncompressed`)
      const local = zip.readUInt32LE(p + 42)
      const data = local + 30 + zip.readUInt16LE(local + 26) + zip.readUInt16LE(local + 28)
      return { data, size: zip.readUInt32LE(p + 20), crcFields: [p + 16, local + 14] }
    }
    p += 46 + nameLength + extra + comment
  }
  throw new Error(`no record ${suffix}`)
}

function flipBit (zip: Buffer, record: ReturnType<typeof storedRecord>, bit: number): Buffer {
  const out = Buffer.from(zip)
  out[record.data + (bit >> 3)] ^= 1 << (bit & 7)
  const crc = crc32(out.subarray(record.data, record.data + record.size))
  for (const f of record.crcFields) out.writeUInt32LE(crc, f)
  return out
}

describe('boundary: memory safety and shutdown', function () {
  this.timeout(120000)
  before(() => { CHILD = transpileChild() })

  describe('exiting with work in flight', () => {
    it('process.exit() while predict jobs run and are queued exits with the code asked, no signal (20 runs)', async () => {
      const runs = await children(20, 3, (i) => ['exit', 'predict', String(10 + i), String(i % 5)])
      runs.forEach((r, i) => {
        assert.strictEqual(r.signal, null, `run ${i}: killed by ${r.signal}\n${r.stderr}`)
        assert.strictEqual(r.status, 10 + i, `run ${i}: exit ${r.status}\n${r.stderr}`)
      })
    })

    it('process.exit() while trainStep jobs run and are queued exits with the code asked, no signal (10 runs)', async () => {
      const runs = await children(10, 3, (i) => ['exit', 'train', '7', String(i % 5)])
      runs.forEach((r, i) => {
        assert.strictEqual(r.signal, null, `run ${i}: killed by ${r.signal}\n${r.stderr}`)
        assert.strictEqual(r.status, 7, `run ${i}: exit ${r.status}\n${r.stderr}`)
      })
    })

    it('worker threads terminated, or calling process.exit(), with jobs in flight end cleanly; then the process exits with its code (2 runs)', async () => {
      const runs = await children(2, 2, () => ['workers', '5'])
      runs.forEach((r, i) => {
        assert.strictEqual(r.signal, null, `run ${i}: killed by ${r.signal}\n${r.stderr}`)
        assert.strictEqual(r.status, 5, `run ${i}: exit ${r.status}\n${r.stderr}`)
      })
    })
  })

  describe('inputs that a queued job reads', () => {
    it('dispose() of a forward result that a queued predict reads: the job keeps the memory until it ends (same labels, no crash)', async () => {
      const r = json(await child('disposeQueued'))
      assert.deepStrictEqual(r.results, [true, true, true, true, true])
      assert.strictEqual(r.busyAfter, 0)
    })

    it('resizable ArrayBuffer shrunk with resize(0) and SharedArrayBuffer inputs under a queued predict: copied when the call starts (same labels)', async () => {
      const r = json(await child('resizable'))
      assert.deepStrictEqual(r.results, {
        'fixed view of resizable': true,
        'length-tracking view of resizable': true,
        shared: true,
        'growable shared': true
      })
      assert.match(r.after, /^RangeError: Expected data of length 51200 .*resizable buffer now holds length 0/)
    })

    describe('in this process', () => {
      let model: Model
      before(async () => { model = await createModel(UNET) })
      after(() => model.dispose())

      it('native calls refuse views of a SharedArrayBuffer or a resizable ArrayBuffer with a TypeError (the line behind tensor())', async () => {
        const shape = [1, 2, 8, 8] as const
        const shared = new Float32Array(new SharedArrayBuffer(128 * 4))
        const resizable = new Float32Array(new (ArrayBuffer as unknown as new (n: number, o: { maxByteLength: number }) => ArrayBuffer)(128 * 4, { maxByteLength: 1024 }))
        const native = model._native()
        await rejects((async () => await native.predict({ dtype: 'float32', shape: [...shape], data: shared }, {}))(), TypeError, /SharedArrayBuffer/)
        await rejects((async () => await native.predict({ dtype: 'float32', shape: [...shape], data: resizable }, {}))(), TypeError, /resizable ArrayBuffer/)
        // Through tensor() they are copied and work.
        assert.deepStrictEqual((await model.predict(tensor(shared, shape))).shape, [1, 8, 8])
        assert.deepStrictEqual((await model.predict(tensor(resizable, shape))).shape, [1, 8, 8])
      })

      it('a disposed forward result passed to predict afterwards is refused with a TypeError', async () => {
        const y = await model.forward(randomImages(1, 2, 8, 8))
        y.dispose()
        await rejects(model.predict(y as never), TypeError, /disposed/)
      })
    })
  })

  describe('threads', () => {
    it('dispose() ends the executor thread: 50 create/dispose cycles of Model and of ScriptModel leave the thread count as it was', async () => {
      const r = json(await child('threads', '50', SCRIPT))
      assert.ok(r.afterModels <= r.before, `threads: ${r.before} before, ${r.afterModels} after 50 models`)
      assert.ok(r.afterScripts <= r.before, `threads: ${r.before} before, ${r.afterScripts} after 50 TorchScript models`)
    })
  })

  describe('errors inside native catch handlers', () => {
    it('TorchScript files with one bit flipped in their code (CRC made consistent) give a SegtorchError or load; the process never aborts', async () => {
      const zip = fs.readFileSync(SCRIPT)
      const record = storedRecord(zip, 'code/__torch__/torch/nn/functional.py')
      const dir = tmpdir('segtorch-boundary-')
      // Every bit of the first 16 bytes of the code, then every 11th bit of the rest.
      const bits: number[] = []
      for (let b = 0; b < record.size * 8; b += b < 16 * 8 ? 1 : 11) bits.push(b)
      const files = bits.map((b) => {
        const f = path.join(dir, `bit${b}.pt`)
        fs.writeFileSync(f, flipBit(zip, record, b))
        return f
      })
      const r = json(await child('loadScripts', ...files))
      assert.strictEqual(r.results.length, files.length)
      for (const [i, res] of (r.results as Array<{ loaded: boolean, segtorchError?: boolean, message?: string }>).entries()) {
        if (!res.loaded) assert.ok(res.segtorchError, `bit ${bits[i]}: ${JSON.stringify(res)}`)
        if (!res.loaded) assert.doesNotMatch(res.message as string, /Exception raised from|frame #\d/)
      }
    })
  })

  describe('options that are not objects', () => {
    let model: Model
    let dir = ''
    before(async () => {
      model = await createModel(UNET)
      dir = tmpdir('segtorch-boundary-')
      await model.save(path.join(dir, 'm.segtorch'))
    })
    after(() => model.dispose())

    it('rejects trainStep(x, y, 5) and options of the other methods that are not objects with a TypeError', async () => {
      const x = randomImages(1, 2, 16, 16)
      const y = randomMasks(1, 16, 16, 2)
      await rejects(model.trainStep(x, y, 5 as never), TypeError, /Expected an options object for trainStep options but received 5/)
      await rejects(model.trainStep(x, y, 'fast' as never), TypeError, /trainStep options/)
      await rejects(model.trainStep(x, y, null as never), TypeError, /trainStep options/)
      await rejects(model.forward(x, 5 as never), TypeError, /forward options/)
      await rejects(model.predict(x, 5 as never), TypeError, /predict options/)
      await rejects(model.checkGradients(x, y, 5 as never), TypeError, /checkGradients options/)
      await rejects(model.evaluate([{ images: x, masks: y }], 5 as never), TypeError, /evaluate options/)
      await rejects(model.fit([{ images: x, masks: y }], 5 as never), TypeError, /fit options/)
      await rejects(model.loadStateDict(path.join(dir, 'missing.pt'), 5 as never), TypeError, /loadStateDict options/)
      await rejects(loadModel(path.join(dir, 'm.segtorch'), 5 as never), TypeError, /loadModel options/)
      assert.throws(() => model.setBatching(5 as never), TypeError)
      assert.strictEqual(model.busy, 0)
      assert.strictEqual(model.info().steps, 0, 'no step was taken')
    })

    it('rejects ScriptModel options that are not objects with a TypeError', async () => {
      await rejects(loadTorchScript(SCRIPT, 5 as never), TypeError, /loadTorchScript options/)
      const m = await loadTorchScript(SCRIPT, { probeSize: 16 })
      try {
        const x = tensor(new Float32Array(3 * 16 * 16), [1, 3, 16, 16])
        await rejects(m.predict(x, 5 as never), TypeError, /predict options/)
        await rejects(m.evaluate([], 5 as never), TypeError, /evaluate options/)
      } finally {
        m.dispose()
      }
    })
  })
})
