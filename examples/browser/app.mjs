// Runs a segtorch ONNX export in the page with onnxruntime-web (served locally from /vendor/ by
// serve.js: nothing is fetched from the network). The model's sidecar, model.json (written next to
// the .onnx by exportOnnx), says how to feed it: input and output names, channels, the colour
// scaling the graph expects, classes and palette.
import * as ort from '/vendor/ort.min.mjs'

ort.env.wasm.wasmPaths = '/vendor/'
// Threads need cross-origin isolation (serve.js sends COOP/COEP); fall back to one without it.
ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1

const status = document.getElementById('status')
const view = document.getElementById('view')
const alpha = document.getElementById('alpha')
const say = (text, error = false) => { status.textContent = text; status.className = error ? 'error' : '' }

const DEFAULT_PALETTE = [[0, 0, 0], [220, 20, 60], [0, 130, 200], [60, 180, 75], [255, 225, 25], [145, 30, 180], [70, 240, 240],
  [245, 130, 48], [240, 50, 230], [210, 245, 60], [250, 190, 190], [0, 128, 128], [230, 190, 255], [170, 110, 40], [128, 0, 0]]

let session
let meta
let last // { image: ImageData, labels: Int32Array }

/** [1, C, H, W] float32 from RGBA pixels, as the export expects (meta.input: channels, scale, and mean / std when given). */
export function toInput (rgba, width, height) {
  const c = meta.input.channels
  const plane = width * height
  const x = new Float32Array(c * plane)
  const { scale, mean, std } = meta.input
  const norm = (v, j) => mean ? (v * scale - mean[j]) / std[j] : v * scale
  for (let i = 0; i < plane; i++) {
    const r = rgba[4 * i]; const g = rgba[4 * i + 1]; const b = rgba[4 * i + 2]
    if (c === 1) {
      // Greyscale models get the image's luma (PNG greyscale images arrive with r = g = b).
      x[i] = norm(Math.round(0.299 * r + 0.587 * g + 0.114 * b), 0)
    } else {
      x[i] = norm(r, 0)
      x[plane + i] = norm(g, 1)
      x[2 * plane + i] = norm(b, 2)
    }
  }
  return new ort.Tensor('float32', x, [1, c, height, width])
}

/** Class map (Int32Array, H x W) of RGBA pixels. */
export async function segment (rgba, width, height) {
  const out = await session.run({ [meta.input.name]: toInput(rgba, width, height) })
  const y = out[meta.output.name]
  if (meta.output.kind === 'labels') return Int32Array.from(y.data, Number)
  const [, k, h, w] = y.dims
  const labels = new Int32Array(h * w)
  const d = y.data
  for (let p = 0; p < h * w; p++) {
    let best = 0
    for (let j = 1; j < k; j++) if (d[j * h * w + p] > d[best * h * w + p]) best = j
    labels[p] = best
  }
  return labels
}

function draw () {
  if (!last) return
  const { image, labels } = last
  view.width = image.width
  view.height = image.height
  const out = new ImageData(image.width, image.height)
  const a = Number(alpha.value)
  const palette = meta.palette || DEFAULT_PALETTE
  for (let p = 0; p < labels.length; p++) {
    const col = palette[labels[p] % palette.length]
    for (let ch = 0; ch < 3; ch++) out.data[4 * p + ch] = Math.round((1 - a) * image.data[4 * p + ch] + a * col[ch])
    out.data[4 * p + 3] = 255
  }
  view.getContext('2d').putImageData(out, 0, 0)
}

async function run (bitmap, name) {
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height)
  const ctx = canvas.getContext('2d')
  ctx.drawImage(bitmap, 0, 0)
  const image = ctx.getImageData(0, 0, bitmap.width, bitmap.height)
  say(`segmenting ${name} (${image.width}x${image.height}) ...`)
  const t0 = performance.now()
  const labels = await segment(image.data, image.width, image.height)
  const ms = performance.now() - t0
  last = { image, labels }
  draw()
  const counts = new Map()
  for (const l of labels) counts.set(l, (counts.get(l) || 0) + 1)
  const names = meta.classes || []
  say(`${name}: ${image.width}x${image.height} in ${ms.toFixed(0)} ms; ` +
    [...counts.entries()].sort((p, q) => q[1] - p[1]).map(([l, n]) => `${names[l] ?? `class ${l}`} ${(100 * n / labels.length).toFixed(1)}%`).join(', '))
  // For tests and scripts: the last result.
  window.segtorchResult = { name, width: image.width, height: image.height, labels: Array.from(labels), ms }
  document.body.dataset.done = 'true'
}

async function main () {
  const params = new URLSearchParams(location.search)
  const base = params.get('model') || '/model/model'
  meta = await (await fetch(`${base}.json`)).json()
  session = await ort.InferenceSession.create(`${base}.onnx`, { executionProviders: ['wasm'], graphOptimizationLevel: 'all' })
  say(`model loaded: ${meta.arch ?? 'segtorch model'}, ${meta.numClasses} classes, input ${meta.input.channels} channel(s). Pick an image.`)
  document.body.dataset.ready = 'true'
  document.getElementById('file').addEventListener('change', async (e) => {
    const f = e.target.files[0]
    if (f) await run(await createImageBitmap(f), f.name)
  })
  alpha.addEventListener('input', draw)
  const image = params.get('image') // ?image=URL: segment it at once (tests, demos)
  if (image) await run(await createImageBitmap(await (await fetch(image)).blob(), { colorSpaceConversion: 'none', premultiplyAlpha: 'none' }), image)
}

main().catch((err) => { say(`error: ${err.message}`, true); console.error(err); document.body.dataset.error = String(err.message) })
