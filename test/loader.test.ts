import * as assert from 'assert'
import * as fs from 'fs'
import * as path from 'path'
import { createModel } from '../lib'
import { camvid, DataError, Dataset, folder, fromAsyncIterable, loader, LoaderBatch, Sample, SourceItem } from '../lib/data'
import { greyPng, labels, rgbFile, write } from './data-fixtures'
import { ROOT, tmpdir } from './helpers'

const CAMVID = path.join(ROOT, '..', 'shared', 'data', 'camvid')
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

interface Stats { started: number, inflight: number, peak: number }

/** A data set whose sample i is an image filled with i (mod 256) and a mask filled with i % 3. */
function fake (n: number, o: { delay?: number, bad?: number[], size?: (i: number) => [number, number] } = {}): { ds: Dataset, stats: Stats } {
  const stats: Stats = { started: 0, inflight: 0, peak: 0 }
  const ds: Dataset = {
    length: n,
    classes: ['a', 'b', 'c'],
    palette: [[0, 0, 0], [1, 1, 1], [2, 2, 2]],
    ignoreIndex: 255,
    async get (i: number): Promise<Sample> {
      stats.started++
      stats.inflight++
      stats.peak = Math.max(stats.peak, stats.inflight)
      await sleep(o.delay ?? 1)
      stats.inflight--
      if (o.bad?.includes(i)) throw new DataError(`f${i}.png`, 'corrupt image data')
      const [h, w] = o.size?.(i) ?? [4, 5]
      return { image: new Uint8Array(h * w * 3).fill(i % 256), mask: new Uint8Array(h * w).fill(i % 3), width: w, height: h, channels: 3, file: `f${i}.png` }
    }
  }
  return { ds, stats }
}

/** The sample ids of a batch (first pixel of each image). */
function ids (b: LoaderBatch): number[] {
  const [n, c, h, w] = b.images.shape
  const d = b.images.dataSync()
  return Array.from({ length: n }, (_, i) => d[i * c * h * w])
}

async function epoch (l: AsyncIterable<LoaderBatch>): Promise<number[][]> {
  const out: number[][] = []
  for await (const b of l) out.push(ids(b))
  return out
}

describe('loader', () => {
  it('batches every sample once per epoch, in order without shuffle; length, dropLast', async () => {
    const { ds } = fake(10)
    const l = loader(ds, { batchSize: 4 })
    assert.strictEqual(l.length, 3)
    assert.deepStrictEqual(await epoch(l), [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]])
    const d = loader(ds, { batchSize: 4, dropLast: true })
    assert.strictEqual(d.length, 2)
    assert.deepStrictEqual(await epoch(d), [[0, 1, 2, 3], [4, 5, 6, 7]])
    for await (const b of loader(ds, { batchSize: 3 })) {
      assert.deepStrictEqual(b.images.shape.slice(1), [3, 4, 5])
      assert.strictEqual(b.images.dtype, 'uint8')
      assert.deepStrictEqual(b.masks.shape.slice(1), [4, 5])
      assert.deepStrictEqual(b.files, ids(b).map((i) => `f${i}.png`))
      assert.ok(Array.from(b.masks.dataSync()).every((x, k) => x === ids(b)[Math.floor(k / 20)] % 3))
    }
  })

  it('shuffles with the seed: a permutation, the same for the same seed, a new one each epoch', async () => {
    const { ds } = fake(23)
    const a = loader(ds, { batchSize: 5, shuffle: true, seed: 7 })
    const b = loader(ds, { batchSize: 5, shuffle: true, seed: 7 })
    const a0 = (await epoch(a)).flat()
    assert.deepStrictEqual([...a0].sort((x, y) => x - y), Array.from({ length: 23 }, (_, i) => i))
    assert.notDeepStrictEqual(a0, Array.from({ length: 23 }, (_, i) => i))
    assert.deepStrictEqual((await epoch(b)).flat(), a0)
    const a1 = (await epoch(a)).flat()
    assert.notDeepStrictEqual(a1, a0, 'new order in epoch 1')
    assert.deepStrictEqual((await epoch(b)).flat(), a1)
    assert.notDeepStrictEqual((await epoch(loader(ds, { batchSize: 5, shuffle: true, seed: 8 }))).flat(), a0)
  })

  it('gives identical augmented batches for the same seed', async () => {
    const dir = tmpdir()
    for (let i = 0; i < 6; i++) {
      await rgbFile(path.join(dir, 'img', `${i}.png`), 20 + i, 16, i)
      await greyPng(path.join(dir, 'lab', `${i}.png`), labels(20 + i, 16, 3, i), 20 + i, 16)
    }
    const ds = folder({ images: path.join(dir, 'img'), masks: path.join(dir, 'lab'), classes: 3 })
    const run = async (seed: number): Promise<number[][]> => {
      const out: number[][] = []
      for await (const b of loader(ds, { batchSize: 2, shuffle: true, seed, concurrency: 3, augment: { crop: [12, 12], jitter: true } })) {
        out.push([...b.images.dataSync(), ...b.masks.dataSync()])
      }
      return out
    }
    const [x, y, z] = [await run(1), await run(1), await run(2)]
    assert.deepStrictEqual(x, y)
    assert.notDeepStrictEqual(x, z)
    fs.rmSync(dir, { recursive: true, force: true })
  })

  it('bounded prefetch: at most `concurrency` decodes at once and `prefetch` batches ahead of the consumer', async () => {
    const { ds, stats } = fake(200, { delay: 3 })
    const l = loader(ds, { batchSize: 4, prefetch: 2, concurrency: 3 })
    const it = l[Symbol.asyncIterator]()
    for (let k = 1; k <= 5; k++) {
      await it.next()
      await sleep(60)
      assert.strictEqual(stats.started, (k + 2) * 4, `after ${k} batches: ${stats.started} samples read`)
    }
    assert.ok(stats.peak <= 3, `peak decodes ${stats.peak}`)
    assert.ok(l.peak.held <= 8 && l.peak.inflight <= 3, JSON.stringify(l.peak))
    await it.return?.()
  })

  it('backpressure: a consumer that stops pulling stops the reading; break ends the epoch', async () => {
    const { ds, stats } = fake(1000)
    const l = loader(ds, { batchSize: 8, prefetch: 1 })
    let n = 0
    for await (const b of l) {
      assert.strictEqual(b.images.shape[0], 8)
      await sleep(50) // a slow training step
      assert.ok(stats.started <= (n + 2) * 8, `${stats.started} read with ${n + 1} batches taken`)
      if (++n === 3) break
    }
    const after = stats.started
    await sleep(50)
    assert.strictEqual(stats.started, after, 'nothing is read after break')
    assert.ok(after <= 4 * 8)
    assert.deepStrictEqual(await epoch(l).then((e) => e.length), 125, 'the next epoch starts afresh')
  })

  it("onError 'throw' (default): a DataError naming the file and reason, after the batches before it", async () => {
    const { ds } = fake(12, { bad: [5] })
    const got: number[][] = []
    await assert.rejects(async () => { for await (const b of loader(ds, { batchSize: 4 })) got.push(ids(b)) }, (err: Error) => {
      assert.ok(err instanceof DataError)
      assert.strictEqual(err.message, 'f5.png: corrupt image data')
      return true
    })
    assert.deepStrictEqual(got, [[0, 1, 2, 3]])
  })

  it("onError 'skip': batches from the good samples, `skipped` lists file and reason, a warning at the end of the epoch", async () => {
    const { ds } = fake(10, { bad: [1, 5, 6] })
    const l = loader(ds, { batchSize: 4, onError: 'skip' })
    const warnings: string[] = []
    const onWarning = (w: Error): void => { warnings.push(w.message) }
    process.on('warning', onWarning)
    try {
      assert.deepStrictEqual(await epoch(l), [[0, 2, 3, 4], [7, 8, 9]])
      await sleep(10)
    } finally {
      process.off('warning', onWarning)
    }
    assert.deepStrictEqual(l.skipped, [1, 5, 6].map((i) => ({ file: `f${i}.png`, reason: 'corrupt image data' })))
    assert.strictEqual(warnings.length, 1)
    assert.match(warnings[0], /skipped 3 unreadable sample\(s\) in epoch 0 \(7 used\): f1\.png \(corrupt image data\)/)
  })

  it('skips real bad files (corrupt, truncated, size mismatch, missing mask) and trains through them with fit()', async function () {
    const dir = tmpdir()
    const img = path.join(dir, 'images')
    const lab = path.join(dir, 'masks')
    for (let i = 0; i < 6; i++) {
      await rgbFile(path.join(img, `ok${i}.png`), 32, 32, i)
      await greyPng(path.join(lab, `ok${i}.png`), labels(32, 32, 3, i), 32, 32)
    }
    write(path.join(img, 'corrupt.jpg'), Buffer.from('garbage'))
    await greyPng(path.join(lab, 'corrupt.png'), labels(32, 32, 3), 32, 32)
    const full = fs.readFileSync(path.join(img, 'ok0.png'))
    write(path.join(img, 'trunc.png'), full.subarray(0, full.length - 100))
    await greyPng(path.join(lab, 'trunc.png'), labels(32, 32, 3), 32, 32)
    await rgbFile(path.join(img, 'size.png'), 32, 32)
    await greyPng(path.join(lab, 'size.png'), labels(16, 32, 3), 16, 32)
    await rgbFile(path.join(img, 'nomask.png'), 32, 32)
    const ds = folder({ images: img, masks: lab, classes: 3 })
    const l = loader(ds, { batchSize: 2, shuffle: true, seed: 1, onError: 'skip', augment: { crop: [32, 32] } })
    assert.strictEqual(l.length, 5)
    const model = await createModel({ arch: 'fcn', backbone: 'resnet18', numClasses: 3, outputStride: 32 })
    try {
      const h = await model.fit(l, { epochs: 1, schedule: { type: 'poly' } })
      assert.strictEqual(h.steps, 3, '6 good samples in batches of 2')
      assert.strictEqual(h.epochs[0].skipped, 4)
    } finally {
      model.dispose()
    }
    const reasons = Object.fromEntries(l.skipped.map((s) => [path.basename(s.file), s.reason]))
    assert.deepStrictEqual(Object.keys(reasons).sort(), ['corrupt.jpg', 'nomask.png', 'size.png', 'trunc.png'])
    assert.match(reasons['size.png'], /mask is 16x32 but its image size\.png is 32x32/)
    assert.match(reasons['trunc.png'], /truncated PNG/)
    assert.match(reasons['nomask.png'], /no mask/)
    fs.rmSync(dir, { recursive: true, force: true })
  })

  it("a custom data set's plain errors and malformed samples are per-sample DataErrors (skippable)", async () => {
    const ds: Dataset = {
      length: 4,
      classes: ['a', 'b'],
      palette: [[0, 0, 0], [1, 1, 1]],
      ignoreIndex: 255,
      async get (i: number): Promise<Sample> {
        if (i === 1) throw new Error('database timeout')
        const s: Sample = { image: new Uint8Array(12).fill(i), mask: new Uint8Array(4), width: 2, height: 2, channels: 3, file: `row ${i}` }
        if (i === 2) s.mask = new Uint8Array(3)
        return s
      }
    }
    await assert.rejects(epoch(loader(ds, { batchSize: 4 })), /^DataError: sample 1: database timeout/)
    const l = loader(ds, { batchSize: 4, onError: 'skip' })
    assert.deepStrictEqual(await epoch(l), [[0, 3]])
    assert.deepStrictEqual(l.skipped, [{ file: 'sample 1', reason: 'database timeout' }, { file: 'row 2', reason: 'invalid sample: expected mask to be a Uint8Array of 4 bytes (2 x 2)' }])
  })

  it('samples of different sizes need a crop, a resize or padding', async () => {
    const { ds } = fake(4, { size: (i) => [4 + i, 6] })
    await assert.rejects(epoch(loader(ds, { batchSize: 2 })), /samples of one size in a batch .*crop, a resize or pad: 'batch'/)
    for await (const b of loader(ds, { batchSize: 2, pad: 'batch' })) {
      assert.deepStrictEqual(b.images.shape, [2, 3, ids(b)[1] + 4, 6])
      const m = b.masks.dataSync()
      assert.strictEqual(m[m.length - 1], ids(b)[1] % 3)
      assert.strictEqual(m[(ids(b)[1] + 4) * 6 - 1], 255, 'the smaller mask is padded with the ignore index')
    }
    for await (const b of loader(ds, { batchSize: 4, resize: [8, 8] })) assert.deepStrictEqual(b.masks.shape, [4, 8, 8])
    for await (const b of loader(ds, { batchSize: 4, augment: { crop: [5, 5] } })) assert.deepStrictEqual(b.images.shape, [4, 3, 5, 5])
  })

  it('streams (fromAsyncIterable): bounded reading, length when known, shuffle buffer', async () => {
    let pulled = 0
    async function * items (): AsyncGenerator<SourceItem> {
      for (let i = 0; i < 40; i++) {
        pulled++
        yield { image: new Uint8Array(2 * 3 * 3).fill(i), width: 3, height: 2, mask: new Uint8Array(6).fill(i % 2), name: `s${i}` }
      }
    }
    const ds = fromAsyncIterable(() => items(), { classes: 2 })
    const l = loader(ds, { batchSize: 4, prefetch: 2 })
    assert.strictEqual(l.length, undefined)
    const it = l[Symbol.asyncIterator]()
    const first = await it.next()
    await sleep(30)
    assert.deepStrictEqual(ids(first.value), [0, 1, 2, 3])
    assert.ok(pulled <= 3 * 4 + 1, `${pulled} items pulled with one batch taken`)
    await it.return?.()
    assert.strictEqual(loader(fromAsyncIterable(() => items(), { classes: 2, length: 40 }), { batchSize: 4 }).length, 10)
    const shuffled = (await epoch(loader(ds, { batchSize: 4, shuffle: true, seed: 3, shuffleBuffer: 8 }))).flat()
    assert.deepStrictEqual([...shuffled].sort((a, b) => a - b), Array.from({ length: 40 }, (_, i) => i))
    assert.notDeepStrictEqual(shuffled, Array.from({ length: 40 }, (_, i) => i))
  })

  it('a source whose iterator throws ends the epoch with a DataError naming it, the thrown error as its cause, even with onError skip', async () => {
    const boom = new TypeError('boom')
    async function * items (): AsyncGenerator<SourceItem> {
      for (let i = 0; i < 3; i++) yield { image: new Uint8Array(2 * 3 * 3).fill(i), width: 3, height: 2, name: `s${i}` }
      throw boom
    }
    for (const onError of ['throw', 'skip'] as const) {
      const seen: number[][] = []
      const err = await (async () => { for await (const b of loader(fromAsyncIterable(() => items(), { classes: 2 }), { batchSize: 2, onError })) seen.push(ids(b)) })().then(() => undefined, (e: unknown) => e)
      assert.ok(err instanceof DataError, `expected a DataError but got ${(err as Error)?.constructor?.name}: ${(err as Error)?.message}`)
      assert.strictEqual(err.message, '(the data source): its iterator threw: boom')
      assert.strictEqual(err.file, '(the data source)')
      assert.strictEqual(err.cause, boom)
      assert.ok(seen.flat().every((i) => i < 3), `batches before the failure hold only the samples read: ${JSON.stringify(seen)}`)
    }
  })

  it('rejects bad options', () => {
    const { ds } = fake(3)
    assert.throws(() => loader(ds, { batchSize: 0 }), RangeError)
    assert.throws(() => loader(ds, { onError: 'ignore' as never }), RangeError)
    assert.throws(() => loader(ds, { batchsize: 2 } as never), /Unknown option 'batchsize'/)
    assert.throws(() => loader({} as never), TypeError)
    assert.throws(() => loader(ds, { augment: { scale: [0, 1] } }), RangeError)
  })

  it('CamVid: live decoding and augmentation, labels 0..10 and 255', async function () {
    if (!fs.existsSync(path.join(CAMVID, 'trainannot'))) {
      console.log(`      (skipped: no CamVid at ${CAMVID})`)
      this.skip()
    }
    const l = loader(camvid(CAMVID, 'train'), { batchSize: 4, shuffle: true, seed: 1, augment: { crop: [128, 128], jitter: true } })
    assert.strictEqual(l.length, 92)
    let n = 0
    for await (const b of l) {
      assert.deepStrictEqual(b.images.shape, [4, 3, 128, 128])
      assert.ok(Array.from(b.masks.dataSync()).every((x) => x <= 10 || x === 255))
      if (++n === 3) break
    }
  })
})
