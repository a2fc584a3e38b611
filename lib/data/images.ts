/** Image files in and out, decoded with sharp (libvips) into uint8 buffers. */
import * as fs from 'fs'
import * as path from 'path'
import sharp, { OutputInfo } from 'sharp'
import { ImageError, LimitError, PngError, SegtorchError } from '../errors'
import { checkRegularFile } from '../files'
import { decodePng, DecodedPng, isPng, pixelLimitError, PngDecodeOptions, resolveLimitInputPixels } from './png'

export interface DecodedImage {
  /** Interleaved pixels, height x width x channels. */
  data: Uint8Array
  width: number
  height: number
  channels: number
}

/** What every decoder takes besides the bytes. */
export interface ImageDecodeOptions {
  /**
   * Largest width x height decoded, checked from the file's header before any pixel is allocated
   * (sharp's option of the same name): true or undefined: 268402689 (0x3FFF x 0x3FFF), a positive
   * integer: that many pixels, false or 0: no limit. Larger images are a LimitError.
   */
  limitInputPixels?: number | boolean
}

/** sharp's input options for a resolved limit. */
function sharpInput (limit: number): { failOn: 'error', limitInputPixels: number | false } {
  return { failOn: 'error', limitInputPixels: limit === Infinity ? false : limit }
}

/** sharp's "exceeds pixel limit" as a LimitError with the image's size (read from its header). */
async function limitError (err: unknown, input: Uint8Array | string, limit: number): Promise<unknown> {
  if (!/pixel limit/i.test((err as Error)?.message ?? '')) return err
  try {
    const meta = await sharp(input, { limitInputPixels: false }).metadata()
    if (meta.width !== undefined && meta.height !== undefined) return pixelLimitError(meta.width, meta.height, limit)
  } catch {}
  return new LimitError(`image exceeds limitInputPixels (${limit}): pass a larger limitInputPixels (or false for none) to read it`, limit, NaN)
}

/** Decodes an image file to uint8 pixels with `channels` channels (1 grey, 3 RGB). */
export async function readImage (file: string, channels: 1 | 3 = 3, options: ImageDecodeOptions = {}): Promise<DecodedImage> {
  return await decodeImage(file, channels, options)
}

/** sharp's decoding to `channels` interleaved uint8 channels (sharp's own errors, thrown or rejected, as a rejection). */
async function pixels (input: Uint8Array | string, channels: 1 | 3, limit: number): Promise<{ data: Buffer, info: OutputInfo }> {
  let img = sharp(input, sharpInput(limit))
  img = channels === 1 ? img.greyscale() : img.removeAlpha().toColourspace('srgb')
  return await img.raw().toBuffer({ resolveWithObject: true })
}

/** HWC interleaved -> CHW planar (what tensors of shape [C, H, W] hold). */
export function toPlanar (img: DecodedImage, out = new Uint8Array(img.data.length)): Uint8Array {
  const { data, width, height, channels } = img
  const plane = width * height
  if (channels === 1) {
    out.set(data)
    return out
  }
  for (let i = 0; i < plane; i++) {
    for (let c = 0; c < channels; c++) out[c * plane + i] = data[i * channels + c]
  }
  return out
}

/** Writes a class map as an 8-bit grey PNG, each class k as k * scale. */
export async function writeLabelPng (file: string, labels: ArrayLike<number>, width: number, height: number, scale = 1): Promise<void> {
  const px = new Uint8Array(width * height)
  for (let i = 0; i < px.length; i++) px[i] = Math.min(255, labels[i] * scale)
  fs.mkdirSync(path.dirname(file), { recursive: true })
  await sharp(px, { raw: { width, height, channels: 1 } }).png().toFile(file)
}

/** What a mask decoder needs besides the bytes. */
export interface MaskDecodeOptions extends ImageDecodeOptions {
  /** RGB-coded masks: colour (r << 16 | g << 8 | b) -> raw label value. Without it an RGB mask whose channels differ is an error. */
  colours?: Map<number, number>
}

/**
 * Refuses PNG and JPEG files cut short before decoding (libvips reports those, but its message can
 * be lost when several images fail at once).
 */
function checkComplete (buf: Uint8Array): void {
  if (isPng(buf)) {
    const tail = Buffer.from(buf.buffer, buf.byteOffset + Math.max(0, buf.length - 12), Math.min(12, buf.length))
    if (tail.toString('latin1', 4, 8) !== 'IEND') throw new ImageError('truncated PNG (no IEND chunk at the end)')
  } else if (buf.length >= 3 && buf[0] === 0xff && buf[1] === 0xd8 && buf[2] === 0xff) {
    // the end-of-image marker, allowing for padding after it
    let found = false
    for (let i = buf.length - 2; i >= Math.max(2, buf.length - 4096) && !found; i--) found = buf[i] === 0xff && buf[i + 1] === 0xd9
    if (!found) throw new ImageError('truncated JPEG (no end-of-image marker)')
  }
}

/**
 * sharp's errors as an ImageError without libvips' noise; an empty message (lost by libvips) says what
 * is known. segtorch's own errors, TypeError and RangeError pass through.
 */
function decoderError (err: unknown, file?: string): Error {
  if (err instanceof SegtorchError || err instanceof TypeError || err instanceof RangeError) return err
  const m = ((err as Error)?.message ?? '').trim()
  const message = !m || /^Unknown error$/i.test(m)
    ? 'corrupt image data (the decoder gave no detail)'
    : /^Input (buffer|file) is empty/i.test(m) ? 'empty image data (0 bytes)' : m.split('\n')[0]
  return new ImageError(message, 'ERR_SEGTORCH_IMAGE', file)
}

/**
 * Decodes an encoded image (JPEG, PNG, WebP, TIFF, ...) to interleaved uint8 pixels with `channels`
 * channels. Truncated or corrupt data is an Error (sharp's failOn: 'error').
 */
export async function decodeImage (input: Uint8Array | string, channels: 1 | 3 = 3, options: ImageDecodeOptions = {}): Promise<DecodedImage> {
  const limit = resolveLimitInputPixels(options.limitInputPixels)
  if (typeof input !== 'string') checkComplete(input)
  else await checkRegularFile(input, 'an image file')
  const { data, info } = await pixels(input, channels, limit).catch(async (err) => { throw decoderError(await limitError(err, input, limit), typeof input === 'string' ? input : undefined) })
  return { data: new Uint8Array(data.buffer, data.byteOffset, data.length), width: info.width, height: info.height, channels: info.channels }
}

function singleChannel (data: Uint8Array, channels: number, keep: number): Uint8Array {
  if (channels === 1) return data
  const n = data.length / channels
  const out = new Uint8Array(n)
  for (let i = 0; i < n; i++) out[i] = data[i * channels + keep]
  return out
}

/**
 * Decodes a label image to one raw value per pixel (height x width), never colours:
 * palette-indexed PNGs give their palette indices, grey images their grey values (1- to 16-bit;
 * values above 255 are an error), RGB images whose three channels are equal their grey value, and
 * other RGB images are mapped through `colours` or refused.
 */
export async function decodeMask (input: Uint8Array, options: MaskDecodeOptions = {}): Promise<DecodedImage> {
  const limit = resolveLimitInputPixels(options.limitInputPixels)
  if (!isPng(input)) checkComplete(input) // PNGs: our decoder says what is wrong, as a PngError
  try {
    return await decodeLabels(input, options, limit)
  } catch (err) {
    throw decoderError(await limitError(err, input, limit))
  }
}

/**
 * A decoded PNG mask to one label per pixel: palette indices, grey values (16-bit ones above 255
 * refused), the grey channel of grey + alpha, and RGB(A) colours through `colours` or as grey when
 * r = g = b (16-bit colours must be exact 8-bit values, x * 257).
 */
function pngLabels (png: DecodedPng, colours?: Map<number, number>): DecodedImage {
  const { width, channels, data } = png
  const n = png.width * png.height
  const out = new Uint8Array(n)
  const where = (i: number): string => `pixel (${i % width}, ${Math.floor(i / width)})`
  if (png.colourType === 0 || png.colourType === 3 || png.colourType === 4) {
    for (let i = 0; i < n; i++) {
      const x = data[i * channels]
      if (x > 255) throw new PngError(`16-bit mask holds label ${x} at ${where(i)}: labels above 255 are not supported`)
      out[i] = x
    }
    return { data: out, width, height: png.height, channels: 1 }
  }
  const wide = png.bitDepth === 16
  for (let i = 0; i < n; i++) {
    let r = data[i * channels]
    let g = data[i * channels + 1]
    let b = data[i * channels + 2]
    if (wide) {
      if (r % 257 !== 0 || g % 257 !== 0 || b % 257 !== 0) throw new PngError(`16-bit RGB mask colour (${r}, ${g}, ${b}) at ${where(i)} is not an 8-bit colour (x * 257)`)
      r /= 257
      g /= 257
      b /= 257
    }
    out[i] = colourLabel(r, g, b, i, width, colours)
  }
  return { data: out, width, height: png.height, channels: 1 }
}

function colourLabel (r: number, g: number, b: number, i: number, width: number, colours?: Map<number, number>): number {
  if (colours !== undefined) {
    const v = colours.get((r << 16) | (g << 8) | b)
    if (v === undefined) throw new ImageError(`mask colour rgb(${r}, ${g}, ${b}) at pixel (${i % width}, ${Math.floor(i / width)}) is not in the colour map`)
    return v
  }
  if (r === g && g === b) return r
  throw new ImageError(`RGB mask with colour rgb(${r}, ${g}, ${b}) at pixel (${i % width}, ${Math.floor(i / width)}): expected class indices (a grey or palette-indexed image), or give a colour map`)
}

async function decodeLabels (input: Uint8Array, options: MaskDecodeOptions, limit: number): Promise<DecodedImage> {
  // PNG masks (nearly all of them): our own decoder, strict and bounded, raw values never converted.
  if (isPng(input)) return pngLabels(await decodePng(input, { limitInputPixels: limit === Infinity ? false : limit } as PngDecodeOptions), options.colours)
  const meta = await sharp(input, sharpInput(limit)).metadata()
  if (meta.width !== undefined && meta.height !== undefined && meta.width * meta.height > limit) throw pixelLimitError(meta.width, meta.height, limit)
  const grey = (meta.channels ?? 3) <= 2
  const wide = meta.depth === 'ushort'
  if (grey && wide) {
    const { data, info } = await sharp(input, sharpInput(limit)).toColourspace('grey16').raw({ depth: 'ushort' }).toBuffer({ resolveWithObject: true })
    const v = new Uint16Array(data.buffer, data.byteOffset, data.length / 2)
    const out = new Uint8Array(info.width * info.height)
    for (let i = 0; i < out.length; i++) {
      const x = v[i * info.channels]
      if (x > 255) throw new ImageError(`16-bit mask holds label ${x} at pixel (${i % info.width}, ${Math.floor(i / info.width)}): labels above 255 are not supported`)
      out[i] = x
    }
    return { data: out, width: info.width, height: info.height, channels: 1 }
  }
  if (grey) {
    const { data, info } = await sharp(input, sharpInput(limit)).toColourspace('b-w').raw().toBuffer({ resolveWithObject: true })
    return { data: singleChannel(new Uint8Array(data.buffer, data.byteOffset, data.length), info.channels, 0), width: info.width, height: info.height, channels: 1 }
  }
  const { data, info } = await sharp(input, sharpInput(limit)).removeAlpha().toColourspace('srgb').raw().toBuffer({ resolveWithObject: true })
  const n = info.width * info.height
  const c = info.channels
  const out = new Uint8Array(n)
  for (let i = 0; i < n; i++) out[i] = colourLabel(data[i * c], data[i * c + 1], data[i * c + 2], i, info.width, options.colours)
  return { data: out, width: info.width, height: info.height, channels: 1 }
}

/** Decodes a single-channel 8- or 16-bit depth image to float32 (value x scale; 0 stays 0 = invalid). */
export async function decodeDepth (input: Uint8Array, scale = 1, options: ImageDecodeOptions = {}): Promise<{ data: Float32Array, width: number, height: number }> {
  const limit = resolveLimitInputPixels(options.limitInputPixels)
  checkComplete(input)
  try {
    return await depthPixels(input, scale, limit)
  } catch (err) {
    throw decoderError(await limitError(err, input, limit))
  }
}

async function depthPixels (input: Uint8Array, scale: number, limit: number): Promise<{ data: Float32Array, width: number, height: number }> {
  const meta = await sharp(input, sharpInput(limit)).metadata()
  if (meta.width !== undefined && meta.height !== undefined && meta.width * meta.height > limit) throw pixelLimitError(meta.width, meta.height, limit, 'depth image')
  if ((meta.channels ?? 0) > 2) throw new ImageError(`depth image with ${meta.channels} channels: expected a single-channel (grey) image`)
  const wide = meta.depth === 'ushort'
  const { data, info } = await sharp(input, sharpInput(limit)).toColourspace(wide ? 'grey16' : 'b-w').raw(wide ? { depth: 'ushort' } : {}).toBuffer({ resolveWithObject: true })
  const v = wide ? new Uint16Array(data.buffer, data.byteOffset, data.length / 2) : data
  const out = new Float32Array(info.width * info.height)
  for (let i = 0; i < out.length; i++) out[i] = v[i * info.channels] * scale
  return { data: out, width: info.width, height: info.height }
}
