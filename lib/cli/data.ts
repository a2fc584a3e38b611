/**
 * Data specs on the command line: `camvid:DIR`, `voc:DIR`, `cityscapes:DIR`, `ade20k:DIR` (a split
 * after '#': `camvid:DIR#val`) and `folder:IMAGES,MASKS`.
 */
import { ade20k, camvid, cityscapes, Dataset, folder, membrane, voc } from '../data/datasets'
import { ADE20K_CLASSES, ADE20K_PALETTE, CAMVID_CLASSES, CAMVID_PALETTE, CITYSCAPES_CLASSES, CITYSCAPES_PALETTE, Colour, VOC_CLASSES, VOC_PALETTE, vocColourMap } from '../data/classes'
import { UsageError } from './options'

export const KINDS = ['camvid', 'voc', 'cityscapes', 'ade20k', 'membrane', 'folder'] as const
export type Kind = typeof KINDS[number]

export interface DataSpec {
  kind: Kind
  /** Root folder (named data sets) or images folder. */
  root: string
  masks?: string
  split?: string
}

/** Class names and colours of the named data sets (for predict --palette). */
export const NAMED: Record<Exclude<Kind, 'folder'>, { classes: readonly string[], palette: readonly Colour[], splits: readonly string[] }> = {
  camvid: { classes: CAMVID_CLASSES, palette: CAMVID_PALETTE, splits: ['train', 'val', 'test'] },
  voc: { classes: VOC_CLASSES, palette: VOC_PALETTE, splits: ['train', 'val', 'trainval'] },
  cityscapes: { classes: CITYSCAPES_CLASSES, palette: CITYSCAPES_PALETTE, splits: ['train', 'val', 'test'] },
  ade20k: { classes: ADE20K_CLASSES, palette: ADE20K_PALETTE, splits: ['train', 'val'] },
  membrane: { classes: ['membrane', 'cell interior'], palette: [[200, 30, 30], [235, 235, 235]], splits: ['train'] }
}

const SPEC_HELP = 'a data spec camvid:DIR, voc:DIR, cityscapes:DIR, ade20k:DIR, membrane:DIR (optionally #SPLIT) or folder:IMAGES_DIR,MASKS_DIR'

export function parseSpec (name: string, spec: string): DataSpec {
  const m = /^([a-z0-9]+):(.+)$/.exec(spec)
  if (!m || !(KINDS as readonly string[]).includes(m[1])) throw new UsageError(`Expected ${SPEC_HELP} for ${name} but received '${spec}'`)
  const kind = m[1] as Kind
  let rest = m[2]
  if (kind === 'folder') {
    const [images, masks, ...more] = rest.split(',')
    if (!images || more.length > 0 || masks === '') throw new UsageError(`Expected folder:IMAGES_DIR,MASKS_DIR for ${name} but received '${spec}'`)
    return { kind, root: images, masks }
  }
  let split: string | undefined
  const hash = rest.lastIndexOf('#')
  if (hash >= 0) {
    split = rest.slice(hash + 1)
    rest = rest.slice(0, hash)
    if (!NAMED[kind].splits.includes(split)) throw new UsageError(`Expected a ${kind} split (${NAMED[kind].splits.join(', ')}) after '#' in ${name} but received '${split}'`)
  }
  if (!rest) throw new UsageError(`Expected a folder after '${kind}:' in ${name} but received '${spec}'`)
  return { kind, root: rest, split }
}

export interface OpenOptions {
  /** Split when the spec names none. */
  split: string
  /** Image channels (1 grey, 3 RGB). */
  channels: 1 | 3
  /** folder data: class names or ['N'] for N classes. */
  classes?: readonly string[]
  ignoreIndex?: number
  maskSuffix?: string
}

/** Class names from --classes: ['3'] means three unnamed classes. */
export function classNames (classes: readonly string[]): string[] {
  if (classes.length === 1 && /^\d+$/.test(classes[0])) {
    const n = Number(classes[0])
    if (n < 1 || n > 255) throw new UsageError(`Expected 1 to 255 classes for --classes but received ${n}`)
    return Array.from({ length: n }, (_, i) => `class ${i}`)
  }
  return [...classes]
}

export function openSpec (name: string, s: DataSpec, o: OpenOptions): Dataset {
  const split = s.split ?? o.split
  switch (s.kind) {
    case 'camvid': return camvid(s.root, split as 'train', { channels: o.channels })
    case 'voc': return voc(s.root, split as 'train', { channels: o.channels })
    case 'cityscapes': return cityscapes(s.root, split as 'train', { channels: o.channels })
    case 'ade20k': return ade20k(s.root, split as 'train', { channels: o.channels })
    case 'membrane': return membrane(s.root, { channels: o.channels })
    case 'folder': {
      if (!o.classes) throw new UsageError(`Expected --classes (a count or names separated by commas) for the folder data of ${name}`)
      const classes = classNames(o.classes)
      return folder({ images: s.root, masks: s.masks, classes, palette: vocColourMap(classes.length), ignoreIndex: o.ignoreIndex, maskSuffix: o.maskSuffix, channels: o.channels })
    }
  }
}

/** A view of some samples of a data set (a held-out validation split). */
export function subset (ds: Dataset, indices: readonly number[]): Dataset {
  return {
    classes: ds.classes,
    palette: ds.palette,
    ignoreIndex: ds.ignoreIndex,
    length: indices.length,
    get: async (i: number) => ds.get(indices[i]),
    file: (i: number) => (ds.file ? ds.file(indices[i]) : String(indices[i]))
  }
}

/** Splits off a fraction of the data as validation, in a seeded random order. */
export function holdout (ds: Dataset, fraction: number, seed: number): { train: Dataset, val: Dataset } {
  const n = ds.length
  const k = Math.max(1, Math.round(n * fraction))
  if (k >= n) throw new UsageError(`Expected a validation fraction that leaves training images but --val ${fraction} holds out ${k} of ${n}`)
  const order = Array.from({ length: n }, (_, i) => i)
  let s = (seed >>> 0) || 1
  for (let i = n - 1; i > 0; i--) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    const j = s % (i + 1)
    ;[order[i], order[j]] = [order[j], order[i]]
  }
  const val = order.slice(0, k).sort((a, b) => a - b)
  const train = order.slice(k).sort((a, b) => a - b)
  return { train: subset(ds, train), val: subset(ds, val) }
}
