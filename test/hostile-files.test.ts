/**
 * Files from strangers: model files, state dicts, checkpoints and TorchScript archives that are
 * corrupt in exactly one way (every CRC right unless the corruption is the point). Each must give a
 * clear SegtorchError (or RangeError for limits), quickly and without taking the machine's memory.
 */
import * as assert from 'assert'
import { spawnSync } from 'child_process'
import * as fs from 'fs'
import * as path from 'path'
import { createModel, loadModel, loadTorchScript, SegtorchError } from '../lib'
import { CHILD_REGISTER, randomImages, randomMasks, rejects, ROOT, tmpdir } from './helpers'
import { PYTHON } from './twin'
import { Pickle, readZip, record, replaceRecord, stateDictZip, writeZip, zipEntries } from './zipkit'

const TINY = { arch: 'unet', baseChannels: 4, numClasses: 2, inChannels: 1 } as const

function floats (values: number[]): Buffer {
  return Buffer.from(new Float32Array(values).buffer)
}

/** Runs `body` in a fresh process (a script using `st` = segtorch). Its peak RSS is read from VmHWM:
 * getrusage's maxrss starts from the parent's peak after fork + exec. */
function inChild (body: string): { status: number | null, signal: NodeJS.Signals | null, out: string, err: string } {
  const script = `const st = require(${JSON.stringify(path.join(ROOT, 'lib'))});\n(async () => {\n${body}\n})().catch((e) => { console.log('ERR ' + e.constructor.name + ': ' + e.message); process.exitCode = 3 })`
  const r = spawnSync(process.execPath, ['-r', CHILD_REGISTER, '-e', script], { cwd: ROOT, encoding: 'utf8', timeout: 60000 })
  return { status: r.status, signal: r.signal, out: r.stdout, err: r.stderr }
}

describe('hostile files', function () {
  this.timeout(120000)
  let dir: string
  let good: Buffer
  let goodFile: string

  before(async () => {
    dir = tmpdir()
    const m = await createModel(TINY)
    await m.trainStep(randomImages(1, 1, 32, 32), randomMasks(1, 32, 32, 2), { optimizer: { type: 'adam', lr: 1e-3 } })
    goodFile = path.join(dir, 'good.segtorch')
    await m._native().save(goodFile, '{"epoch":0}') // a checkpoint: weights + training state
    good = fs.readFileSync(goodFile)
    m.dispose()
  })

  function write (name: string, bytes: Buffer): string {
    const f = path.join(dir, name)
    fs.writeFileSync(f, bytes)
    return f
  }

  describe('model files', () => {
    it('are zips Python reads as a state dict, with our records beside it', () => {
      const names = readZip(good).map((r) => r.name.replace(/^[^/]+\//, ''))
      assert.ok(names.includes('data.pkl') && names.includes('segtorch/config.json') && names.includes('segtorch/format'), names.join(', '))
      assert.ok(!names.some((n) => n.startsWith('code/') || n === 'constants.pkl'), 'no TorchScript inside')
    })

    it('a flipped bit in any weight record fails its CRC check', async () => {
      const weights = readZip(good).filter((r) => /\/data\/\d+$/.test(r.name) && r.data.length > 0)
      assert.ok(weights.length > 10)
      // The byte positions of each record's data in the file.
      for (const r of weights.slice(0, 6)) {
        const at = good.indexOf(r.data)
        assert.ok(at > 0)
        const bad = Buffer.from(good)
        bad[at + (r.data.length >> 1)] ^= 0x10
        await rejects(loadModel(write('flip.segtorch', bad)), SegtorchError, /fails its CRC-32 check: the file is corrupt/)
      }
    })

    it('a one-byte change in data.pkl (e.g. a renamed key) fails its CRC check', async () => {
      const pkl = record(good, 'data.pkl')
      const at = good.indexOf(pkl)
      const bad = Buffer.from(good)
      const key = bad.indexOf('weight', at)
      bad[key + 2] = 0x32
      await rejects(loadModel(write('key.segtorch', bad)), SegtorchError, /fails its CRC-32 check/)
    })

    it('a storage smaller than its tensor (numel 2 -> 0) is refused, not read out of bounds', async () => {
      // Re-pickle the weights with the first conv weight pointing at an empty storage, CRCs right.
      const pkl = record(good, 'data.pkl')
      // FloatStorage\nX....<key>X....cpu<numel as K/M/J>: set the first numel to 0.
      const tag = Buffer.from('FloatStorage\n')
      const at = pkl.indexOf(tag)
      let p = at + tag.length
      for (let s = 0; s < 2; s++) p += 5 + pkl.readUInt32LE(p + 1) // key, 'cpu'
      const bad = Buffer.from(pkl)
      const op = bad[p]
      assert.ok([0x4b, 0x4d, 0x4a].includes(op), `int opcode ${op}`)
      bad.fill(0, p + 1, p + 1 + (op === 0x4b ? 1 : op === 0x4d ? 2 : 4))
      await rejects(loadModel(write('numel.segtorch', replaceRecord(good, 'data.pkl', bad))), SegtorchError, /reaches element \d+ of a storage of 0/)
    })

    it('a record shorter than its storage is refused', async () => {
      const first = readZip(good).find((r) => /\/data\/0$/.test(r.name))!
      const bad = replaceRecord(good, 'data/0', first.data.subarray(0, 4))
      await rejects(loadModel(write('short.segtorch', bad)), SegtorchError, /holds 4 bytes, less than/)
    })

    it('a configuration that disagrees with the weights is refused by shape', async () => {
      const config = JSON.parse(record(good, 'segtorch/config.json').toString())
      config.baseChannels = 6
      const bad = replaceRecord(good, 'segtorch/config.json', Buffer.from(JSON.stringify(config)))
      await rejects(loadModel(write('shape.segtorch', bad)), SegtorchError, /does not match .*mis-shaped keys: .*file \[8, 4, 3, 3\] vs model \[12, 6, 3, 3\]/)
    })

    it('a configuration edited to 1024 base channels fails fast within the allocation budget', async () => {
      const config = JSON.parse(record(good, 'segtorch/config.json').toString())
      config.baseChannels = 1024
      const f = write('huge.segtorch', replaceRecord(good, 'segtorch/config.json', Buffer.from(JSON.stringify(config))))
      const r = inChild(`const t0 = Date.now(); try { await st.loadModel(${JSON.stringify(f)}) } catch (e) { console.log(JSON.stringify({ name: e.constructor.name, message: e.message, ms: Date.now() - t0, rss: Number(/VmHWM:\\s+(\\d+)/.exec(require('fs').readFileSync('/proc/self/status', 'utf8'))[1]) })) }`)
      assert.strictEqual(r.status, 0, r.err + r.out)
      const out = JSON.parse(r.out.trim().split('\n').pop()!)
      assert.strictEqual(out.name, 'RangeError')
      assert.match(out.message, /needs more memory than allowed/)
      // SEGTORCH_FUZZ_MAX_RSS_MIB: scripts/sanitize.sh raises it for ASan's shadow memory and quarantine.
      const limitMiB = Number(process.env.SEGTORCH_FUZZ_MAX_RSS_MIB ?? 1024)
      assert.ok(out.rss < limitMiB * 1024, `peak RSS ${out.rss} KiB`)
      assert.ok(out.ms < 10000, `${out.ms} ms`)
    })

    it('maxParameters bounds the rebuilt network', async () => {
      await rejects(loadModel(goodFile, { maxParameters: 100 }), RangeError, /parameters, more than maxParameters \(100\)/)
      await rejects(loadModel(goodFile, { maxParameters: 0 }), RangeError, /maxParameters/)
      const m = await loadModel(goodFile, { maxParameters: 10_000_000 })
      m.dispose()
    })

    it('a configuration that is not an object, or invalid, is a SegtorchError naming the file', async () => {
      await rejects(loadModel(write('cfg1.segtorch', replaceRecord(good, 'segtorch/config.json', Buffer.from('[1,2]')))), SegtorchError, /cfg1\.segtorch holds an invalid segtorch configuration/)
      await rejects(loadModel(write('cfg2.segtorch', replaceRecord(good, 'segtorch/config.json', Buffer.from('{"arch":"nope"}')))), SegtorchError, /cfg2\.segtorch holds an invalid segtorch configuration/)
    })

    it('files of the old format (TorchScript archives) are refused with the reason', async () => {
      const ts = write('old.segtorch', writeZip([{ name: 'a/data.pkl', data: Buffer.from([0x80, 2, 0x4e, 0x2e]) }, { name: 'a/constants.pkl', data: Buffer.from([0x80, 2, 0x29, 0x2e]) }]))
      await rejects(loadModel(ts), SegtorchError, /segtorch < 0\.2 \(format 1\) are no longer read/)
    })

    it('checkpoint training state is checked: optimizer tensors of the wrong shape, an invalid RNG state', async () => {
      const tr = record(good, 'training.pkl')
      assert.ok(tr.includes(Buffer.from('optimizer.0.0.exp_avg')))
      // Rename the RNG tensor's key to an unknown one (same length): refused by name.
      const renamed = Buffer.from(tr)
      const at = renamed.indexOf('rng')
      renamed.write('rnx', at)
      await rejects(loadModel(write('tr1.segtorch', replaceRecord(good, 'training.pkl', renamed))), SegtorchError, /unexpected training-state tensor 'rnx'/)
      // The RNG state's storage cut to 16 bytes, its tensor too: refused as a generator state.
      const rngPkl = Pickle.dict((p) => { p.str('rng').tensor('900', 16, 0, [16], [1], 'ByteStorage') })
      const records = readZip(good).filter((r) => !r.name.endsWith('training.pkl'))
      records.push({ name: 'archive/training.pkl', data: rngPkl }, { name: 'archive/data/900', data: Buffer.alloc(16) })
      await rejects(loadModel(write('tr2.segtorch', writeZip(records))), SegtorchError, /invalid random generator state/)
    })

    it('a stride pointing past the storage in a checkpoint is refused before fit resumes', async () => {
      const pkl = Pickle.dict((p) => { p.str('rng').tensor('901', 8, 0, [8], [1000], 'ByteStorage') })
      const records = readZip(good).filter((r) => !r.name.endsWith('training.pkl'))
      records.push({ name: 'archive/training.pkl', data: pkl }, { name: 'archive/data/901', data: Buffer.alloc(8) })
      const f = write('stride.segtorch', writeZip(records))
      const m = await createModel(TINY)
      await rejects(m._load(f), SegtorchError, /reaches element 7000 of a storage of 8/)
      // Nothing changed: the model still trains and predicts.
      await m.trainStep(randomImages(1, 1, 32, 32), randomMasks(1, 32, 32, 2))
      m.dispose()
    })
  })

  describe('state dicts', () => {
    let model: Awaited<ReturnType<typeof createModel>>
    before(async () => { model = await createModel(TINY) })
    after(() => model.dispose())

    it('a stride-0 view of a tiny storage (4.3 GB when expanded) is refused at once', async () => {
      const pkl = Pickle.dict((p) => { p.str('w').tensor('0', 1, 0, [65536, 16384], [0, 0]) })
      const f = write('expand.pt', stateDictZip(pkl, { 0: floats([1]) }))
      await rejects(model.loadStateDict(f), SegtorchError, /1073741824 elements over a storage of 1/)
    })

    it('a stride past the storage and a negative or overflowing size are refused', async () => {
      const a = Pickle.dict((p) => { p.str('w').tensor('0', 4, 0, [2, 2], [2, 3]) })
      await rejects(model.loadStateDict(write('st1.pt', stateDictZip(a, { 0: floats([1, 2, 3, 4]) }))), SegtorchError, /reaches element 5 of a storage of 4/)
      const b = Pickle.dict((p) => { p.str('w').tensor('0', 4, 0, [2n ** 62n, 4n], [1, 1]) })
      await rejects(model.loadStateDict(write('st2.pt', stateDictZip(b, { 0: floats([1, 2, 3, 4]) }))), SegtorchError, /reaches element|overflows/)
      const c = Pickle.dict((p) => { p.str('w').tensor('0', 4, 0, [-1], [1]) })
      await rejects(model.loadStateDict(write('st3.pt', stateDictZip(c, { 0: floats([1, 2, 3, 4]) }))), SegtorchError, /negative tensor size/)
    })

    it('200,000 nested tuples are refused without a crash (nesting capped at 64)', async () => {
      const p = new Pickle()
      p.op(0x29) // EMPTY_TUPLE
      for (let i = 0; i < 200000; i++) p.op(0x85) // TUPLE1
      p.op(0x2e)
      const f = write('deep.pt', stateDictZip(p.bytes(), {}))
      await rejects(model.loadStateDict(f), SegtorchError, /nested too deeply/)
      // The same as a list built with APPEND, and a dict nested through SETITEM.
      const q = new Pickle()
      for (let i = 0; i < 100; i++) q.op(0x5d) // EMPTY_LIST x 100
      for (let i = 0; i < 99; i++) q.op(0x61) // APPEND
      q.op(0x2e)
      await rejects(model.loadStateDict(write('deep2.pt', stateDictZip(q.bytes(), {}))), SegtorchError, /nested too deeply/)
    })

    it('a million empty tuples stop at the value cap', async () => {
      const p = new Pickle()
      p.mark()
      for (let i = 0; i < (1 << 20) + 10; i++) p.op(0x29)
      p.op(0x74, 0x2e)
      await rejects(model.loadStateDict(write('many.pt', stateDictZip(p.bytes(), {}))), SegtorchError, /too many values/)
    })

    it('a deflated record that would inflate to 1.3 GB is refused before inflating', async () => {
      const bomb = writeZip([{ name: 'archive/data.pkl', data: Buffer.alloc(1 << 20), deflate: true, declaredSize: 1300 * 1024 * 1024 }])
      const t0 = Date.now()
      await rejects(model.loadStateDict(write('bomb.pt', bomb)), SegtorchError, /inflates to 1363148800 bytes, more than the 64 MiB/)
      assert.ok(Date.now() - t0 < 2000)
      // Declared small, inflating to more: stopped at the declared size.
      const liar = writeZip([{ name: 'archive/data.pkl', data: Buffer.alloc(1 << 20), deflate: true, declaredSize: 1000 }])
      await rejects(model.loadStateDict(write('liar.pt', liar)), SegtorchError, /does not inflate to its declared size/)
    })

    it('zip structure lies are refused: sizes past the end, overlapping central directory, a bad local header', async () => {
      const sd = path.join(dir, 'sd.pt')
      await model.saveStateDict(sd)
      const bytes = fs.readFileSync(sd)
      const eocd = bytes.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]))
      const a = Buffer.from(bytes)
      a.writeUInt32LE(a.readUInt32LE(eocd + 16) + 7, eocd + 16) // central directory offset
      await rejects(model.loadStateDict(write('z1.pt', a)), SegtorchError, /central directory|end-of-central-directory records that disagree/)
      const b = Buffer.from(bytes)
      const cd = b.readUInt32LE(eocd + 16)
      b.writeUInt32LE(0x7fffffff, cd + 20) // first record's compressed size
      b.writeUInt32LE(0x7fffffff, cd + 24)
      await rejects(model.loadStateDict(write('z2.pt', b)), SegtorchError, /runs past the end|not a PyTorch zip/)
      const c = Buffer.from(bytes)
      c.writeUInt32LE(0x12345678, 0) // local header signature
      await rejects(model.loadStateDict(write('z3.pt', c)), SegtorchError, /not a PyTorch zip checkpoint|corrupt local header/)
    })
  })

  describe('TorchScript files', () => {
    let ts: Buffer | undefined
    before(function () {
      const f = path.join(dir, 'conv.pt')
      const r = spawnSync(PYTHON, ['-c', `import torch\nm = torch.jit.script(torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3, padding=1)))\nm.save(${JSON.stringify(f)})`], { encoding: 'utf8' })
      if (r.status !== 0) {
        console.log('    (skipped: Debian python3-torch is not installed)')
        this.skip()
      }
      ts = fs.readFileSync(f)
    })

    it('a flipped bit in any record (code, pickles, weights) is a clear error, never an abort', async () => {
      const records = readZip(ts!)
      assert.ok(records.some((r) => r.deflate), 'code/ records are deflated')
      for (const r of records) {
        const raw = ts!
        // Locate the record's bytes as stored (deflated ones too) through the central directory.
        const bad = Buffer.from(raw)
        const at = zipEntries(raw).find((e) => e.name === r.name)!
        if (at.end === at.start) continue
        bad[(at.start + at.end) >> 1] ^= 0x04
        await rejects(loadTorchScript(write('flip.pt', bad)), SegtorchError, /CRC-32|corrupt|declared size/)
      }
    })

    it('a nested pickle in constants.pkl is refused before libtorch sees it', async () => {
      const p = new Pickle()
      p.op(0x29)
      for (let i = 0; i < 200000; i++) p.op(0x85)
      p.op(0x2e)
      await rejects(loadTorchScript(write('deep.pt', replaceRecord(ts!, 'constants.pkl', p.bytes()))), SegtorchError, /nested too deeply/)
    })

    it('a weight storage smaller than its tensor is refused', async () => {
      const w = readZip(ts!).find((r) => /\/data\/0$/.test(r.name))!
      await rejects(loadTorchScript(write('short.pt', replaceRecord(ts!, 'data/0', w.data.subarray(0, 8)))), SegtorchError, /holds 8 bytes, less than/)
    })

    it('the intact file still loads and runs', async () => {
      const m = await loadTorchScript(write('ok.pt', ts!), { numClasses: 2 })
      const y = await m.predict(randomImages(1, 3, 8, 8))
      assert.deepStrictEqual([...y.shape], [1, 8, 8])
      m.dispose()
    })
  })
})
