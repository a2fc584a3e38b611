/** Pictures of masks: colourised class maps, overlays on the image, image | truth | prediction strips. */
import * as fs from 'fs'
import * as path from 'path'
import sharp from 'sharp'
import type { Colour } from '../data/classes'
import { encodeIndexedPng } from '../data/png'

/** An interleaved uint8 picture (height x width x channels). */
export interface Picture {
  data: Uint8Array
  width: number
  height: number
  channels: number
}

/** Colour drawn for labels outside the palette (the ignore index, unlabelled pixels). */
export const IGNORE_COLOUR: Colour = [224, 224, 192] // PASCAL VOC's colour of its void label

/** Class map (one label per pixel) -> RGB picture through the palette; labels without a colour (ignored pixels) get IGNORE_COLOUR. */
export function colourise (labels: ArrayLike<number>, width: number, height: number, palette: readonly Colour[]): Picture {
  const n = width * height
  if (labels.length !== n) throw new RangeError(`Expected ${n} labels for a ${width}x${height} mask but received ${labels.length}`)
  const out = new Uint8Array(n * 3)
  for (let i = 0; i < n; i++) {
    const c = palette[labels[i]] ?? IGNORE_COLOUR
    out[3 * i] = c[0]
    out[3 * i + 1] = c[1]
    out[3 * i + 2] = c[2]
  }
  return { data: out, width, height, channels: 3 }
}

/** Any 1-, 3- or 4-channel picture as 3-channel RGB. */
export function toRgb (p: Picture): Picture {
  if (p.channels === 3) return p
  const n = p.width * p.height
  const out = new Uint8Array(n * 3)
  for (let i = 0; i < n; i++) {
    if (p.channels === 1 || p.channels === 2) {
      const g = p.data[i * p.channels]
      out[3 * i] = g; out[3 * i + 1] = g; out[3 * i + 2] = g
    } else {
      for (let c = 0; c < 3; c++) out[3 * i + c] = p.data[i * p.channels + c]
    }
  }
  return { data: out, width: p.width, height: p.height, channels: 3 }
}

/** The image blended with a colour mask: (1 - alpha) x image + alpha x mask. */
export function overlay (image: Picture, mask: Picture, alpha = 0.5): Picture {
  if (image.width !== mask.width || image.height !== mask.height) {
    throw new RangeError(`Expected a mask of the image's size ${image.width}x${image.height} but received ${mask.width}x${mask.height}`)
  }
  const a = toRgb(image)
  const b = toRgb(mask)
  const out = new Uint8Array(a.data.length)
  for (let i = 0; i < out.length; i++) out[i] = Math.round((1 - alpha) * a.data[i] + alpha * b.data[i])
  return { data: out, width: a.width, height: a.height, channels: 3 }
}

/** Pictures of the same height side by side, `gap` white pixels apart, as one RGB picture. */
export function sideBySide (pictures: readonly Picture[], gap = 4): Picture {
  if (pictures.length === 0) throw new RangeError('Expected at least one picture')
  const h = pictures[0].height
  if (pictures.some((p) => p.height !== h)) throw new RangeError('Expected pictures of the same height')
  const w = pictures.reduce((s, p) => s + p.width, 0) + gap * (pictures.length - 1)
  const out = new Uint8Array(w * h * 3).fill(255)
  let x0 = 0
  for (const p0 of pictures) {
    const p = toRgb(p0)
    for (let y = 0; y < h; y++) out.set(p.data.subarray(y * p.width * 3, (y + 1) * p.width * 3), (y * w + x0) * 3)
    x0 += p.width + gap
  }
  return { data: out, width: w, height: h, channels: 3 }
}

/**
 * Writes a picture as PNG (creating the folder). `minHeight` enlarges small pictures by a whole
 * factor (nearest neighbour: pixels stay sharp) until they are at least that tall.
 */
export async function writePng (file: string, p: Picture, options: { minHeight?: number } = {}): Promise<void> {
  await fs.promises.mkdir(path.dirname(file), { recursive: true })
  let img = sharp(p.data, { raw: { width: p.width, height: p.height, channels: p.channels as 1 | 2 | 3 | 4 } })
  const f = options.minHeight ? Math.ceil(options.minHeight / p.height) : 1
  if (f > 1) img = img.resize(p.width * f, p.height * f, { kernel: 'nearest' })
  await img.png().toFile(file)
}

/**
 * Writes a class map as an 8-bit palette PNG: the pixel values are the class indices (what
 * decodeMask and the data sets read back), and viewers show the palette's colours.
 */
export async function writeClassMapPng (file: string, labels: ArrayLike<number>, width: number, height: number, palette: readonly Colour[]): Promise<void> {
  const pal = palette.slice(0, 256) as Colour[]
  let max = 0
  for (let i = 0; i < labels.length; i++) if (labels[i] > max) max = labels[i]
  while (pal.length <= Math.min(255, max)) pal.push(IGNORE_COLOUR)
  await fs.promises.mkdir(path.dirname(file), { recursive: true })
  await fs.promises.writeFile(file, encodeIndexedPng(labels, width, height, pal))
}
