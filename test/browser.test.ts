// In a real browser (Debian's headless Chromium): the run report renders with every picture and
// the curves, and without console errors. (test/browser.ts finds or installs Chromium.)
import * as assert from 'assert'
import * as path from 'path'
import { pathToFileURL } from 'url'
import { createModel, tensor } from '../lib'
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
