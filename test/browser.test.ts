// In a real browser (Debian's headless Chromium): examples/browser segments an image with a trained
// model's ONNX export in onnxruntime-web as segtorch does, and the run report renders with every
// picture and the curves, without console errors. (test/browser.ts finds or installs Chromium.)
import * as assert from 'assert'
import * as path from 'path'
import { pathToFileURL } from 'url'
import sharp from 'sharp'
import { createModel, tensor } from '../lib'
import { readImage } from '../lib/data'
import { writeReport } from '../lib/report'
import { chromium, launch } from './browser'
import * as fs from 'fs'
import { ROOT, tmpdir } from './helpers'

// Screenshots for people to look at (kept after the run; runs/ is git-ignored).
const SHOTS = path.join(ROOT, 'runs', 'browser-test')

describe('in a browser (headless Chromium)', function () {
  this.timeout(600000)
  let chrome: string
  before(function () {
    const c = chromium()
    if (!c.path) {
      console.log(`      (skipped: ${c.reason})`)
      this.skip()
    }
    chrome = c.path as string
  })

  it('examples/browser: the ONNX export of a trained model segments a picked image as segtorch does (>= 99.9% of pixels)', async () => {
    const dir = tmpdir()
    // A tiny U-Net trained for a few steps on the membrane images shipped with segtorch.
    const train = path.join(ROOT, 'data', 'membrane', 'train')
    const img = await readImage(path.join(train, 'image', '0.png'), 1)
    const lab = await readImage(path.join(train, 'label', '0.png'), 1)
    const crop = (src: Uint8Array, oy: number, ox: number, s: number, f: (v: number) => number): Uint8Array => {
      const out = new Uint8Array(s * s)
      for (let i = 0; i < s; i++) for (let j = 0; j < s; j++) out[i * s + j] = f(src[(oy + i) * img.width + ox + j])
      return out
    }
    const S = 96
    const xs: Uint8Array[] = []; const ys: Uint8Array[] = []
    for (const [oy, ox] of [[0, 0], [100, 200], [300, 50], [400, 400]]) {
      xs.push(crop(img.data, oy, ox, S, (v) => v))
      ys.push(crop(lab.data, oy, ox, S, (v) => (v > 127 ? 1 : 0)))
    }
    const join = (a: Uint8Array[]): Uint8Array => { const o = new Uint8Array(a.length * S * S); a.forEach((p, k) => o.set(p, k * S * S)); return o }
    // The picture the user picks: an unseen 200 x 152 piece of another image, as a greyscale PNG.
    const test = await readImage(path.join(ROOT, 'data', 'membrane', 'test', '3.png'), 1)
    const [W, H] = [200, 152]
    const pick = new Uint8Array(W * H)
    for (let i = 0; i < H; i++) for (let j = 0; j < W; j++) pick[i * W + j] = test.data[(50 + i) * test.width + 70 + j]
    await sharp(Buffer.from(pick), { raw: { width: W, height: H, channels: 1 } }).png().toFile(path.join(dir, 'pick.png'))
    // Trained until it sees both classes on the picture (a model that answers one class everywhere
    // would agree with anything): 10 steps at a time, at most 300.
    const model = await createModel({ arch: 'unet', numClasses: 2, inChannels: 1, baseChannels: 8 })
    let ours = new Int32Array(0)
    let counts = [0, 0]
    for (let k = 0; k < 300; k += 10) {
      for (let i = 0; i < 10; i++) await model.trainStep(tensor(join(xs), [4, 1, S, S]), tensor(join(ys), [4, S, S]), { optimizer: { type: 'adam', lr: 3e-3 } })
      ours = Int32Array.from((await model.predict(tensor(pick, [1, 1, H, W]), { precision: 'fp32' })).dataSync())
      counts = [0, 1].map((c) => ours.filter((v) => v === c).length)
      if (counts[0] > 0.05 * ours.length && counts[1] > 0.05 * ours.length) break
    }
    assert.ok(counts[0] > 0.05 * ours.length && counts[1] > 0.05 * ours.length, `the trained model finds both classes: ${counts}`)
    const onnx = path.join(dir, 'membrane.onnx')
    await model.exportOnnx(onnx)
    model.dispose()

    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const { serve } = require(path.join(ROOT, 'examples', 'browser', 'serve.js'))
    const { server, url } = await serve({ model: onnx, files: dir })
    // Closed whatever fails, a launch that fails included: an open server would keep mocha from exiting.
    let browser: Awaited<ReturnType<typeof launch>> | undefined
    try {
      browser = await launch(chrome)
      const page = await browser.newPage()
      const problems: string[] = []
      page.on('console', (m) => { if (m.type() === 'error') problems.push(m.text()) })
      page.on('pageerror', (e) => problems.push(`page error: ${(e as Error).message}`))
      await page.goto(`${url}?image=/files/pick.png`)
      await page.waitForFunction(() => document.body.dataset.done === 'true' || document.body.dataset.error !== undefined, { timeout: 300000 })
      const r = await page.evaluate(() => ({ error: document.body.dataset.error, status: document.getElementById('status')?.textContent, result: (window as unknown as { segtorchResult: { width: number, height: number, labels: number[] } }).segtorchResult }))
      assert.strictEqual(r.error, undefined, `the page failed: ${r.error}`)
      assert.deepStrictEqual(problems, [])
      assert.deepStrictEqual([r.result.width, r.result.height], [W, H])
      let same = 0
      for (let p = 0; p < ours.length; p++) if (r.result.labels[p] === ours[p]) same++
      const agreement = same / ours.length
      assert.ok(agreement >= 0.999, `pixel agreement ${agreement}`)
      fs.mkdirSync(SHOTS, { recursive: true })
      await page.screenshot({ path: path.join(SHOTS, 'example.png'), fullPage: true })
      console.log(`      (${r.status}; agreement with segtorch ${(100 * agreement).toFixed(3)} %; screenshot: ${path.relative(ROOT, path.join(SHOTS, 'example.png'))})`)
    } finally {
      await browser?.close()
      server.close()
    }
  })

  it('report.html of a real fit renders: no console errors, every image and the curves load', async () => {
    const dir = tmpdir()
    // A real (tiny) run: two epochs of fit with validation, the report written by fit's own code.
    const model = await createModel({ arch: 'unet', numClasses: 3, baseChannels: 4, inChannels: 3 })
    const n = 4
    const images = tensor(new Uint8Array(n * 3 * 32 * 32).map((_, i) => (i * 37) % 251), [n, 3, 32, 32])
    const masks = tensor(new Uint8Array(n * 32 * 32).map((_, i) => i % 3), [n, 32, 32])
    const data = [{ images, masks }]
    const history = await model.fit(data, { epochs: 2, validation: data, optimizer: { lr: 0.01 } })
    const steps = [1, 2].map((s) => ({ step: s, epoch: s - 1, loss: 1 / s, lr: 0.01 }))
    const img = { data: new Uint8Array(32 * 32 * 3).fill(120), width: 32, height: 32, channels: 3 }
    const files = await writeReport(dir, {
      title: 'browser check',
      history,
      steps,
      classes: ['a', 'b', 'c'],
      palette: [[0, 0, 0], [255, 0, 0], [0, 0, 255]],
      samples: [0, 1].map((k) => ({ name: `sample ${k}.png`, image: img, truth: new Uint8Array(32 * 32).fill(k), prediction: new Uint8Array(32 * 32).fill(2 - k) })),
      summary: { architecture: 'unet' },
      config: { epochs: 2 }
    })
    model.dispose()

    const browser = await launch(chrome)
    try {
      const page = await browser.newPage()
      const problems: string[] = []
      page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warn') problems.push(`${m.type()}: ${m.text()}`) })
      page.on('pageerror', (e) => problems.push(`page error: ${(e as Error).message}`))
      page.on('requestfailed', (r) => problems.push(`failed: ${r.url()}`))
      await page.goto(pathToFileURL(files.html).href, { waitUntil: 'load' })
      const seen = await page.evaluate(() => {
        const imgs = Array.from(document.images).map((i) => ({ src: i.getAttribute('src'), ok: i.complete && i.naturalWidth > 0, w: i.naturalWidth }))
        const svgs = Array.from(document.querySelectorAll('svg')).map((s) => ({ lines: s.querySelectorAll('polyline').length, w: s.getBoundingClientRect().width }))
        const objects = Array.from(document.querySelectorAll('object, embed, iframe')).length
        return { title: document.title, imgs, svgs, objects, text: document.body.innerText }
      })
      assert.deepStrictEqual(problems, [])
      assert.strictEqual(seen.title, 'browser check')
      assert.ok(seen.imgs.length >= 2, `the sample pictures are images: ${JSON.stringify(seen.imgs)}`)
      for (const i of seen.imgs) assert.ok(i.ok, `${i.src} loaded`)
      const curves = seen.svgs.filter((s) => s.lines > 0)
      assert.ok(curves.length >= 1 && curves.every((s) => s.w > 100), `the curves are drawn: ${JSON.stringify(seen.svgs)}`)
      assert.match(seen.text, /mIoU/)
      fs.mkdirSync(SHOTS, { recursive: true })
      await page.screenshot({ path: path.join(SHOTS, 'report.png'), fullPage: true })
      console.log(`      (screenshot: ${path.relative(ROOT, path.join(SHOTS, 'report.png'))})`)
    } finally {
      await browser.close()
    }
  })
})
