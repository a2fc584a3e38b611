/** Image files in and out, decoded with sharp (libvips) into uint8 buffers. */
import * as fs from 'fs'
import * as path from 'path'
import sharp from 'sharp'

export interface DecodedImage {
  /** Interleaved pixels, height x width x channels. */
  data: Uint8Array
  width: number
  height: number
  channels: number
}

/** Decodes an image file to uint8 pixels with `channels` channels (1 grey, 3 RGB). */
export async function readImage (file: string, channels: 1 | 3 = 3): Promise<DecodedImage> {
  let img = sharp(file, { failOn: 'error' })
  img = channels === 1 ? img.greyscale() : img.removeAlpha().toColourspace('srgb')
  const { data, info } = await img.raw().toBuffer({ resolveWithObject: true })
  return { data: new Uint8Array(data.buffer, data.byteOffset, data.length), width: info.width, height: info.height, channels: info.channels }
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
