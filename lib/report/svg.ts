/** Line charts as hand-written SVG (no dependency): axes, nice ticks, one polyline per series, a legend. */

export interface Series {
  name: string
  /** [x, y] points; non-finite y values are left out. */
  points: ReadonlyArray<readonly [number, number]>
  /** CSS colour. Default: one of a fixed set, by position. */
  colour?: string
  /** Thin and light (raw values under a smoothed line). Default false. */
  faint?: boolean
}

export interface Chart {
  title: string
  xLabel: string
  yLabel?: string
  series: readonly Series[]
  /** Only whole-number ticks on the x axis (steps, epochs). Default false. */
  integerX?: boolean
  /** Fixed y range, e.g. [0, 1] for IoU. Default: the data's range. */
  yRange?: readonly [number, number]
}

const COLOURS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b']

/** Escapes text for XML / HTML content and attribute values. */
export function escapeXml (s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;')
}

/** About `count` round tick values (1, 2, 5 x 10^k steps) covering [lo, hi]. */
export function niceTicks (lo: number, hi: number, count = 5): number[] {
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) return []
  if (hi === lo) return [lo]
  const raw = (hi - lo) / Math.max(1, count)
  const mag = Math.pow(10, Math.floor(Math.log10(raw)))
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag
  const out: number[] = []
  for (let t = Math.ceil(lo / step - 1e-9) * step; t <= hi + step * 1e-9; t += step) out.push(Math.abs(t) < step * 1e-9 ? 0 : t)
  return out
}

function fmt (x: number): string {
  if (x === 0) return '0'
  const a = Math.abs(x)
  if (a >= 1e4 || a < 1e-3) return x.toExponential(1)
  return String(Number(x.toPrecision(4)))
}

/** One chart as an SVG fragment (a <g>) of size w x h at (0, 0). */
function chartGroup (c: Chart, w: number, h: number): string {
  const m = { left: 58, right: 14, top: 28, bottom: 42 }
  const pw = w - m.left - m.right
  const ph = h - m.top - m.bottom
  const pts = c.series.map((s) => s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y)))
  const all = pts.flat()
  const parts: string[] = []
  parts.push(`<text x="${w / 2}" y="17" text-anchor="middle" font-size="14" font-weight="bold">${escapeXml(c.title)}</text>`)
  parts.push(`<rect x="${m.left}" y="${m.top}" width="${pw}" height="${ph}" fill="none" stroke="#999"/>`)
  if (all.length === 0) {
    parts.push(`<text x="${m.left + pw / 2}" y="${m.top + ph / 2}" text-anchor="middle" font-size="12" fill="#666">no data</text>`)
    return parts.join('')
  }
  let x0 = Math.min(...all.map((p) => p[0]))
  let x1 = Math.max(...all.map((p) => p[0]))
  let y0 = c.yRange ? c.yRange[0] : Math.min(...all.map((p) => p[1]))
  let y1 = c.yRange ? c.yRange[1] : Math.max(...all.map((p) => p[1]))
  if (x1 === x0) { x0 -= 1; x1 += 1 }
  if (y1 === y0) { const d = Math.abs(y0) * 0.1 || 1; y0 -= d; y1 += d }
  if (!c.yRange) { const pad = (y1 - y0) * 0.05; y0 -= pad; y1 += pad }
  const sx = (x: number): number => m.left + (x - x0) / (x1 - x0) * pw
  const sy = (y: number): number => m.top + ph - (y - y0) / (y1 - y0) * ph
  const r = (n: number): string => n.toFixed(1)
  for (const t of niceTicks(y0, y1)) {
    if (t < y0 || t > y1) continue
    parts.push(`<line x1="${m.left}" x2="${m.left + pw}" y1="${r(sy(t))}" y2="${r(sy(t))}" stroke="#eee"/>`)
    parts.push(`<text x="${m.left - 5}" y="${r(sy(t) + 4)}" text-anchor="end" font-size="11">${fmt(t)}</text>`)
  }
  for (const t of niceTicks(x0, x1)) {
    if (t < x0 || t > x1 || (c.integerX && !Number.isInteger(t))) continue
    parts.push(`<line x1="${r(sx(t))}" x2="${r(sx(t))}" y1="${m.top + ph}" y2="${m.top + ph + 4}" stroke="#999"/>`)
    parts.push(`<text x="${r(sx(t))}" y="${m.top + ph + 16}" text-anchor="middle" font-size="11">${fmt(t)}</text>`)
  }
  parts.push(`<text x="${m.left + pw / 2}" y="${h - 6}" text-anchor="middle" font-size="12">${escapeXml(c.xLabel)}</text>`)
  if (c.yLabel) parts.push(`<text transform="translate(13 ${m.top + ph / 2}) rotate(-90)" text-anchor="middle" font-size="12">${escapeXml(c.yLabel)}</text>`)
  c.series.forEach((s, i) => {
    const p = pts[i]
    if (p.length === 0) return
    const colour = s.colour ?? COLOURS[i % COLOURS.length]
    const width = s.faint ? 1 : 2
    const opacity = s.faint ? 0.35 : 1
    if (p.length === 1) {
      parts.push(`<circle cx="${r(sx(p[0][0]))}" cy="${r(sy(p[0][1]))}" r="3" fill="${colour}" fill-opacity="${opacity}"/>`)
    } else {
      const d = p.map(([x, y]) => `${r(sx(x))},${r(sy(y))}`).join(' ')
      parts.push(`<polyline fill="none" stroke="${colour}" stroke-width="${width}" stroke-opacity="${opacity}" points="${d}"/>`)
      if (p.length <= 30 && !s.faint) for (const [x, y] of p) parts.push(`<circle cx="${r(sx(x))}" cy="${r(sy(y))}" r="2.5" fill="${colour}"/>`)
    }
  })
  // legend, top right inside the plot
  const named = c.series.map((s, i) => ({ s, i })).filter(({ i }) => pts[i].length > 0)
  named.forEach(({ s, i }, k) => {
    const colour = s.colour ?? COLOURS[i % COLOURS.length]
    const y = m.top + 14 + k * 15
    const x = m.left + pw - 8
    parts.push(`<line x1="${x - 18}" x2="${x - 4}" y1="${y - 4}" y2="${y - 4}" stroke="${colour}" stroke-width="2" stroke-opacity="${s.faint ? 0.35 : 1}"/>`)
    parts.push(`<text x="${x - 22}" y="${y}" text-anchor="end" font-size="11">${escapeXml(s.name)}</text>`)
  })
  return parts.join('')
}

/** Charts side by side (`columns` per row) in one standalone SVG document. */
export function chartsSvg (charts: readonly Chart[], options: { width?: number, height?: number, columns?: number } = {}): string {
  const w = options.width ?? 440
  const h = options.height ?? 300
  const cols = Math.max(1, Math.min(options.columns ?? 2, charts.length))
  const rows = Math.max(1, Math.ceil(charts.length / cols))
  const W = w * cols
  const H = h * rows
  const groups = charts.map((c, i) => `<g transform="translate(${(i % cols) * w} ${Math.floor(i / cols) * h})">${chartGroup(c, w, h)}</g>`)
  return `<?xml version="1.0" encoding="UTF-8"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif">` +
    `<rect width="${W}" height="${H}" fill="#fff"/>${groups.join('')}</svg>\n`
}

/** Exponential moving average (the smoothed line over a noisy loss). */
export function smooth (points: ReadonlyArray<readonly [number, number]>, factor = 0.9): Array<[number, number]> {
  let avg = NaN
  return points.map(([x, y], i) => {
    avg = i === 0 || !Number.isFinite(avg) ? y : factor * avg + (1 - factor) * y
    return [x, avg]
  })
}
