import * as assert from 'assert'
import { createModel, Model, tensor, Tensor } from '../lib'
import { randomImages, rejects } from './helpers'
import { maxAbsDiff } from './twin'

// U-Net with 4 base channels: a few thousand parameters, any 32 x 32 image in well under a millisecond.
const TINY = { arch: 'unet', baseChannels: 4, numClasses: 3 } as const
const N = 16

describe('request batching (setBatching)', () => {
  let model: Model
  const images: Array<Tensor<'float32'>> = []
  const refLogits: Float32Array[] = []
  const refLabels: Int32Array[] = []

  before(async () => {
    model = await createModel(TINY)
    for (let i = 0; i < N; i++) images.push(randomImages(1, 3, 32, 32, 100 + i))
    // references: each image alone, batching off
    for (const x of images) {
      refLogits.push((await model.predict(x, { output: 'logits' })).dataSync())
      refLabels.push((await model.predict(x)).dataSync())
    }
  })
  after(() => {
    try { model.setBatching(false) } catch {}
    model.dispose()
  })

  it('batching is off by default: each predict call is one native run', () => {
    assert.strictEqual(model.batching, false)
    const s = model.stats()
    assert.strictEqual(s.requests, 2 * N)
    assert.strictEqual(s.runs, 2 * N)
    assert.strictEqual(s.batched, 0)
  })

  it(`${N} concurrent single-image calls: each caller gets its own image's result, in fewer native runs`, async () => {
    // the references differ, so a caller given another image's result would be caught
    for (let i = 1; i < N; i++) assert.ok(maxAbsDiff(refLogits[0], refLogits[i]) > 1e-3)
    model.setBatching({ maxBatch: 8, maxDelayMs: 50 })
    assert.deepStrictEqual(model.batching, { maxBatch: 8, maxDelayMs: 50 })
    const before = model.stats()
    const [logits, labels] = await Promise.all([
      Promise.all(images.map((x) => model.predict(x, { output: 'logits' }))),
      Promise.all(images.map((x) => model.predict(x)))
    ])
    for (let i = 0; i < N; i++) {
      assert.deepStrictEqual([...logits[i].shape], [1, 3, 32, 32])
      const d = maxAbsDiff(logits[i].dataSync(), refLogits[i])
      assert.ok(d < 1e-4, `caller ${i}: logits differ from its image's by ${d}`)
      assert.deepStrictEqual(labels[i].dataSync(), refLabels[i], `caller ${i}: labels`)
    }
    const after = model.stats()
    const requests = after.requests - before.requests
    const runs = after.runs - before.runs
    assert.strictEqual(requests, 2 * N)
    // logits and labels are different options: separate batches, at most 8 images each
    assert.strictEqual(runs, 4, `${runs} native runs for ${requests} requests`)
    assert.strictEqual(after.largest, 8)
    assert.strictEqual(after.fallbacks, before.fallbacks)
  })

  it('different image sizes go in separate batches', async () => {
    model.setBatching({ maxBatch: 8, maxDelayMs: 20 })
    const big = randomImages(1, 3, 48, 64, 7)
    const refBig = (await model.predict(big)).dataSync()
    const before = model.stats()
    const out = await Promise.all([images[0], big, images[1], big].map((x) => model.predict(x)))
    assert.deepStrictEqual(out[0].dataSync(), refLabels[0])
    assert.deepStrictEqual(out[1].dataSync(), refBig)
    assert.deepStrictEqual(out[2].dataSync(), refLabels[1])
    assert.deepStrictEqual(out[3].dataSync(), refBig)
    assert.strictEqual(model.stats().runs - before.runs, 2)
  })

  it('an image that fails natively fails only its own promise', async () => {
    model.setBatching({ maxBatch: 8, maxDelayMs: 20 })
    const bad = tensor(new Float32Array(3 * 32 * 32).fill(NaN), [1, 3, 32, 32])
    const before = model.stats()
    const settled = await Promise.allSettled([images[0], bad, images[1], images[2]].map((x) => model.predict(x)))
    assert.strictEqual(settled[1].status, 'rejected')
    assert.match(((settled[1] as PromiseRejectedResult).reason as Error).message, /finite image values/)
    for (const [j, i] of [[0, 0], [2, 1], [3, 2]]) {
      assert.strictEqual(settled[j].status, 'fulfilled', `request ${j}`)
      assert.deepStrictEqual((settled[j] as PromiseFulfilledResult<Tensor>).value.dataSync(), refLabels[i])
    }
    assert.strictEqual(model.stats().fallbacks - before.fallbacks, 1)
  })

  it('bad options or channels are rejected in TypeScript before reaching the queue', async () => {
    model.setBatching({ maxBatch: 8, maxDelayMs: 5 })
    await rejects(model.predict(randomImages(1, 1, 32, 32)), RangeError, /3 channel\(s\)/)
    await rejects(model.predict(images[0], { output: 'logit' as never }), RangeError, /output/)
  })

  it('a lone request completes after about maxDelayMs, not stuck waiting for a full batch', async () => {
    model.setBatching({ maxBatch: 64, maxDelayMs: 30 })
    const t0 = Date.now()
    const y = await model.predict(images[3])
    const ms = Date.now() - t0
    assert.deepStrictEqual(y.dataSync(), refLabels[3])
    assert.ok(ms >= 25, `completed after ${ms} ms: did not wait for others`)
    assert.ok(ms < 2000, `completed after ${ms} ms`)
  })

  it('a full batch does not wait for maxDelayMs', async () => {
    model.setBatching({ maxBatch: 4, maxDelayMs: 5000 })
    const t0 = Date.now()
    await Promise.all(images.slice(0, 4).map((x) => model.predict(x)))
    assert.ok(Date.now() - t0 < 2500, `took ${Date.now() - t0} ms`)
  })

  it('dispose while requests are queued is refused with a clear error; the requests still complete', async () => {
    model.setBatching({ maxBatch: 8, maxDelayMs: 20 })
    const pending = images.slice(0, 3).map((x) => model.predict(x))
    assert.throws(() => model.dispose(), /cannot dispose a model while \d+ job\(s\) are queued or running/)
    const out = await Promise.all(pending)
    for (let i = 0; i < 3; i++) assert.deepStrictEqual(out[i].dataSync(), refLabels[i])
    const m2 = await createModel(TINY)
    m2.setBatching({ maxBatch: 4, maxDelayMs: 1 })
    await m2.predict(images[0])
    m2.dispose()
    assert.throws(() => m2.stats(), /disposed/)
  })

  it('validates the batching options', () => {
    assert.throws(() => model.setBatching({ maxBatch: 0 }), RangeError)
    assert.throws(() => model.setBatching({ maxBatch: 2.5 }), TypeError)
    assert.throws(() => model.setBatching({ maxDelayMs: -1 }), RangeError)
    assert.throws(() => model.setBatching({ maxBatchSize: 4 } as never), /Unknown option 'maxBatchSize'/)
    assert.throws(() => model.setBatching('on' as never), TypeError)
  })

  it('setBatching(false) turns it off again', async () => {
    model.setBatching(false)
    const before = model.stats()
    await Promise.all(images.slice(0, 4).map((x) => model.predict(x)))
    assert.strictEqual(model.stats().runs - before.runs, 4)
  })
})
