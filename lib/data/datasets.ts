/**
 * Data sets: random-access collections of decoded samples (images + masks), each with its class
 * names and colour palette. Files are decoded with sharp (libvips, on its own threads) and label
 * images through their palette indices, never their colours.
 */
import * as fs from 'fs'
import * as path from 'path'
import { SegtorchError, typeError } from '../errors'
import * as v from '../validate'
import {
  ADE20K_CLASSES, ADE20K_PALETTE, CAMVID_CLASSES, CAMVID_PALETTE, CITYSCAPES_CLASSES, CITYSCAPES_PALETTE, CITYSCAPES_TRAIN_IDS,
  Colour, VOC_CLASSES, VOC_PALETTE, vocColourMap
} from './classes'
import { decodeDepth, decodeImage, decodeMask } from './images'
import { resolveLimitInputPixels } from './png'
import { checkRegularFile } from '../files'

/**
 * One decoded sample. Pixels are interleaved (height x width x channels, as decoders produce
 * them); the loader turns batches of samples into planar [N, C, H, W] tensors.
 */
export interface Sample {
  /** uint8 pixels, height x width x channels. */
  image: Uint8Array
  /** Class index per pixel (height x width), already mapped to training ids; `ignoreIndex` where unlabelled. Absent for unlabelled data. */
  mask?: Uint8Array
  /** Depth per pixel (height x width), in the data set's unit; 0 = no measurement. */
  depth?: Float32Array
  width: number
  height: number
  channels: number
  /** The image file (or the name given to an in-memory sample): for reports and error messages. */
  file: string
}

interface DatasetInfo {
  /** Class names; a model for this data has `classes.length` classes. */
  readonly classes: readonly string[]
  /** One RGB colour per class, to draw masks. */
  readonly palette: readonly Colour[]
  /** The mask value of unlabelled pixels (excluded from losses and metrics). */
  readonly ignoreIndex: number
}

/** A random-access data set: what `folder`, `camvid`, `voc`, `cityscapes` and `ade20k` return. */
export interface Dataset extends DatasetInfo {
  readonly length: number
  /** Decodes sample `index`. Rejects with a DataError (file and reason) for bad data. */
  get (index: number): Promise<Sample>
  /** The image file of sample `index`, without decoding (file-based data sets). */
  file? (index: number): string
}

/**
 * A sequential data set (a stream, an object store, a database): what `fromAsyncIterable`
 * returns. The loader pulls raw items one at a time and decodes several at once.
 */
export interface StreamDataset extends DatasetInfo, AsyncIterable<Sample> {
  /** Samples per pass when known (lets the loader give its number of batches). */
  readonly length: number | undefined
  /** A fresh pass over the raw items. */
  items (): AsyncIterator<unknown>
  /** Decodes one raw item; `index` is its position in the pass (names unnamed items). */
  decode (item: unknown, index: number): Promise<Sample>
}

export type AnyDataset = Dataset | StreamDataset

/** A sample that could not be read: the file and why. */
export class DataError extends SegtorchError {
  readonly file: string
  readonly reason: string
  constructor (file: string, reason: string, cause?: unknown) {
    super(`${file}: ${reason}`, 'ERR_SEGTORCH_DATA')
    this.name = 'DataError'
    this.file = file
    this.reason = reason
    // The underlying error (a PngError, a LimitError, a FileError, ...) when there is one.
    if (cause !== undefined) Object.defineProperty(this, 'cause', { value: cause, configurable: true, writable: true })
  }
}

// ---------------------------------------------------------------------------------------------
// Labels: raw mask value -> class index, ignoreIndex, or invalid (-1), as a 256-entry table.

type LabelTable = Int16Array

function labelTable (numClasses: number, ignoreIndex: number, map?: Readonly<Record<number, number>> | readonly number[]): LabelTable {
  const t = new Int16Array(256).fill(-1)
  for (let i = 0; i < Math.min(256, numClasses); i++) t[i] = i
  if (ignoreIndex >= 0 && ignoreIndex < 256) t[ignoreIndex] = ignoreIndex
  if (map !== undefined) {
    for (const [k, val] of Object.entries(map)) {
      const raw = v.integer(`labelMap key ${k}`, Number(k), 0, 255)
      if (val !== ignoreIndex) v.integer(`labelMap[${k}]`, val, 0, numClasses - 1)
      t[raw] = val
    }
  }
  return t
}

function applyLabels (raw: Uint8Array | Uint16Array, table: LabelTable, width: number, numClasses: number, ignoreIndex: number): Uint8Array {
  const out = new Uint8Array(raw.length)
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i] < table.length ? table[raw[i]] : -1 // a value past the table (> 255) is no label either
    if (c < 0) {
      throw new Error(`mask value ${raw[i]} at pixel (${i % width}, ${Math.floor(i / width)}) is not a label of this data set ` +
        `(classes 0..${numClasses - 1}, ignore ${ignoreIndex}${table.some((x, k) => x >= 0 && x !== k) ? ', after its label map' : ''})`)
    }
    out[i] = c
  }
  return out
}

function reason (err: unknown): string {
  const e = err as NodeJS.ErrnoException
  if (e?.code === 'ENOENT') return `file not found (${e.path ?? ''})`.replace(' ()', '')
  if (e?.code === 'EACCES' || e?.code === 'EPERM') return 'permission denied'
  if (e?.code === 'EISDIR') return 'is a directory, not a file'
  const m = e instanceof Error ? e.message : String(err)
  return m.split('\n')[0] || 'unreadable'
}

// ---------------------------------------------------------------------------------------------
// Files on disk.

interface Entry {
  image: string
  mask?: string
  depth?: string
  /** Why the mask is absent (a missing mask is a per-sample error, so that the loader can skip it). */
  missing?: string
}

export interface DecodeOptions {
  /** Decode images to 1 (grey) or 3 (RGB) channels. Default 3. */
  channels?: 1 | 3
  /** Multiplies decoded depth values (e.g. 0.001 for millimetres in 16-bit PNGs -> metres). Default 1. */
  depthScale?: number
  /**
   * Largest image (and mask, depth map) in pixels, width x height, checked from each file's header
   * before decoding: true or undefined: 268402689 (0x3FFF x 0x3FFF, sharp's default), a positive
   * integer: that many, false or 0: no limit. A larger file is a DataError whose cause is a LimitError.
   */
  limitInputPixels?: number | boolean
}

class FileDataset implements Dataset {
  readonly classes: readonly string[]
  readonly palette: readonly Colour[]
  readonly ignoreIndex: number
  readonly name: string
  readonly #entries: Entry[]
  readonly #table: LabelTable
  readonly #channels: 1 | 3
  readonly #depthScale: number
  readonly #limit: number | false
  readonly #colours?: Map<number, number>
  readonly #labelled: boolean

  constructor (name: string, entries: Entry[], o: { classes: readonly string[], palette: readonly Colour[], ignoreIndex: number, table: LabelTable, channels: 1 | 3, depthScale: number, limitInputPixels: number, colours?: Map<number, number>, labelled: boolean }) {
    this.name = name
    this.#entries = entries
    this.classes = Object.freeze([...o.classes])
    this.palette = Object.freeze(o.palette.map((c) => Object.freeze([c[0], c[1], c[2]] as const)))
    this.ignoreIndex = o.ignoreIndex
    this.#table = o.table
    this.#channels = o.channels
    this.#depthScale = o.depthScale
    this.#limit = o.limitInputPixels === Infinity ? false : o.limitInputPixels
    this.#colours = o.colours
    this.#labelled = o.labelled
  }

  get length (): number {
    return this.#entries.length
  }

  /** The image file of sample `index` (no decoding). */
  file (index: number): string {
    return this.#entries[v.integer('index', index, 0, this.#entries.length - 1)].image
  }

  async get (index: number): Promise<Sample> {
    const e = this.#entries[v.integer('index', index, 0, this.#entries.length - 1)]
    if (this.#labelled && e.mask === undefined) throw new DataError(e.image, e.missing ?? 'no mask')
    let where = e.image
    const read = async (file: string): Promise<Buffer> => {
      try {
        await checkRegularFile(file, 'an image file') // a FIFO would block a libuv thread for good
        return await fs.promises.readFile(file)
      } catch (err) {
        where = file
        throw err
      }
    }
    try {
      const [imageBytes, maskBytes, depthBytes] = await Promise.all([read(e.image), e.mask ? read(e.mask) : undefined, e.depth ? read(e.depth) : undefined])
      const [image, mask, depth] = await Promise.all([
        decodeImage(imageBytes, this.#channels, { limitInputPixels: this.#limit }).catch((err) => { where = e.image; throw err }),
        maskBytes && decodeMask(maskBytes, { colours: this.#colours, limitInputPixels: this.#limit }).catch((err) => { where = e.mask as string; throw err }),
        depthBytes && decodeDepth(depthBytes, this.#depthScale, { limitInputPixels: this.#limit }).catch((err) => { where = e.depth as string; throw err })
      ])
      const sample: Sample = { image: image.data, width: image.width, height: image.height, channels: image.channels, file: e.image }
      if (mask) {
        where = e.mask as string
        if (mask.width !== image.width || mask.height !== image.height) {
          throw new Error(`mask is ${mask.width}x${mask.height} but its image ${path.basename(e.image)} is ${image.width}x${image.height}`)
        }
        sample.mask = applyLabels(mask.data, this.#table, mask.width, this.classes.length, this.ignoreIndex)
      }
      if (depth) {
        where = e.depth as string
        if (depth.width !== image.width || depth.height !== image.height) {
          throw new Error(`depth map is ${depth.width}x${depth.height} but its image ${path.basename(e.image)} is ${image.width}x${image.height}`)
        }
        sample.depth = depth.data
      }
      return sample
    } catch (err) {
      throw new DataError(where, reason(err), err)
    }
  }
}

const IMAGE_EXTENSIONS = ['.png', '.jpg', '.jpeg', '.webp', '.tif', '.tiff', '.bmp', '.gif']

function checkDir (name: string, dir: string): string {
  let st: fs.Stats
  try {
    st = fs.statSync(dir)
  } catch {
    throw new SegtorchError(`${name}: folder ${dir} does not exist`, 'ERR_SEGTORCH_DATA')
  }
  if (!st.isDirectory()) throw new SegtorchError(`${name}: ${dir} is not a folder`, 'ERR_SEGTORCH_DATA')
  return dir
}

/** Files under `dir` (recursively) by relative stem (path without extension, '/'-separated). */
function filesByStem (dir: string, extensions: readonly string[], suffix = ''): Map<string, string> {
  const out = new Map<string, string>()
  const walk = (d: string, rel: string): void => {
    for (const ent of fs.readdirSync(d, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
      const full = path.join(d, ent.name)
      if (ent.isDirectory()) {
        walk(full, rel ? `${rel}/${ent.name}` : ent.name)
        continue
      }
      const ext = path.extname(ent.name)
      if (!extensions.includes(ext.toLowerCase())) continue
      let stem = ent.name.slice(0, ent.name.length - ext.length)
      if (suffix) {
        if (!stem.endsWith(suffix)) continue
        stem = stem.slice(0, stem.length - suffix.length)
      }
      const key = rel ? `${rel}/${stem}` : stem
      const prev = out.get(key)
      if (prev !== undefined) throw new SegtorchError(`${prev} and ${full} have the same stem '${key}': keep one`, 'ERR_SEGTORCH_DATA')
      out.set(key, full)
    }
  }
  walk(dir, '')
  return out
}

function decodeOptions (o: Record<string, unknown>): { channels: 1 | 3, depthScale: number, limitInputPixels: number } {
  return {
    channels: o.channels === undefined ? 3 : v.oneOf('channels', o.channels, [1, 3] as const),
    depthScale: o.depthScale === undefined ? 1 : v.number('depthScale', o.depthScale, 0, Infinity, true),
    limitInputPixels: resolveLimitInputPixels(o.limitInputPixels)
  }
}

function classList (value: unknown): string[] {
  if (typeof value === 'number') return Array.from({ length: v.integer('classes', value, 1, 255) }, (_, i) => `class ${i}`)
  if (!Array.isArray(value) || value.length < 1 || value.length > 255 || value.some((x) => typeof x !== 'string')) {
    throw typeError('classes', 'an array of 1 to 255 class names or a class count', value)
  }
  return value as string[]
}

function paletteList (value: unknown, n: number): Colour[] {
  if (value === undefined) return vocColourMap(n)
  if (!Array.isArray(value) || value.length !== n || value.some((c) => !Array.isArray(c) || c.length !== 3 || c.some((x) => !Number.isInteger(x) || x < 0 || x > 255))) {
    throw typeError('palette', `${n} colours [r, g, b] (0..255), one per class`, value)
  }
  return value as Colour[]
}

export interface FolderOptions extends DecodeOptions {
  /** Folder of images (searched recursively). */
  images: string
  /** Folder of masks, matched to images by relative path without extension. Omit for unlabelled data. */
  masks?: string
  /** Folder of depth images (8- or 16-bit grey), matched the same way. */
  depth?: string
  /** Class names, or their number. */
  classes: readonly string[] | number
  /** One [r, g, b] per class. Default: the PASCAL VOC colour map. */
  palette?: ReadonlyArray<readonly [number, number, number]>
  /** Mask value of unlabelled pixels. Default 255. */
  ignoreIndex?: number
  /** Raw mask value -> class index (or ignoreIndex), for values that are not already class indices. */
  labelMap?: Readonly<Record<number, number>>
  /** Masks named `<stem><maskSuffix>.<ext>` (e.g. '_mask'). Default ''. */
  maskSuffix?: string
  /** Depth maps named `<stem><depthSuffix>.<ext>`. Default ''. */
  depthSuffix?: string
  /** RGB-coded masks: map each palette colour to its class (other colours are errors). Default false. */
  rgbMasks?: boolean
}

const FOLDER_KEYS = ['images', 'masks', 'depth', 'classes', 'palette', 'ignoreIndex', 'labelMap', 'maskSuffix', 'depthSuffix', 'rgbMasks', 'channels', 'depthScale', 'limitInputPixels']

/**
 * Images and masks in two folders, paired by file stem (`images/a/x.jpg` with `masks/a/x.png`).
 * An image without a mask stays in the data set: reading it is an error the loader can skip.
 */
export function folder (options: FolderOptions): Dataset {
  const o = v.optionsObject('folder options', options)
  v.checkKeys('folder options', o, FOLDER_KEYS)
  const images = checkDir('folder images', v.string('images', o.images))
  const masks = o.masks === undefined ? undefined : checkDir('folder masks', v.string('masks', o.masks))
  const depth = o.depth === undefined ? undefined : checkDir('folder depth', v.string('depth', o.depth))
  const classes = classList(o.classes)
  const palette = paletteList(o.palette, classes.length)
  const ignoreIndex = o.ignoreIndex === undefined ? 255 : v.integer('ignoreIndex', o.ignoreIndex, 0, 255)
  if (ignoreIndex < classes.length) throw new RangeError(`Expected an ignoreIndex outside the classes 0..${classes.length - 1} but received ${ignoreIndex}`)
  if (o.labelMap !== undefined && !v.isPlainObject(o.labelMap)) throw typeError('labelMap', 'an object { rawValue: classIndex }', o.labelMap)
  const table = labelTable(classes.length, ignoreIndex, o.labelMap as Record<number, number> | undefined)
  const maskSuffix = o.maskSuffix === undefined ? '' : String(o.maskSuffix)
  const depthSuffix = o.depthSuffix === undefined ? '' : String(o.depthSuffix)
  const rgb = o.rgbMasks === undefined ? false : v.boolean('rgbMasks', o.rgbMasks)
  const colours = rgb ? new Map(palette.map((c, i) => [(c[0] << 16) | (c[1] << 8) | c[2], i])) : undefined
  const imageFiles = filesByStem(images, IMAGE_EXTENSIONS)
  // One folder for both (x.jpg + x_mask.png): masks are not images.
  for (const [dirName, suffix] of [[masks, maskSuffix], [depth, depthSuffix]] as const) {
    if (dirName !== undefined && suffix && path.resolve(dirName) === path.resolve(images)) {
      for (const [stem] of imageFiles) if (stem.endsWith(suffix)) imageFiles.delete(stem)
    }
  }
  const maskFiles = masks === undefined ? undefined : filesByStem(masks, IMAGE_EXTENSIONS, maskSuffix)
  const depthFiles = depth === undefined ? undefined : filesByStem(depth, IMAGE_EXTENSIONS, depthSuffix)
  const entries: Entry[] = []
  for (const [stem, image] of imageFiles) {
    const e: Entry = { image, mask: maskFiles?.get(stem), depth: depthFiles?.get(stem) }
    if (maskFiles && !e.mask) e.missing = `no mask ${stem}${maskSuffix}.* in ${masks}`
    if (depthFiles && !e.depth) {
      e.mask = undefined
      e.missing = `no depth map ${stem}${depthSuffix}.* in ${depth}`
    }
    entries.push(e)
  }
  if (entries.length === 0) throw new SegtorchError(`folder: no images (${IMAGE_EXTENSIONS.join(', ')}) in ${images}`, 'ERR_SEGTORCH_DATA')
  return new FileDataset(`folder ${images}`, entries, { classes, palette, ignoreIndex, table, ...decodeOptions(o), colours, labelled: masks !== undefined })
}

function splitName (name: string, split: unknown, allowed: readonly string[]): string {
  return v.oneOf(`${name} split`, split, allowed)
}

function pairs (name: string, imageDir: string, maskDir: string, imageExt: readonly string[], maskSuffix = '', imageSuffix = ''): Entry[] {
  checkDir(name, imageDir)
  checkDir(name, maskDir)
  const imgs = filesByStem(imageDir, imageExt, imageSuffix)
  const masks = filesByStem(maskDir, ['.png'], maskSuffix)
  const out: Entry[] = []
  for (const [stem, image] of imgs) {
    const mask = masks.get(stem)
    out.push(mask ? { image, mask } : { image, missing: `no mask ${stem}${maskSuffix}.png in ${maskDir}` })
  }
  if (out.length === 0) throw new SegtorchError(`${name}: no images in ${imageDir}`, 'ERR_SEGTORCH_DATA')
  return out
}

function rootDir (name: string, root: unknown): string {
  return checkDir(name, v.string(`${name} root`, root))
}

function ioOptions (name: string, options: unknown, extra: readonly string[] = []): Record<string, unknown> {
  const o = v.optionsObject(`${name} options`, options)
  v.checkKeys(`${name} options`, o, ['channels', 'limitInputPixels', ...extra])
  return o
}

/**
 * CamVid in SegNet's layout: `train/` + `trainannot/`, `val/` + `valannot/`, `test/` + `testannot/`
 * (same file names). 11 classes; the void label 11 becomes 255 (ignored).
 */
export function camvid (root: string, split: 'train' | 'val' | 'test' = 'train', options?: DecodeOptions): Dataset {
  const r = rootDir('camvid', root)
  const s = splitName('camvid', split, ['train', 'val', 'test'])
  const o = ioOptions('camvid', options)
  const entries = pairs('camvid', path.join(r, s), path.join(r, `${s}annot`), IMAGE_EXTENSIONS)
  const table = labelTable(11, 255, { 11: 255 })
  return new FileDataset(`camvid ${s}`, entries, { classes: CAMVID_CLASSES, palette: CAMVID_PALETTE, ignoreIndex: 255, table, ...decodeOptions(o), labelled: true })
}

/**
 * The ISBI 2012 membrane images (the demo's data, shipped in data/membrane): `train/image/N.png` +
 * `train/label/N.png`, grey. Two classes: 0 membrane (label pixels <= 127), 1 cell interior (> 127).
 * Grey images unless `channels: 3`.
 */
export function membrane (root: string, options?: DecodeOptions): Dataset {
  const r = rootDir('membrane', root)
  const o = ioOptions('membrane', options)
  const entries = pairs('membrane', path.join(r, 'train', 'image'), path.join(r, 'train', 'label'), IMAGE_EXTENSIONS)
  const table = new Int16Array(256)
  for (let i = 128; i < 256; i++) table[i] = 1
  return new FileDataset('membrane', entries, { classes: ['membrane', 'cell interior'], palette: [[200, 30, 30], [235, 235, 235]], ignoreIndex: 255, table, ...decodeOptions({ channels: 1, ...o }), labelled: true })
}

export interface VocOptions extends DecodeOptions {
  /**
   * The SBD-augmented training list (10,582 images): `true` for the usual layout
   * (`SegmentationClassAug/` masks and `ImageSets/Segmentation/train_aug.txt`), or where they are.
   * Applies to the 'train' split only.
   */
  augmented?: boolean | { list?: string, masks?: string }
}

/**
 * PASCAL VOC 2012: `JPEGImages/`, palette PNGs in `SegmentationClass/` (read as indices) and
 * `ImageSets/Segmentation/<split>.txt`. 21 classes; 255 (object borders) is ignored. `root` is the
 * VOC2012 folder or the VOCdevkit folder holding it.
 */
export function voc (root: string, split: 'train' | 'val' | 'trainval' = 'train', options?: VocOptions): Dataset {
  let r = rootDir('voc', root)
  if (!fs.existsSync(path.join(r, 'JPEGImages')) && fs.existsSync(path.join(r, 'VOC2012', 'JPEGImages'))) r = path.join(r, 'VOC2012')
  const s = splitName('voc', split, ['train', 'val', 'trainval'])
  const o = ioOptions('voc', options, ['augmented'])
  const aug = o.augmented === undefined || o.augmented === false ? undefined : (o.augmented === true ? {} : v.optionsObject('augmented', o.augmented))
  let list = path.join(r, 'ImageSets', 'Segmentation', `${s}.txt`)
  let maskDirs = [path.join(r, 'SegmentationClass')]
  if (aug && s === 'train') {
    const candidates = aug.list !== undefined
      ? [v.string('augmented.list', aug.list)]
      : ['ImageSets/Segmentation/train_aug.txt', 'ImageSets/Segmentation/trainaug.txt', 'ImageSets/SegmentationAug/train_aug.txt', 'ImageSets/Segmentation/aug.txt'].map((f) => path.join(r, f))
    const found = candidates.find((f) => fs.existsSync(f))
    if (!found) throw new SegtorchError(`voc: no augmented training list (looked for ${candidates.join(', ')})`, 'ERR_SEGTORCH_DATA')
    list = found
    maskDirs = [aug.masks !== undefined ? v.string('augmented.masks', aug.masks) : path.join(r, 'SegmentationClassAug'), ...maskDirs]
    checkDir('voc augmented masks', maskDirs[0])
  }
  let text: string
  try {
    text = fs.readFileSync(list, 'utf8')
  } catch {
    throw new SegtorchError(`voc: cannot read the split list ${list}`, 'ERR_SEGTORCH_DATA')
  }
  // Lines are ids ("2007_000032") or pairs ("/JPEGImages/2007_000032.jpg /SegmentationClassAug/2007_000032.png").
  const ids = text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l.length > 0).map((l) => path.basename(l.split(/\s+/)[0]).replace(/\.[^.]*$/, ''))
  const entries: Entry[] = ids.map((id) => {
    const image = path.join(r, 'JPEGImages', `${id}.jpg`)
    const mask = maskDirs.map((d) => path.join(d, `${id}.png`)).find((f) => fs.existsSync(f))
    return mask ? { image, mask } : { image, missing: `no mask ${id}.png in ${maskDirs.join(' or ')}` }
  })
  if (entries.length === 0) throw new SegtorchError(`voc: the split list ${list} is empty`, 'ERR_SEGTORCH_DATA')
  const table = labelTable(21, 255)
  return new FileDataset(`voc ${s}${aug && s === 'train' ? ' (augmented)' : ''}`, entries, { classes: VOC_CLASSES, palette: VOC_PALETTE, ignoreIndex: 255, table, ...decodeOptions(o), labelled: true })
}

/**
 * Cityscapes: `leftImg8bit/<split>/<city>/*_leftImg8bit.png` with
 * `gtFine/<split>/<city>/*_gtFine_labelIds.png`, label ids mapped to the 19 train ids (others 255).
 */
export function cityscapes (root: string, split: 'train' | 'val' | 'test' = 'train', options?: DecodeOptions): Dataset {
  const r = rootDir('cityscapes', root)
  const s = splitName('cityscapes', split, ['train', 'val', 'test'])
  const o = ioOptions('cityscapes', options)
  const entries = pairs('cityscapes', path.join(r, 'leftImg8bit', s), path.join(r, 'gtFine', s), ['.png'], '_gtFine_labelIds', '_leftImg8bit')
  const map: Record<number, number> = {}
  CITYSCAPES_TRAIN_IDS.forEach((t, id) => { map[id] = t })
  const table = labelTable(19, 255, map)
  return new FileDataset(`cityscapes ${s}`, entries, { classes: CITYSCAPES_CLASSES, palette: CITYSCAPES_PALETTE, ignoreIndex: 255, table, ...decodeOptions(o), labelled: true })
}

/**
 * ADE20K as the SceneParsing benchmark ships it (ADEChallengeData2016): `images/{training,validation}/*.jpg`
 * and `annotations/{training,validation}/*.png`. 150 classes: labels 1..150 become 0..149, 0 ("other") is ignored.
 */
export function ade20k (root: string, split: 'train' | 'val' = 'train', options?: DecodeOptions): Dataset {
  let r = rootDir('ade20k', root)
  if (!fs.existsSync(path.join(r, 'images')) && fs.existsSync(path.join(r, 'ADEChallengeData2016', 'images'))) r = path.join(r, 'ADEChallengeData2016')
  const s = splitName('ade20k', split, ['train', 'val'])
  const o = ioOptions('ade20k', options)
  const dir = s === 'train' ? 'training' : 'validation'
  const entries = pairs('ade20k', path.join(r, 'images', dir), path.join(r, 'annotations', dir), IMAGE_EXTENSIONS)
  const map: Record<number, number> = { 0: 255 }
  for (let k = 1; k <= 150; k++) map[k] = k - 1
  const table = labelTable(150, 255, map)
  table[255] = -1 // 255 is not an ADE20K label
  return new FileDataset(`ade20k ${s}`, entries, { classes: ADE20K_CLASSES, palette: ADE20K_PALETTE, ignoreIndex: 255, table, ...decodeOptions(o), labelled: true })
}

// ---------------------------------------------------------------------------------------------
// Any other source.

/**
 * One item of a custom source. `image` (and `mask`, `depth`) are encoded bytes (JPEG, PNG, WebP,
 * TIFF), a file path, or decoded pixels when `width` and `height` are given (interleaved
 * height x width x channels uint8; masks height x width; depth float32 height x width).
 */
export interface SourceItem {
  image: Uint8Array | string
  mask?: Uint8Array | string
  depth?: Uint8Array | Float32Array | string
  width?: number
  height?: number
  /** Channels of raw pixels. Default 3. */
  channels?: number
  /** Name used in reports and errors. Default: the image path, or `item <index>`. */
  name?: string
}

export interface SourceOptions extends DecodeOptions {
  classes: readonly string[] | number
  palette?: ReadonlyArray<readonly [number, number, number]>
  ignoreIndex?: number
  labelMap?: Readonly<Record<number, number>>
  /** Items per pass, when known. */
  length?: number
}

type Source = AsyncIterable<SourceItem> | Iterable<SourceItem> | (() => AsyncIterable<SourceItem> | Iterable<SourceItem>)

/**
 * A data set over any sequence of items: a stream, an object store listing, database rows.
 * `source` is an (async) iterable, re-iterated once per epoch, or a function returning a fresh one.
 */
export function fromAsyncIterable (source: Source, options: SourceOptions): StreamDataset {
  const o = v.optionsObject('fromAsyncIterable options', options)
  if (options === undefined) throw new TypeError('Expected an options object { classes, ... } for fromAsyncIterable but received undefined')
  v.checkKeys('fromAsyncIterable options', o, ['classes', 'palette', 'ignoreIndex', 'labelMap', 'length', 'channels', 'depthScale', 'limitInputPixels'])
  const open = (): AsyncIterator<unknown> => {
    const s = typeof source === 'function' ? source() : source
    if (s !== null && typeof s === 'object' && Symbol.asyncIterator in s) return (s as AsyncIterable<unknown>)[Symbol.asyncIterator]()
    if (s !== null && typeof s === 'object' && Symbol.iterator in s) {
      const it = (s as Iterable<unknown>)[Symbol.iterator]()
      return { next: async () => it.next(), return: async () => it.return?.() ?? { done: true, value: undefined } }
    }
    throw typeError('source', 'an iterable or async iterable of items, or a function returning one', s)
  }
  if (typeof source !== 'function') open() // validates the source early (without consuming an iterator's items)
  const classes = classList(o.classes)
  const palette = paletteList(o.palette, classes.length)
  const ignoreIndex = o.ignoreIndex === undefined ? 255 : v.integer('ignoreIndex', o.ignoreIndex, 0, 255)
  const table = labelTable(classes.length, ignoreIndex, o.labelMap as Record<number, number> | undefined)
  const length = o.length === undefined ? undefined : v.integer('length', o.length, 0)
  const { channels, depthScale, limitInputPixels } = decodeOptions(o)
  const limit = { limitInputPixels: limitInputPixels === Infinity ? false : limitInputPixels }

  const bytes = async (x: Uint8Array | string): Promise<Uint8Array> => {
    if (typeof x !== 'string') return x
    await checkRegularFile(x, 'an image file') // a FIFO would block a libuv thread for good
    return fs.promises.readFile(x)
  }
  const decode = async (raw: unknown, index: number): Promise<Sample> => {
    const item = raw as SourceItem
    const file = typeof item?.name === 'string' ? item.name : typeof item?.image === 'string' ? item.image : `item ${index}`
    let where = file
    try {
      if (item === null || typeof item !== 'object' || item.image === undefined) throw new Error('expected an item { image, mask? }')
      const rawPixels = item.width !== undefined || item.height !== undefined
      let sample: Sample
      let maskRaw: { data: Uint8Array, width: number, height: number } | undefined
      if (rawPixels) {
        const w = v.integer('width', item.width, 1)
        const h = v.integer('height', item.height, 1)
        const c = item.channels === undefined ? 3 : v.integer('channels', item.channels, 1, 4)
        if (!(item.image instanceof Uint8Array) || item.image.length !== w * h * c) throw new Error(`expected ${w * h * c} bytes of raw pixels (${h} x ${w} x ${c})`)
        sample = { image: item.image, width: w, height: h, channels: c, file }
        if (item.mask !== undefined) {
          if (!(item.mask instanceof Uint8Array) || item.mask.length !== w * h) throw new Error(`expected a raw mask of ${w * h} bytes (${h} x ${w})`)
          maskRaw = { data: item.mask, width: w, height: h }
        }
      } else {
        const img = await decodeImage(await bytes(item.image), channels, limit)
        sample = { image: img.data, width: img.width, height: img.height, channels: img.channels, file }
        if (item.mask !== undefined) {
          where = typeof item.mask === 'string' ? item.mask : `${file} (mask)`
          maskRaw = await decodeMask(await bytes(item.mask), limit)
        }
      }
      if (maskRaw) {
        where = typeof item.mask === 'string' ? item.mask : `${file} (mask)`
        if (maskRaw.width !== sample.width || maskRaw.height !== sample.height) {
          throw new Error(`mask is ${maskRaw.width}x${maskRaw.height} but its image is ${sample.width}x${sample.height}`)
        }
        sample.mask = applyLabels(maskRaw.data, table, maskRaw.width, classes.length, ignoreIndex)
      }
      if (item.depth !== undefined) {
        where = typeof item.depth === 'string' ? item.depth : `${file} (depth)`
        const d = item.depth instanceof Float32Array ? { data: item.depth, width: sample.width, height: sample.height } : await decodeDepth(await bytes(item.depth), depthScale, limit)
        if (d.data.length !== sample.width * sample.height || d.width !== sample.width || d.height !== sample.height) throw new Error('depth map size differs from its image')
        sample.depth = d.data
      }
      return sample
    } catch (err) {
      throw new DataError(where, reason(err), err)
    }
  }
  const ds: StreamDataset = {
    classes: Object.freeze(classes),
    palette: Object.freeze(palette),
    ignoreIndex,
    length,
    items: open,
    decode,
    async * [Symbol.asyncIterator] () {
      const it = open()
      let index = 0
      for (;;) {
        const r = await it.next()
        if (r.done) return
        yield await decode(r.value, index++)
      }
    }
  }
  return ds
}

/** True for random-access data sets (`get(i)`), false for sequential ones. */
export function isRandomAccess (ds: AnyDataset): ds is Dataset {
  return typeof (ds as Dataset).get === 'function'
}
