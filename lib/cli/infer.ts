/** `segtorch eval` (metrics of a saved model on a data set) and `segtorch predict` (masks of images). */
import * as fs from 'fs'
import * as path from 'path'
import type { Command } from 'commander'
import type { Colour } from '../data/classes'
import { vocColourMap } from '../data/classes'
import { loader } from '../data/loader'
import { readImage, toPlanar } from '../data/images'
import { checkWritableDir } from '../files'
import { loadModel, Model } from '../model'
import type { PredictOptions } from '../predict'
import { colourise, overlay, writeClassMapPng, writePng } from '../report'
import { tensor } from '../tensor'
import { NAMED, openSpec, parseSpec } from './data'
import { OptionDef, readConfig, resolveOptions, UsageError } from './options'
import { createProgress } from './progress'
import { absoluteSpec } from './train'

const INFERENCE_OPTIONS: readonly OptionDef[] = [
  { flags: '--mode <mode>', kind: 'string', choices: ['whole', 'slide'], default: 'whole', description: 'whole images, or sliding windows' },
  { flags: '--crop <size>', kind: 'size', description: 'sliding-window size N or HxW [default: 512]' },
  { flags: '--stride <size>', kind: 'size', description: 'sliding-window stride N or HxW [default: 2/3 of the crop]' },
  { flags: '--scales <list>', kind: 'numbers', description: 'scales averaged, e.g. 0.75,1,1.25 [default: 1]' },
  { flags: '--flip', kind: 'bool', description: 'also average the horizontally flipped image' },
  { flags: '--precision <p>', kind: 'string', choices: ['fp32', 'bf16'], default: 'fp32', description: 'inference precision' },
  { flags: '--device <d>', kind: 'string', default: 'cpu', description: "'cpu', 'cuda' or 'cuda:N'" }
]

export const EVAL_OPTIONS: readonly OptionDef[] = [
  { flags: '--config <file>', kind: 'string', description: 'JSON file of options; flags given here override it' },
  { flags: '--data <spec>', kind: 'string', description: 'camvid:DIR, voc:DIR, cityscapes:DIR, ade20k:DIR (#SPLIT, default val) or folder:IMAGES,MASKS' },
  { flags: '--classes <names>', kind: 'list', description: "folder data: class names or their number [default: the model's run.json]" },
  { flags: '--ignore-index <n>', kind: 'int', min: 0, max: 255, description: 'folder data: mask value of unlabelled pixels [default: 255]' },
  { flags: '--mask-suffix <s>', kind: 'string', description: 'folder data: masks named <image stem><suffix>.png' },
  { flags: '--json', kind: 'bool', description: 'print the metrics as JSON' },
  ...INFERENCE_OPTIONS
]

export const PREDICT_OPTIONS: readonly OptionDef[] = [
  { flags: '--config <file>', kind: 'string', description: 'JSON file of options; flags given here override it' },
  { flags: '--out <dir>', kind: 'string', default: 'predictions', description: 'output folder (labels/, colour/, overlay/)' },
  { flags: '--palette <name>', kind: 'string', choices: Object.keys(NAMED), description: "colours of a data set's classes [default: the model's run.json, else the VOC colour map]" },
  { flags: '--alpha <x>', kind: 'number', min: 0, max: 1, default: 0.5, description: 'weight of the colour mask in overlays' },
  ...INFERENCE_OPTIONS
]

/** Class names and colours of a model: from the run.json beside it, if any. */
function modelClasses (file: string, numClasses: number): { classes?: string[], palette?: Colour[] } {
  const run = path.join(path.dirname(file), 'run.json')
  try {
    const r = JSON.parse(fs.readFileSync(run, 'utf8')) as { classes?: string[], palette?: Colour[] }
    if (Array.isArray(r.classes) && r.classes.length === numClasses) return { classes: r.classes, palette: r.palette }
  } catch {}
  return {}
}

function inference (o: Record<string, unknown>): PredictOptions & { output?: 'labels' } {
  return {
    mode: o.mode as 'whole',
    ...(o.crop ? { crop: o.crop as [number, number] } : {}),
    ...(o.stride ? { stride: o.stride as [number, number] } : {}),
    ...(o.scales ? { scales: o.scales as number[] } : {}),
    flip: o.flip === true,
    precision: o.precision as 'fp32'
  }
}

export async function openModel (file: string, device: string): Promise<Model> {
  if (!fs.existsSync(file)) throw new UsageError(`Expected a model file but ${file} does not exist`)
  if (fs.statSync(file).isDirectory()) {
    const inside = ['model.segtorch', 'best.segtorch', 'last.segtorch'].map((f) => path.join(file, f)).find((f) => fs.existsSync(f))
    if (!inside) throw new UsageError(`Expected a model file but ${file} is a folder without model.segtorch, best.segtorch or last.segtorch`)
    file = inside
  }
  return loadModel(file, { device: device as 'cpu' })
}

function modelPath (file: string): string {
  if (fs.existsSync(file) && fs.statSync(file).isDirectory()) return path.join(file, 'model.segtorch')
  return file
}

export interface EvalOutput {
  model: string
  data: string
  images: number
  mIoU: number
  pixelAccuracy: number
  meanAccuracy: number
  fwIoU: number
  meanDice: number
  perClass: Array<{ index: number, class: string, iou: number | null, accuracy: number | null }>
}

const fin = (x: number): number | null => (Number.isFinite(x) ? x : null)

export async function runEval (cmd: Command, modelFile: string, o0: Record<string, unknown>, out: (s: string) => void): Promise<EvalOutput> {
  const config = typeof o0.config === 'string' ? readConfig(o0.config) : {}
  const o = resolveOptions(cmd, EVAL_OPTIONS, {}, config, typeof o0.config === 'string' ? o0.config : undefined)
  if (o.data === undefined) throw new UsageError('Expected --data (the images and masks to evaluate on) but received none')
  const spec = parseSpec('--data', o.data as string)
  const infer = inference(o)
  const model = await openModel(modelFile, o.device as string)
  try {
    const known = modelClasses(modelPath(modelFile), model.config.numClasses)
    const classes = (o.classes as string[] | undefined) ?? known.classes
    const ds = openSpec('--data', spec, { split: 'val', channels: model.config.inChannels === 1 ? 1 : 3, classes, ignoreIndex: o.ignoreIndex as number | undefined, maskSuffix: o.maskSuffix as string | undefined })
    if (model.config.inChannels !== 1 && model.config.inChannels !== 3) throw new UsageError(`Expected a model with 1 or 3 input channels but it has ${model.config.inChannels}`)
    if (ds.classes.length !== model.config.numClasses) {
      throw new UsageError(`Expected data with the model's ${model.config.numClasses} classes but ${o.data as string} has ${ds.classes.length}`)
    }
    const names = spec.kind === 'folder' && known.classes && !o.classes ? known.classes : [...ds.classes]
    const progress = createProgress('eval', ds.length, 0, { unit: 'image' })
    let done = 0
    const batches = loader(ds, { batchSize: 1 })
    const counted = {
      length: batches.length,
      async * [Symbol.asyncIterator] () {
        for await (const b of batches) {
          yield b
          progress.update(++done)
        }
      }
    }
    let e
    try {
      e = await model.evaluate(counted, { ...infer, ignoreIndex: ds.ignoreIndex })
    } finally {
      progress.stop()
    }
    e.confusion.dispose()
    const r: EvalOutput = {
      model: path.resolve(modelPath(modelFile)),
      data: absoluteSpec(o.data as string),
      images: e.images,
      mIoU: e.mIoU,
      pixelAccuracy: e.pixelAccuracy,
      meanAccuracy: e.meanAccuracy,
      fwIoU: e.fwIoU,
      meanDice: e.meanDice,
      perClass: names.map((c, k) => ({ index: k, class: c, iou: fin(e.perClassIoU[k]), accuracy: fin(e.perClassAccuracy[k]) }))
    }
    if (o.json) {
      out(JSON.stringify(r, null, 2))
    } else {
      const p = (x: number | null): string => (x === null ? 'n/a' : (100 * x).toFixed(2))
      const w = Math.max(5, ...names.map((n) => n.length))
      out(`${r.images} images of ${r.data}`)
      out(`mIoU ${p(r.mIoU)} %   pixel accuracy ${p(r.pixelAccuracy)} %   mean accuracy ${p(r.meanAccuracy)} %   fwIoU ${p(r.fwIoU)} %`)
      out('')
      out(`${'#'.padStart(3)}  ${'class'.padEnd(w)}  ${'IoU %'.padStart(7)}  ${'acc %'.padStart(7)}`)
      for (const c of r.perClass) out(`${String(c.index).padStart(3)}  ${c.class.padEnd(w)}  ${p(c.iou).padStart(7)}  ${p(c.accuracy).padStart(7)}`)
    }
    return r
  } finally {
    model.dispose()
  }
}

const IMAGE_EXTENSIONS = ['.png', '.jpg', '.jpeg', '.webp', '.tif', '.tiff', '.bmp', '.gif']

/** Image files of the inputs: files as given, folders searched recursively (with their relative paths). */
export function listImages (inputs: readonly string[]): Array<{ file: string, rel: string }> {
  const out: Array<{ file: string, rel: string }> = []
  for (const input of inputs) {
    if (!fs.existsSync(input)) throw new UsageError(`Expected image files or folders but ${input} does not exist`)
    if (!fs.statSync(input).isDirectory()) {
      out.push({ file: input, rel: path.basename(input) })
      continue
    }
    const walk = (d: string, rel: string): void => {
      for (const ent of fs.readdirSync(d, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
        const full = path.join(d, ent.name)
        const r = rel ? `${rel}/${ent.name}` : ent.name
        if (ent.isDirectory()) walk(full, r)
        else if (IMAGE_EXTENSIONS.includes(path.extname(ent.name).toLowerCase())) out.push({ file: full, rel: r })
      }
    }
    walk(input, '')
  }
  if (out.length === 0) throw new UsageError(`Expected images (${IMAGE_EXTENSIONS.join(', ')}) but found none in ${inputs.join(', ')}`)
  return out
}

export async function runPredict (cmd: Command, modelFile: string, inputs: string[], o0: Record<string, unknown>, log: (s: string) => void): Promise<{ out: string, images: number }> {
  const config = typeof o0.config === 'string' ? readConfig(o0.config) : {}
  const o = resolveOptions(cmd, PREDICT_OPTIONS, {}, config, typeof o0.config === 'string' ? o0.config : undefined)
  const images = listImages(inputs)
  const infer = inference(o)
  const model = await openModel(modelFile, o.device as string)
  try {
    const k = model.config.numClasses
    const c = model.config.inChannels
    if (c !== 1 && c !== 3) throw new UsageError(`Expected a model with 1 or 3 input channels but it has ${c}`)
    let palette: readonly Colour[]
    if (o.palette !== undefined) {
      palette = NAMED[o.palette as 'camvid'].palette
      if (palette.length !== k) throw new UsageError(`Expected a palette of the model's ${k} classes but ${o.palette as string} has ${palette.length}`)
    } else {
      palette = modelClasses(modelPath(modelFile), k).palette ?? vocColourMap(k)
    }
    const out = path.resolve(o.out as string)
    checkWritableDir(out, 'the output folder (--out)')
    const progress = createProgress('predict', images.length, 0, { unit: 'image' })
    try {
      for (const [i, { file, rel }] of images.entries()) {
        const img = await readImage(file, c as 1 | 3).catch((err) => { throw new UsageError(`${file}: cannot read the image (${(err as Error).message})`) })
        const x = tensor(toPlanar(img), [1, c, img.height, img.width])
        const p = await model.predict(x, infer)
        const labels = p.dataSync().slice() // a copy: dispose() frees the tensor's memory
        x.dispose()
        p.dispose()
        const stem = rel.replace(/\.[^./]*$/, '')
        const colour = colourise(labels, img.width, img.height, palette)
        await writeClassMapPng(path.join(out, 'labels', `${stem}.png`), labels, img.width, img.height, palette)
        await writePng(path.join(out, 'colour', `${stem}.png`), colour)
        await writePng(path.join(out, 'overlay', `${stem}.png`), overlay(img, colour, o.alpha as number))
        progress.update(i + 1)
      }
    } finally {
      progress.stop()
    }
    log(`wrote ${images.length} class maps to ${path.join(out, 'labels')}, colour masks to ${path.join(out, 'colour')} and overlays to ${path.join(out, 'overlay')}`)
    return { out, images: images.length }
  } finally {
    model.dispose()
  }
}
