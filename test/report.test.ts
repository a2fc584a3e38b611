import * as assert from 'assert'
import * as fs from 'fs'
import * as path from 'path'
import sharp from 'sharp'
import { chartsSvg, colourise, curvesSvg, niceTicks, overlay, perClassCsv, reportHtml, sideBySide, writeReport, IGNORE_COLOUR } from '../lib/report'
import type { History } from '../lib'
import { tmpdir } from './helpers'

/** Tags open and close in order (a small well-formedness check without an XML parser). */
export function assertWellFormed (xml: string, voidTags: readonly string[] = []): void {
  const body = xml.replace(/<\?xml[^>]*\?>/, '').replace(/<!DOCTYPE[^>]*>/i, '').replace(/<style>[\s\S]*?<\/style>/g, '')
  const stack: string[] = []
  for (const m of body.matchAll(/<(\/?)([a-zA-Z][\w:-]*)([^>]*?)(\/?)>/g)) {
    const [, close, name, attrs, self] = m
    assert.ok(!/[<]/.test(attrs), `no '<' inside the tag ${name}`)
    if (self || voidTags.includes(name.toLowerCase())) continue
    if (close) assert.strictEqual(stack.pop(), name, `</${name}> closes the innermost open tag`)
    else stack.push(name)
  }
  assert.deepStrictEqual(stack, [], 'every tag is closed')
  assert.doesNotMatch(body.replace(/<[^>]*>/g, ''), /<|&(?!amp;|lt;|gt;|quot;|#39;|nbsp;)/, 'text has no raw < or bare &')
}

const HISTORY: History = {
  steps: 6,
  stopped: 'completed',
  best: { metric: 'mIoU', value: 0.5, epoch: 1 },
  epochs: [0, 1].map((e) => ({
    epoch: e,
    steps: 3 * (e + 1),
    loss: 1 - 0.2 * e,
    lossParts: { main: 1 - 0.2 * e },
    lr: 0.01,
    seconds: 1,
    imagesPerSecond: 4,
    validation: { mIoU: 0.4 + 0.1 * e, pixelAccuracy: 0.7, meanAccuracy: 0.5, fwIoU: 0.5, meanDice: 0.5, perClassIoU: [0.2, NaN, 0.8], perClassAccuracy: [0.3, NaN, 0.9], perClassDice: [0, 0, 0], confusion: [[1, 0, 0], [0, 0, 0], [0, 0, 1]], images: 2 }
  }))
}
const STEPS = [1, 2, 3, 4, 5, 6].map((s) => ({ step: s, epoch: s > 3 ? 1 : 0, loss: 1.2 - 0.1 * s, lr: 0.01 * (1 - s / 7) }))

describe('report: SVG charts', () => {
  it('niceTicks gives round values covering the range', () => {
    const a = niceTicks(0, 1, 5)
    assert.strictEqual(a.length, 6)
    a.forEach((x, i) => assert.ok(Math.abs(x - 0.2 * i) < 1e-9, `${a}`))
    const t = niceTicks(0.13, 0.87, 4)
    assert.ok(t.length >= 3 && t.every((x) => x >= 0.13 - 1e-9 && x <= 0.87 + 1e-9))
    assert.ok(t.every((x) => Math.abs(x * 10 - Math.round(x * 10)) < 1e-9), `steps of 0.1 or 0.2: ${t}`)
    assert.deepStrictEqual(niceTicks(3, 3), [3])
  })

  it('draws each series as a polyline with one point per value, well formed, titles escaped', () => {
    const svg = chartsSvg([{ title: 'a < b & c', xLabel: 'step', series: [{ name: 'loss', points: [[1, 3], [2, 2], [3, 1.5], [4, NaN]] }] }])
    assert.match(svg, /^<\?xml version="1.0"[^>]*\?>\n<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/)
    assertWellFormed(svg)
    assert.match(svg, /a &lt; b &amp; c/)
    const lines = [...svg.matchAll(/<polyline[^>]*points="([^"]*)"/g)]
    assert.strictEqual(lines.length, 1)
    const pts = lines[0][1].split(' ').map((p) => p.split(',').map(Number))
    assert.strictEqual(pts.length, 3, 'the NaN point is left out')
    assert.ok(pts.every(([x, y]) => Number.isFinite(x) && Number.isFinite(y)))
    assert.ok(pts[0][0] < pts[1][0] && pts[1][0] < pts[2][0], 'x grows left to right')
    assert.ok(pts[0][1] < pts[1][1] && pts[1][1] < pts[2][1], 'smaller values lower on the page')
  })

  it('curvesSvg charts the step losses, the validation mIoU and the learning rate', () => {
    const svg = curvesSvg(HISTORY, STEPS)
    assertWellFormed(svg)
    for (const t of ['Training loss', 'Validation', 'Learning rate', 'mIoU', 'pixel accuracy']) assert.ok(svg.includes(t), t)
    const lines = [...svg.matchAll(/<polyline[^>]*points="([^"]*)"/g)].map((m) => m[1].split(' ').length)
    // raw loss (6), smoothed (6), epoch mean (2), mIoU (2), pixel accuracy (2), lr (6)
    assert.deepStrictEqual(lines, [6, 6, 2, 2, 2, 6])
    const empty = curvesSvg(undefined, [])
    assertWellFormed(empty)
    assert.match(empty, /no data/)
  })
})

describe('report: pictures, table and page', () => {
  it('colourise maps labels through the palette and ignored labels to IGNORE_COLOUR', () => {
    const p = colourise([0, 1, 255, 1], 2, 2, [[10, 20, 30], [40, 50, 60]])
    assert.deepStrictEqual([...p.data], [10, 20, 30, 40, 50, 60, ...IGNORE_COLOUR, 40, 50, 60])
    assert.throws(() => colourise([0], 2, 2, [[0, 0, 0]]), RangeError)
  })

  it('overlay blends and sideBySide lays pictures out with a gap', () => {
    const grey = { data: new Uint8Array([100, 200]), width: 2, height: 1, channels: 1 }
    const mask = { data: new Uint8Array([0, 0, 0, 255, 255, 255]), width: 2, height: 1, channels: 3 }
    assert.deepStrictEqual([...overlay(grey, mask, 0.5).data], [50, 50, 50, 228, 228, 228])
    const s = sideBySide([grey, mask], 1)
    assert.strictEqual(s.width, 5)
    assert.deepStrictEqual([...s.data], [100, 100, 100, 200, 200, 200, 255, 255, 255, 0, 0, 0, 255, 255, 255])
  })

  it('perClassCsv writes one row per class, empty where IoU is undefined', () => {
    const csv = perClassCsv(['bg', 'a,b', 'c'], { mIoU: 0.5, pixelAccuracy: 0.7, perClassIoU: [0.2, NaN, 0.8], perClassAccuracy: [0.3, NaN, 0.9] })
    assert.strictEqual(csv, 'index,class,iou,accuracy\n0,bg,0.200000,0.300000\n1,"a,b",,\n2,c,0.800000,0.900000\n')
  })

  it('writeReport writes a self-contained page whose pictures exist', async () => {
    const dir = tmpdir()
    const image = { data: new Uint8Array(6 * 4 * 3).fill(90), width: 6, height: 4, channels: 3 }
    const files = await writeReport(dir, {
      title: 'run <1>',
      history: HISTORY,
      steps: STEPS,
      classes: ['bg', 'x', 'y'],
      palette: [[0, 0, 0], [255, 0, 0], [0, 255, 0]],
      samples: [{ name: 'a/b c.png', image, truth: new Uint8Array(24).fill(1), prediction: new Uint8Array(24).fill(2) }],
      summary: { architecture: 'unet' },
      config: { lr: 0.01 }
    })
    const html = fs.readFileSync(files.html, 'utf8')
    assertWellFormed(html, ['meta', 'img', 'br'])
    assert.match(html, /<title>run &lt;1&gt;<\/title>/)
    assert.doesNotMatch(html, /(src|href)="(https?:)?\/\//, 'no network resources')
    assert.match(html, /<svg/, 'the curves are inline')
    const refs = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1])
    assert.ok(refs.length >= 3, refs.join())
    for (const r of refs) assert.ok(fs.existsSync(path.join(dir, r)), `${r} exists`)
    assert.ok(html.includes('50.00 %'), 'best mIoU shown')
    const meta = await sharp(files.samples[0]).metadata()
    // 3 panels of 6 px + 2 gaps of 4 px, enlarged x40 to reach 160 px of height
    assert.deepStrictEqual([meta.width, meta.height], [(3 * 6 + 8) * 40, 160])
    assert.strictEqual(fs.readFileSync(path.join(dir, 'per-class-iou.csv'), 'utf8').split('\n')[1], '0,bg,0.200000,0.300000')
    assert.ok(reportHtml({ title: 't', classes: [], palette: [] }, { curvesSvg: path.join(dir, 'none.svg'), samples: [] }).includes('no data'))
  })
})
