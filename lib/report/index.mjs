// ES module entry of segtorch/report: the CommonJS build re-exported by name.
import cjs from './index.js'

export const {
  writeReport, reportHtml, curvesSvg, perClassCsv, chartsSvg, escapeXml, niceTicks, smooth,
  colourise, overlay, sideBySide, toRgb, writePng, writeClassMapPng, IGNORE_COLOUR
} = cjs
export default cjs
