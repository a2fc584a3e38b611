/** Tiny image / mask files generated with sharp (and by hand for exact palette PNGs) in a temp dir. */
import * as fs from 'fs'
import * as path from 'path'
import sharp from 'sharp'
import { encodeIndexedPng } from '../lib/data/png'
import { rng } from './helpers'

export function write (file: string, bytes: Uint8Array): string {
  fs.mkdirSync(path.dirname(file), { recursive: true })
  fs.writeFileSync(file, bytes)
  return file
}

/** Deterministic RGB pixels (interleaved). */
export function rgbPixels (w: number, h: number, seed = 1): Buffer {
  const r = rng(seed)
  return Buffer.from(Array.from({ length: w * h * 3 }, () => Math.floor(r() * 256)))
}

/** Deterministic labels in [0, k). */
export function labels (w: number, h: number, k: number, seed = 2): Uint8Array {
  const r = rng(seed)
  return Uint8Array.from({ length: w * h }, () => Math.floor(r() * k))
}

export async function rgbFile (file: string, w: number, h: number, seed = 1, format: 'png' | 'jpeg' | 'webp' | 'tiff' = 'png'): Promise<string> {
  let s = sharp(rgbPixels(w, h, seed), { raw: { width: w, height: h, channels: 3 } })
  s = format === 'png' ? s.png() : format === 'jpeg' ? s.jpeg({ quality: 95 }) : format === 'webp' ? s.webp({ lossless: true }) : s.tiff({ compression: 'lzw' })
  return write(file, await s.toBuffer())
}

/** An 8-bit single-channel (colour type 0) PNG. */
export async function greyPng (file: string, values: Uint8Array, w: number, h: number): Promise<string> {
  return write(file, await sharp(Buffer.from(values), { raw: { width: w, height: h, channels: 1 } }).toColourspace('b-w').png().toBuffer())
}

/** An exact 8-bit palette PNG: pixel values are palette indices. */
export function palettePng (file: string, indices: Uint8Array, w: number, h: number, palette: ReadonlyArray<readonly [number, number, number]>): string {
  return write(file, encodeIndexedPng(indices, w, h, palette))
}
