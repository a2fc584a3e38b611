/**
 * The main job on the embedded default: train a U-Net (Ronneberger et al. 2015, the network made
 * for these images; 16 channels at the first level) on the ISBI 2012 membrane images shipped in
 * data/membrane, report IoU on held-back labelled images, predict the test images and write their
 * masks as PNGs.
 */
import * as fs from 'fs'
import * as path from 'path'
import { checkWritableDir, makeDirSync } from '../files'
import { autoPrecision, createModel } from '../model'
import type { Batch } from '../fit'
import { tensor } from '../tensor'
import { backend } from '../index'
import { readImage, writeLabelPng } from '../data/images'
import { ReportSample, StepRecord, writeReport } from '../report'

export interface DemoOptions {
  data: string
  out: string
  /** Fixed number of steps, or (when 0) train for `seconds`. */
  steps: number
  /** Seconds of training when steps is 0 (the schedule runs over time). */
  seconds: number
  /** Loss of the training steps. */
  loss: 'ce' | 'dice' | 'lovasz' | 'focal' | 'ohem'
  /** Training precision: 'auto' (bf16 + channels-last where the CPU has native bf16), 'fp32' or 'bf16'. */
  precision: 'auto' | 'fp32' | 'bf16'
  /** Predictions average the image's variants under `flips` (EM images have no up or left). */
  tta: boolean
  /**
   * The flips of training crops and of test-time averaging: 'lr' (the default) left-right flips
   * only, 'd4' all 8 flips / transpositions, 'none'. The shipped labels sit ~0.6 px above their
   * images: a network can learn that offset only from crops that keep their up and down (README).
   */
  flips?: Flips
  batch: number
  crop: number
  /**
   * Elastic deformation of the training crops (U-Net paper, section 3.1): random displacements on a
   * coarse 3x3 grid, Gaussian with this standard deviation in pixels, interpolated smoothly; 0 = off.
   */
  elastic?: number
  holdout: number
  /** More U-Net options (batchNorm, dropout, upsampling). */
  modelOptions: Record<string, unknown>
  /** Channels of the U-Net's first level (doubled at each of its four levels). */
  baseChannels: number
  lr: number
  seed: number
  log: (line: string) => void
}

export type Flips = 'd4' | 'lr' | 'none'

/** Variants k of an n x n image under `flips`: bit 0 flips rows, bit 1 flips columns, bit 2 transposes. */
export function flipVariants (flips: Flips): number[] {
  return flips === 'd4' ? [0, 1, 2, 3, 4, 5, 6, 7] : flips === 'lr' ? [0, 2] : [0]
}

export interface Sample { image: Uint8Array, label: Uint8Array, size: number }

export function rng (seed: number): () => number {
  let s = seed >>> 0
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0
    return s / 4294967296
  }
}

async function loadLabelled (dir: string): Promise<Sample[]> {
  const names = fs.readdirSync(path.join(dir, 'image')).filter((f) => f.endsWith('.png'))
    .sort((a, b) => parseInt(a) - parseInt(b))
  const out: Sample[] = []
  for (const name of names) {
    const img = await readImage(path.join(dir, 'image', name), 1)
    const lab = await readImage(path.join(dir, 'label', name), 1)
    if (img.width !== img.height || lab.width !== img.width || lab.height !== img.height) {
      throw new Error(`${name}: image and label sizes differ or are not square`)
    }
    // 0 = membrane (class 0), 255 = cell interior (class 1)
    const label = lab.data.map((v) => (v > 127 ? 1 : 0))
    out.push({ image: img.data, label, size: img.width })
  }
  return out
}

/** Catmull-Rom weights of the four control points around position t in [0, 1] between the middle two. */
function cubicWeights (t: number): [number, number, number, number] {
  const t2 = t * t
  const t3 = t2 * t
  return [(-t3 + 2 * t2 - t) / 2, (3 * t3 - 5 * t2 + 2) / 2, (-3 * t3 + 4 * t2 + t) / 2, (t3 - t2) / 2]
}

/**
 * A dense displacement field (n x n) from a 3x3 grid of Gaussian displacements (sigma pixels) spread
 * over the crop, interpolated with Catmull-Rom splines (the U-Net paper's "bicubic interpolation").
 */
function displacement (n: number, sigma: number, r: () => number): Float32Array {
  const gauss = (): number => {
    const u = Math.max(r(), 1e-12)
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * r()) * sigma
  }
  const g = Array.from({ length: 9 }, gauss)
  const at = (i: number, j: number): number => g[Math.min(2, Math.max(0, i)) * 3 + Math.min(2, Math.max(0, j))]
  // Catmull-Rom weights per output row / column: position along the grid in [0, 2].
  const pos = (k: number): { i: number, w: [number, number, number, number] } => {
    const p = n > 1 ? (2 * k) / (n - 1) : 0
    const i = Math.min(1, Math.floor(p))
    return { i, w: cubicWeights(p - i) }
  }
  const rows = Array.from({ length: n }, (_, k) => pos(k))
  const f = new Float32Array(n * n)
  for (let a = 0; a < n; a++) {
    const ra = rows[a]
    for (let c = 0; c < n; c++) {
      const rc = rows[c]
      let v = 0
      for (let p = 0; p < 4; p++) {
        for (let q = 0; q < 4; q++) v += ra.w[p] * rc.w[q] * at(ra.i - 1 + p, rc.i - 1 + q)
      }
      f[a * n + c] = v
    }
  }
  return f
}

/** index reflected into [0, n) (mirror without repeating the edge, as the U-Net paper's tiles). */
function reflect (i: number, n: number): number {
  if (n === 1) return 0
  const period = 2 * (n - 1)
  i = Math.abs(i) % period
  return i < n ? i : period - i
}

/**
 * A random crop with random flips and transposition (the dihedral group: EM images have no up or
 * left; `flips` narrows it) of a few samples, as a batch; with elastic > 0, each crop is also deformed elastically
 * (images bilinearly, labels by their nearest pixel; mirrored beyond the image's border).
 * @internal (exported for tests)
 */
export function randomCrops (samples: Sample[], n: number, crop: number, r: () => number, elastic = 0, flips: Flips = 'd4'): { x: Uint8Array, y: Uint8Array } {
  const x = new Uint8Array(n * crop * crop)
  const y = new Uint8Array(n * crop * crop)
  for (let b = 0; b < n; b++) {
    const s = samples[Math.floor(r() * samples.length)]
    const oy = Math.floor(r() * (s.size - crop + 1))
    const ox = Math.floor(r() * (s.size - crop + 1))
    // three draws whatever `flips` allows, so that the crops' positions do not depend on it
    const fx = r() < 0.5 && flips !== 'none'
    const fy = r() < 0.5 && flips === 'd4'
    const tr = r() < 0.5 && flips === 'd4'
    const dy = elastic > 0 ? displacement(crop, elastic, r) : undefined
    const dx = elastic > 0 ? displacement(crop, elastic, r) : undefined
    for (let i = 0; i < crop; i++) {
      for (let j = 0; j < crop; j++) {
        let a = fy ? crop - 1 - i : i
        let c = fx ? crop - 1 - j : j
        if (tr) [a, c] = [c, a]
        const o = b * crop * crop + i * crop + j
        if (dy === undefined || dx === undefined) {
          const si = (oy + a) * s.size + ox + c
          x[o] = s.image[si]
          y[o] = s.label[si]
          continue
        }
        const sy = oy + a + dy[a * crop + c]
        const sx = ox + c + dx[a * crop + c]
        const y0 = Math.floor(sy)
        const x0 = Math.floor(sx)
        const ty = sy - y0
        const tx = sx - x0
        const r0 = reflect(y0, s.size) * s.size
        const r1 = reflect(y0 + 1, s.size) * s.size
        const c0 = reflect(x0, s.size)
        const c1 = reflect(x0 + 1, s.size)
        const v = (1 - ty) * ((1 - tx) * s.image[r0 + c0] + tx * s.image[r0 + c1]) + ty * ((1 - tx) * s.image[r1 + c0] + tx * s.image[r1 + c1])
        x[o] = Math.round(v)
        y[o] = s.label[(ty < 0.5 ? r0 : r1) + (tx < 0.5 ? c0 : c1)]
      }
    }
  }
  return { x, y }
}

export async function runDemo (o: DemoOptions): Promise<{ iou: number, membraneIoU: number, pixelAccuracy: number, seconds: number }> {
  const log = o.log
  const flips = o.flips ?? 'lr'
  checkWritableDir(o.out, 'the output folder (--out)') // before minutes of training
  const t0 = Date.now()
  const b = backend()
  log(`segtorch demo: libtorch ${b.libtorch}, ${b.threads} threads, data ${o.data}`)
  const all = await loadLabelled(path.join(o.data, 'train'))
  if (all.length <= o.holdout) throw new RangeError(`Expected more than ${o.holdout} labelled images but found ${all.length}`)
  const train = all.slice(0, all.length - o.holdout)
  const held = all.slice(all.length - o.holdout)
  log(`${train.length} training images, ${held.length} held back for evaluation`)

  const model = await createModel({ arch: 'unet', ...o.modelOptions, baseChannels: o.baseChannels, numClasses: 2, inChannels: 1 })
  log(`model: U-Net (${o.baseChannels} channels at the first level), ${(model.info().parameters / 1e6).toFixed(2)} M parameters`)
  const r = rng(o.seed)
  // bf16 autocast and channels-last where the CPU trains faster in bf16 (autoPrecision: AMX, AMD's AVX512-BF16), else fp32.
  const fast = o.precision === 'fp32' ? { precision: 'fp32' as const } : (o.precision === 'bf16' || (!b.cuda && autoPrecision('cpu', 'train', model.config) === 'bf16')) ? { precision: 'bf16' as const, channelsLast: true } : {}
  if (fast.precision === 'bf16') log(`training with bf16 autocast and channels-last${o.precision === 'auto' ? ' (faster than fp32 on this CPU)' : ''}`)
  let avg = 0
  const steps: StepRecord[] = []
  // fit() over an endless stream of random crops: a fixed number of steps, or a time budget with the
  // poly schedule over the clock (fit's timeLimit: lr0 (1 - elapsed / budget)^0.9).
  const tTrain = Date.now()
  let lastLog = Date.now()
  const crops = function * (): Generator<Batch> {
    for (;;) {
      const { x, y } = randomCrops(train, o.batch, o.crop, r, o.elastic ?? 0, flips)
      yield { images: tensor(x, [o.batch, 1, o.crop, o.crop]), masks: tensor(y, [o.batch, o.crop, o.crop]) }
    }
  }
  await model.fit(crops, {
    ...(o.steps > 0 ? { iterations: o.steps } : { timeLimit: o.seconds }),
    optimizer: { type: 'adam', lr: o.lr },
    schedule: { type: 'poly' },
    loss: o.loss,
    ...fast,
    onStep: (st) => {
      avg = st.step === 1 ? st.loss : 0.9 * avg + 0.1 * st.loss
      steps.push({ step: st.step, epoch: 1, loss: st.loss, lr: st.lr })
      if (st.step % 25 === 0 || st.step === o.steps || Date.now() - lastLog > 20000) {
        lastLog = Date.now()
        log(`step ${st.step}${o.steps > 0 ? `/${o.steps}` : ''}  loss ${avg.toFixed(4)}  lr ${st.lr.toFixed(5)}  ${((Date.now() - t0) / 1000).toFixed(0)} s`)
      }
    }
  })
  const trained = steps.length
  log(`trained ${trained} steps in ${((Date.now() - tTrain) / 1000).toFixed(0)} s`)

  // Labels of a whole image; with tta, the class probabilities of its variants under `flips` averaged.
  const variants = flipVariants(flips)
  const predictLabels = async (image: Uint8Array, h: number, w: number): Promise<Uint8Array> => {
    if (!o.tta || variants.length === 1 || (h !== w && flips === 'd4')) {
      const p = await model.predict(tensor(image, [1, 1, h, w]))
      const out = Uint8Array.from(p.dataSync())
      p.dispose()
      return out
    }
    const n = h * w
    const at = (k: number, i: number, j: number): number => { // source pixel of pixel (i, j) of variant k (square when k transposes)
      let a = k & 1 ? h - 1 - i : i
      let c = k & 2 ? w - 1 - j : j
      if (k & 4) [a, c] = [c, a]
      return a * w + c
    }
    const V = variants.length
    const x = new Uint8Array(V * n)
    for (const [v, k] of variants.entries()) for (let i = 0; i < h; i++) for (let j = 0; j < w; j++) x[v * n + i * w + j] = image[at(k, i, j)]
    const p = await model.predict(tensor(x, [V, 1, h, w]), { output: 'probs' })
    const probs = p.dataSync() as Float32Array
    const K = p.shape[1]
    const sum = new Float32Array(K * n)
    for (const [v, k] of variants.entries()) {
      for (let c = 0; c < K; c++) {
        const base = (v * K + c) * n
        for (let i = 0; i < h; i++) for (let j = 0; j < w; j++) sum[c * n + at(k, i, j)] += probs[base + i * w + j]
      }
    }
    p.dispose()
    const out = new Uint8Array(n)
    for (let q = 0; q < n; q++) {
      let best = 0
      for (let c = 1; c < K; c++) if (sum[c * n + q] > sum[best * n + q]) best = c
      out[q] = best
    }
    return out
  }

  // Evaluate on the held-back images at full size.
  let inter1 = 0; let union1 = 0; let inter0 = 0; let union0 = 0; let correct = 0; let total = 0
  const samples: ReportSample[] = []
  for (const [k, s] of held.entries()) {
    const pred = await predictLabels(s.image, s.size, s.size)
    samples.push({ name: `held-out-${k + 1}`, image: { data: s.image, width: s.size, height: s.size, channels: 1 }, truth: s.label, prediction: pred })
    for (let i = 0; i < pred.length; i++) {
      const p = pred[i]; const t = s.label[i]
      if (p === 1 && t === 1) inter1++
      if (p === 1 || t === 1) union1++
      if (p === 0 && t === 0) inter0++
      if (p === 0 || t === 0) union0++
      if (p === t) correct++
      total++
    }
  }
  const iou = inter1 / Math.max(1, union1)
  const membraneIoU = inter0 / Math.max(1, union0)
  log(`held-out images: cell-interior IoU ${iou.toFixed(4)}, membrane IoU ${membraneIoU.toFixed(4)}, pixel accuracy ${(correct / total).toFixed(4)}`)

  // Predict the unlabelled test images and write their masks (255 = interior, 0 = membrane).
  makeDirSync(o.out, 'the output folder (--out)')
  await model.save(path.join(o.out, 'model.segtorch'))
  const testDir = path.join(o.data, 'test')
  const tests = fs.readdirSync(testDir).filter((f) => f.endsWith('.png')).sort((a, b) => parseInt(a) - parseInt(b))
  for (const name of tests) {
    const img = await readImage(path.join(testDir, name), 1)
    const pred = await predictLabels(img.data, img.height, img.width)
    await writeLabelPng(path.join(o.out, 'masks', name), pred, img.width, img.height, 255)
  }
  model.dispose()
  const seconds = (Date.now() - t0) / 1000
  const report = await writeReport(o.out, {
    title: 'segtorch demo: U-Net on the ISBI 2012 membrane images',
    steps,
    classes: ['membrane', 'cell interior'],
    palette: [[200, 30, 30], [235, 235, 235]],
    metrics: { mIoU: (iou + membraneIoU) / 2, pixelAccuracy: correct / total, perClassIoU: [membraneIoU, iou], images: held.length },
    metricsOn: `${held.length} held-out labelled images (512x512, not used for training)`,
    samples,
    summary: { model: `U-Net, ${o.baseChannels} channels at the first level`, steps: trained, batch: o.batch, crop: o.crop, 'elastic deformation (px)': o.elastic ?? 0, loss: o.loss, flips, 'flip averaging': o.tta && variants.length > 1 ? `${variants.length} variants` : 'no', 'training images': train.length, seconds: Math.round(seconds) },
    config: { steps: o.steps, seconds: o.seconds, loss: o.loss, tta: o.tta, flips, batch: o.batch, crop: o.crop, elastic: o.elastic ?? 0, baseChannels: o.baseChannels, lr: o.lr, seed: o.seed }
  })
  log(`report: ${report.html}`)
  const result = { iou, membraneIoU, pixelAccuracy: correct / total, seconds }
  fs.writeFileSync(path.join(o.out, 'result.json'), JSON.stringify({ ...result, steps: trained, trainSeconds: o.steps > 0 ? undefined : o.seconds, loss: o.loss, tta: o.tta, flips, batch: o.batch, crop: o.crop, elastic: o.elastic ?? 0 }, null, 2))
  log(`wrote ${tests.length} masks to ${path.join(o.out, 'masks')} and the model to ${path.join(o.out, 'model.segtorch')} (${seconds.toFixed(0)} s)`)
  return result
}
