/**
 * A small PNG codec for label images, where decoders built for photographs go wrong: a
 * palette-indexed PNG (PASCAL VOC's masks) must give its palette indices, not RGB, and a 1-, 2- or
 * 4-bit grey PNG its raw values, not values stretched to 0..255.
 */
import { promisify } from 'util'
import * as zlib from 'zlib'

const inflate = promisify(zlib.inflate)
const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])

const CRC_TABLE = (() => {
  const t = new Uint32Array(256)
  for (let n = 0; n < 256; n++) {
    let c = n
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1
    t[n] = c >>> 0
  }
  return t
})()

function crc32 (buf: Uint8Array, start: number, end: number): number {
  let c = 0xffffffff
  for (let i = start; i < end; i++) c = CRC_TABLE[(c ^ buf[i]) & 0xff] ^ (c >>> 8)
  return (c ^ 0xffffffff) >>> 0
}

export function isPng (buf: Uint8Array): boolean {
  return buf.length >= 8 && SIGNATURE.equals(buf.subarray(0, 8))
}

/** Colour type and bit depth from a PNG's IHDR, or undefined if `buf` is not a PNG. */
export function pngHeader (buf: Uint8Array): { colourType: number, bitDepth: number, width: number, height: number } | undefined {
  if (!isPng(buf) || buf.length < 33) return undefined
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.length)
  if (b.toString('latin1', 12, 16) !== 'IHDR') return undefined
  return { width: b.readUInt32BE(16), height: b.readUInt32BE(20), bitDepth: b[24], colourType: b[25] }
}

export interface DecodedPng {
  width: number
  height: number
  /** 0 grey, 3 palette (others are refused: use sharp for them). */
  colourType: number
  bitDepth: number
  /** One value per pixel: the palette index or the grey value (Uint16Array for 16-bit grey). */
  data: Uint8Array | Uint16Array
  /** PLTE entries as [r, g, b], for palette images. */
  palette?: Array<[number, number, number]>
}

// Adam7 passes: x0, y0, dx, dy
const ADAM7 = [[0, 0, 8, 8], [4, 0, 8, 8], [0, 4, 4, 8], [2, 0, 4, 4], [0, 2, 2, 4], [1, 0, 2, 2], [0, 1, 1, 2]]

function paeth (a: number, b: number, c: number): number {
  const p = a + b - c
  const pa = Math.abs(p - a)
  const pb = Math.abs(p - b)
  const pc = Math.abs(p - c)
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c
}

/** Undoes the scanline filters of one (sub)image in place; returns the offset after it. */
function unfilter (raw: Uint8Array, offset: number, rowBytes: number, rows: number, bpp: number): number {
  let prev = -1
  for (let y = 0; y < rows; y++) {
    const f = raw[offset]
    const row = offset + 1
    if (row + rowBytes > raw.length) throw new Error('truncated image data')
    for (let i = 0; i < rowBytes; i++) {
      const a = i >= bpp ? raw[row + i - bpp] : 0
      const b = prev >= 0 ? raw[prev + i] : 0
      const c = prev >= 0 && i >= bpp ? raw[prev + i - bpp] : 0
      let v = raw[row + i]
      switch (f) {
        case 0: break
        case 1: v += a; break
        case 2: v += b; break
        case 3: v += (a + b) >> 1; break
        case 4: v += paeth(a, b, c); break
        default: throw new Error(`invalid filter type ${f} in row ${y}`)
      }
      raw[row + i] = v & 0xff
    }
    prev = row
    offset = row + rowBytes
  }
  return offset
}

/**
 * Decodes a grey (any bit depth) or palette PNG to one value per pixel: palette indices, never
 * colours. Checks every chunk's CRC; a truncated or corrupt file is an Error saying what is wrong.
 */
export async function decodeIndexedPng (buf: Uint8Array): Promise<DecodedPng> {
  if (!isPng(buf)) throw new Error('not a PNG file')
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.length)
  let pos = 8
  let width = 0
  let height = 0
  let bitDepth = 0
  let colourType = -1
  let interlace = 0
  let palette: Array<[number, number, number]> | undefined
  const idat: Buffer[] = []
  let ended = false
  while (pos + 8 <= b.length) {
    const len = b.readUInt32BE(pos)
    const type = b.toString('latin1', pos + 4, pos + 8)
    const data = pos + 8
    if (data + len + 4 > b.length) throw new Error(`truncated file (${type} chunk runs past the end)`)
    if (crc32(b, pos + 4, data + len) !== b.readUInt32BE(data + len)) throw new Error(`corrupt file (bad CRC in ${type} chunk)`)
    if (type === 'IHDR') {
      width = b.readUInt32BE(data)
      height = b.readUInt32BE(data + 4)
      bitDepth = b[data + 8]
      colourType = b[data + 9]
      interlace = b[data + 12]
    } else if (type === 'PLTE') {
      palette = []
      for (let i = 0; i + 2 < len; i += 3) palette.push([b[data + i], b[data + i + 1], b[data + i + 2]])
    } else if (type === 'IDAT') {
      idat.push(b.subarray(data, data + len))
    } else if (type === 'IEND') {
      ended = true
      break
    }
    pos = data + len + 4
  }
  if (colourType < 0) throw new Error('corrupt file (no IHDR chunk)')
  if (!ended) throw new Error('truncated file (no IEND chunk)')
  if (colourType !== 0 && colourType !== 3) throw new Error(`PNG colour type ${colourType} is not grey or palette`)
  if (colourType === 3 && palette === undefined) throw new Error('corrupt file (palette image without a PLTE chunk)')
  if (width < 1 || height < 1) throw new Error(`invalid size ${width}x${height}`)
  let raw: Uint8Array
  try {
    raw = new Uint8Array(await inflate(Buffer.concat(idat)))
  } catch (err) {
    throw new Error(`corrupt or truncated image data (${(err as Error).message})`)
  }
  const out = bitDepth === 16 ? new Uint16Array(width * height) : new Uint8Array(width * height)
  const bpp = Math.max(1, bitDepth >> 3)
  const passes = interlace === 1 ? ADAM7 : [[0, 0, 1, 1]]
  let offset = 0
  for (const [x0, y0, dx, dy] of passes) {
    const pw = Math.ceil((width - x0) / dx)
    const ph = Math.ceil((height - y0) / dy)
    if (pw <= 0 || ph <= 0) continue
    const rowBytes = Math.ceil(pw * bitDepth / 8)
    const start = offset
    offset = unfilter(raw, offset, rowBytes, ph, bpp)
    for (let y = 0; y < ph; y++) {
      const row = start + y * (rowBytes + 1) + 1
      const oy = (y0 + y * dy) * width
      for (let x = 0; x < pw; x++) {
        let v: number
        if (bitDepth === 8) v = raw[row + x]
        else if (bitDepth === 16) v = (raw[row + 2 * x] << 8) | raw[row + 2 * x + 1]
        else {
          const bit = x * bitDepth
          v = (raw[row + (bit >> 3)] >> (8 - bitDepth - (bit & 7))) & ((1 << bitDepth) - 1)
        }
        out[oy + x0 + x * dx] = v
      }
    }
  }
  return { width, height, colourType, bitDepth, data: out, palette }
}

function chunk (type: string, data: Uint8Array): Buffer {
  const b = Buffer.alloc(12 + data.length)
  b.writeUInt32BE(data.length, 0)
  b.write(type, 4, 'latin1')
  b.set(data, 8)
  b.writeUInt32BE(crc32(b, 4, 8 + data.length), 8 + data.length)
  return b
}

/** Encodes one uint8 value per pixel as an 8-bit palette PNG (PASCAL VOC's mask format). */
export function encodeIndexedPng (indices: ArrayLike<number>, width: number, height: number, palette: ReadonlyArray<readonly [number, number, number]>): Buffer {
  if (indices.length !== width * height) throw new RangeError(`Expected ${width * height} indices for ${width}x${height} but received ${indices.length}`)
  if (palette.length < 1 || palette.length > 256) throw new RangeError(`Expected 1 to 256 palette colours but received ${palette.length}`)
  const ihdr = Buffer.alloc(13)
  ihdr.writeUInt32BE(width, 0)
  ihdr.writeUInt32BE(height, 4)
  ihdr[8] = 8
  ihdr[9] = 3
  const plte = Buffer.alloc(palette.length * 3)
  palette.forEach((c, i) => plte.set(c, i * 3))
  const raw = Buffer.alloc((width + 1) * height)
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) raw[y * (width + 1) + 1 + x] = indices[y * width + x]
  }
  return Buffer.concat([SIGNATURE, chunk('IHDR', ihdr), chunk('PLTE', plte), chunk('IDAT', zlib.deflateSync(raw)), chunk('IEND', new Uint8Array(0))])
}
