/**
 * Training reports: what a run folder holds besides its checkpoints. `writeReport` writes
 * curves.svg (loss, validation mIoU, learning rate), per-class-iou.csv, sample predictions
 * (image | ground truth | prediction) under samples/, and report.html showing all of them: one
 * page that opens from disk (the SVG inline, the PNGs by relative path, no network resources).
 */
import * as fs from 'fs'
import * as path from 'path'
import type { Colour } from '../data/classes'
import type { History } from '../fit'
import { colourise, IGNORE_COLOUR, Picture, sideBySide, writePng } from './images'
import { Chart, chartsSvg, escapeXml, smooth } from './svg'

export { chartsSvg, escapeXml, niceTicks, smooth } from './svg'
export type { Chart, Series } from './svg'
export { colourise, overlay, sideBySide, toRgb, writePng, writeClassMapPng, IGNORE_COLOUR } from './images'
export type { Picture } from './images'

/** One optimizer step as the command line logs it (steps.csv). */
export interface StepRecord {
  step: number
  epoch: number
  loss: number
  lr: number
}

/** The metrics a report shows (an Evaluation's, without its confusion tensor). */
export interface ReportMetrics {
  mIoU: number
  pixelAccuracy: number
  meanAccuracy?: number
  perClassIoU: readonly number[]
  perClassAccuracy?: readonly number[]
  /** Images evaluated. */
  images?: number
}

/** One picture of the report: an image, its ground truth (optional) and the model's prediction. */
export interface ReportSample {
  name: string
  image: Picture
  /** Labels per pixel (height x width); values outside the palette (ignore) get IGNORE_COLOUR. */
  truth?: ArrayLike<number>
  prediction: ArrayLike<number>
}

export interface ReportInput {
  title: string
  /** fit()'s history (epoch losses, validation metrics). */
  history?: History
  /** Per-step losses and learning rates, for finer curves than the epochs give. */
  steps?: readonly StepRecord[]
  classes: readonly string[]
  palette: readonly Colour[]
  /** Final evaluation: the per-class table. Default: the last validation in the history. */
  metrics?: ReportMetrics
  /** Which data the metrics are on, e.g. 'camvid val (101 images)'. */
  metricsOn?: string
  samples?: readonly ReportSample[]
  /** Facts shown at the top (architecture, data, time, ...). */
  summary?: Readonly<Record<string, string | number>>
  /** Shown as JSON at the end (the run's options). */
  config?: unknown
}

export interface ReportFiles {
  html: string
  curves: string
  perClassCsv?: string
  samples: string[]
}

/** The loss, validation and learning-rate charts of a run as one SVG document. */
export function curvesSvg (history: History | undefined, steps: readonly StepRecord[] = []): string {
  const epochs = history?.epochs ?? []
  const raw = steps.map((s) => [s.step, s.loss] as [number, number])
  const loss: Chart = {
    title: 'Training loss',
    xLabel: 'step',
    integerX: true,
    series: [
      { name: 'loss (per step)', points: raw, faint: true, colour: '#1f77b4' },
      { name: 'loss (smoothed)', points: raw.length > 1 ? smooth(raw, Math.min(0.9, 1 - 2 / (raw.length + 1))) : [], colour: '#1f77b4' },
      { name: 'epoch mean', points: epochs.map((e) => [e.steps, e.loss]), colour: '#d62728' }
    ]
  }
  const withVal = epochs.filter((e) => e.validation !== undefined)
  const val: Chart = {
    title: 'Validation',
    xLabel: 'step',
    integerX: true,
    yRange: [0, 1],
    series: [
      { name: 'mIoU', points: withVal.map((e) => [e.steps, e.validation?.mIoU ?? NaN]), colour: '#2ca02c' },
      { name: 'pixel accuracy', points: withVal.map((e) => [e.steps, e.validation?.pixelAccuracy ?? NaN]), colour: '#ff7f0e' }
    ]
  }
  const lr: Chart = {
    title: 'Learning rate',
    xLabel: 'step',
    integerX: true,
    series: [{ name: 'lr', points: steps.length ? steps.map((s) => [s.step, s.lr]) : epochs.map((e) => [e.steps, e.lr]), colour: '#9467bd' }]
  }
  return chartsSvg([loss, val, lr], { columns: 3, width: 400, height: 280 })
}

function pct (x: number | undefined): string {
  return x === undefined || !Number.isFinite(x) ? '' : (100 * x).toFixed(2)
}

function csvCell (s: string): string {
  return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s
}

/** class,index,iou,accuracy rows (IoU empty for classes absent from labels and predictions). */
export function perClassCsv (classes: readonly string[], m: ReportMetrics): string {
  const rows = ['index,class,iou,accuracy']
  classes.forEach((name, k) => {
    const iou = m.perClassIoU[k]
    const acc = m.perClassAccuracy?.[k]
    rows.push(`${k},${csvCell(name)},${Number.isFinite(iou) ? iou.toFixed(6) : ''},${acc !== undefined && Number.isFinite(acc) ? acc.toFixed(6) : ''}`)
  })
  return rows.join('\n') + '\n'
}

function metricsOf (history: History | undefined): ReportMetrics | undefined {
  const last = [...(history?.epochs ?? [])].reverse().find((e) => e.validation !== undefined)
  return last?.validation
}

/** The report page; `files` are paths relative to the page. */
export function reportHtml (r: ReportInput, files: { curvesSvg: string, samples: readonly string[], perClassCsv?: string }): string {
  const m = r.metrics ?? metricsOf(r.history)
  const e = escapeXml
  const css = 'body{font-family:sans-serif;margin:24px;color:#222;max-width:1240px}h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}' +
    'table{border-collapse:collapse;font-size:13px}td,th{padding:3px 10px;border-bottom:1px solid #eee;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}' +
    '.sw{display:inline-block;width:12px;height:12px;border:1px solid #888;vertical-align:middle}.bar{background:#2ca02c;height:10px}' +
    'figure{display:inline-block;margin:0 16px 16px 0}figcaption{font-size:12px;color:#555}img{image-rendering:pixelated;max-width:100%}pre{background:#f6f6f6;padding:8px;font-size:12px;overflow:auto}'
  const out: string[] = []
  out.push(`<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>${e(r.title)}</title><style>${css}</style></head><body>`)
  out.push(`<h1>${e(r.title)}</h1>`)
  const facts: Array<[string, string]> = Object.entries(r.summary ?? {}).map(([k, val]) => [k, String(val)])
  const h = r.history
  if (h) {
    facts.push(['steps', String(h.steps)], ['epochs completed', String(h.epochs.length)], ['stopped', h.stopped])
    if (h.best) facts.push(['best mIoU', `${pct(h.best.value)} % (epoch ${h.best.epoch + 1})`])
  }
  if (m) facts.push(['mIoU', `${pct(m.mIoU)} %`], ['pixel accuracy', `${pct(m.pixelAccuracy)} %`])
  if (m?.meanAccuracy !== undefined) facts.push(['mean class accuracy', `${pct(m.meanAccuracy)} %`])
  if (facts.length) out.push(`<table>${facts.map(([k, val]) => `<tr><th>${e(k)}</th><td>${e(val)}</td></tr>`).join('')}</table>`)

  out.push('<h2>Curves</h2>')
  const svgText = fs.existsSync(files.curvesSvg) ? fs.readFileSync(files.curvesSvg, 'utf8') : curvesSvg(r.history, r.steps)
  out.push(`<div>${svgText.replace(/^<\?xml[^>]*>\s*/, '')}</div>`)
  out.push(`<p><a href="${e(path.basename(files.curvesSvg))}">curves.svg</a></p>`)

  if (m) {
    out.push(`<h2>Per-class IoU${r.metricsOn ? ` (${e(r.metricsOn)})` : ''}</h2>`)
    out.push('<table><tr><th>#</th><th>class</th><th>IoU %</th><th>accuracy %</th><th></th></tr>')
    r.classes.forEach((name, k) => {
      const c = r.palette[k] ?? IGNORE_COLOUR
      const iou = m.perClassIoU[k]
      const w = Number.isFinite(iou) ? Math.round(200 * iou) : 0
      out.push(`<tr><td class="n">${k}</td><td><span class="sw" style="background:rgb(${c[0]},${c[1]},${c[2]})"></span> ${e(name)}</td>` +
        `<td class="n">${Number.isFinite(iou) ? pct(iou) : 'n/a'}</td><td class="n">${pct(m.perClassAccuracy?.[k])}</td>` +
        `<td><div class="bar" style="width:${w}px"></div></td></tr>`)
    })
    out.push('</table>')
    if (files.perClassCsv) out.push(`<p><a href="${e(files.perClassCsv)}">${e(files.perClassCsv)}</a></p>`)
  }

  if (files.samples.length) {
    out.push('<h2>Sample predictions</h2><p>image | ground truth | prediction</p>')
    files.samples.forEach((f, i) => {
      out.push(`<figure><img src="${e(f)}" alt="${e(r.samples?.[i]?.name ?? f)}"><figcaption>${e(r.samples?.[i]?.name ?? f)}</figcaption></figure>`)
    })
    out.push('<p>' + r.classes.map((name, k) => {
      const c = r.palette[k] ?? IGNORE_COLOUR
      return `<span class="sw" style="background:rgb(${c[0]},${c[1]},${c[2]})"></span> ${e(name)}`
    }).join(' &nbsp; ') + ` &nbsp; <span class="sw" style="background:rgb(${IGNORE_COLOUR.join(',')})"></span> ignored</p>`)
  }
  if (r.config !== undefined) out.push(`<h2>Options</h2><pre>${e(JSON.stringify(r.config, null, 2))}</pre>`)
  out.push(`<p style="font-size:11px;color:#888">written ${e(new Date().toISOString())} by segtorch</p></body></html>\n`)
  return out.join('\n')
}

function safeName (s: string): string {
  return s.replace(/\.[^./\\]*$/, '').replace(/[^A-Za-z0-9._-]+/g, '_').slice(-60) || 'sample'
}

/**
 * Writes a run's report into `dir`: curves.svg, per-class-iou.csv (when there are metrics),
 * samples/<n>-<name>.png and report.html. Returns the files written.
 */
export async function writeReport (dir: string, r: ReportInput): Promise<ReportFiles> {
  await fs.promises.mkdir(dir, { recursive: true })
  const curves = path.join(dir, 'curves.svg')
  await fs.promises.writeFile(curves, curvesSvg(r.history, r.steps))
  const m = r.metrics ?? metricsOf(r.history)
  let csv: string | undefined
  if (m) {
    csv = path.join(dir, 'per-class-iou.csv')
    await fs.promises.writeFile(csv, perClassCsv(r.classes, m))
  }
  const samples: string[] = []
  if (r.samples?.length) {
    const sdir = path.join(dir, 'samples')
    await fs.promises.rm(sdir, { recursive: true, force: true })
    for (const [i, s] of r.samples.entries()) {
      const { width: w, height: hh } = s.image
      const parts = [s.image]
      if (s.truth) parts.push(colourise(s.truth, w, hh, r.palette))
      parts.push(colourise(s.prediction, w, hh, r.palette))
      const rel = `samples/${i}-${safeName(path.basename(s.name))}.png`
      await writePng(path.join(dir, rel), sideBySide(parts), { minHeight: 160 })
      samples.push(rel)
    }
  }
  const html = path.join(dir, 'report.html')
  await fs.promises.writeFile(html, reportHtml(r, { curvesSvg: curves, samples, perClassCsv: csv && path.basename(csv) }))
  return { html, curves, perClassCsv: csv, samples: samples.map((f) => path.join(dir, f)) }
}
