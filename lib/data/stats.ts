/**
 * Class statistics of a data set's masks: pixel frequencies and the class weights papers derive
 * from them (SegNet's median-frequency balancing on CamVid).
 */
import * as v from '../validate'
import { Dataset, isRandomAccess } from './datasets'

export type ClassWeighting = 'median-frequency' | 'sqrt-median-frequency'

export interface ClassFrequencies {
  /** Pixels of each class (ignored pixels and labels >= numClasses are not counted). */
  pixels: number[]
  /** Labelled pixels of the images in which each class appears (SegNet's denominator). */
  present: number[]
  /** pixels / present: the class's frequency over the images that contain it (0 where it never appears). */
  frequency: number[]
  /** Masks read. */
  images: number
}

/** Counts every class's pixels over a data set's masks (images are decoded too: a few seconds for CamVid). */
export async function classFrequencies (ds: Dataset, options?: { ignoreIndex?: number, limit?: number }): Promise<ClassFrequencies> {
  if (!isRandomAccess(ds)) throw new TypeError('Expected a random-access data set (folder, camvid, voc, cityscapes, ade20k) to count class frequencies from')
  const o = v.optionsObject('classFrequencies options', options)
  const ignore = o.ignoreIndex === undefined ? ds.ignoreIndex : v.integer('ignoreIndex', o.ignoreIndex, 0, 255)
  const n = Math.min(ds.length, o.limit === undefined ? ds.length : v.integer('limit', o.limit, 1))
  const k = ds.classes.length
  const pixels = new Array<number>(k).fill(0)
  const present = new Array<number>(k).fill(0)
  const counts = new Float64Array(256)
  for (let i = 0; i < n; i++) {
    const s = await ds.get(i)
    if (s.mask === undefined) throw new TypeError(`Expected masks to count class frequencies but sample ${i} (${s.file}) has none`)
    counts.fill(0)
    for (let p = 0; p < s.mask.length; p++) counts[s.mask[p]]++
    let labelled = 0
    for (let c = 0; c < k; c++) if (c !== ignore) labelled += counts[c]
    for (let c = 0; c < k; c++) {
      if (c === ignore || counts[c] === 0) continue
      pixels[c] += counts[c]
      present[c] += labelled
    }
  }
  return { pixels, present, frequency: pixels.map((p, c) => (present[c] > 0 ? p / present[c] : 0)), images: n }
}

/**
 * Class weights for the loss from class frequencies: 'median-frequency' is SegNet's (Badrinarayanan
 * et al. 2017, after Eigen & Fergus 2015): median(freq) / freq(c); 'sqrt-median-frequency' is its
 * square root, a milder balance. Classes that never appear get weight 1 (they add nothing to the loss).
 */
export function weightsFromFrequencies (f: Pick<ClassFrequencies, 'frequency'>, method: ClassWeighting = 'median-frequency'): number[] {
  v.oneOf('method', method, ['median-frequency', 'sqrt-median-frequency'] as const)
  const seen = f.frequency.filter((x) => x > 0).sort((a, b) => a - b)
  if (seen.length === 0) throw new RangeError('Expected at least one labelled class pixel to weight classes by but the masks hold none')
  const mid = seen.length % 2 === 1 ? seen[(seen.length - 1) / 2] : (seen[seen.length / 2 - 1] + seen[seen.length / 2]) / 2
  return f.frequency.map((x) => {
    if (x <= 0) return 1
    const w = mid / x
    return method === 'sqrt-median-frequency' ? Math.sqrt(w) : w
  })
}

/** classFrequencies then weightsFromFrequencies. */
export async function classWeights (ds: Dataset, method: ClassWeighting = 'median-frequency', options?: { ignoreIndex?: number, limit?: number }): Promise<number[]> {
  v.oneOf('method', method, ['median-frequency', 'sqrt-median-frequency'] as const)
  return weightsFromFrequencies(await classFrequencies(ds, options), method)
}
