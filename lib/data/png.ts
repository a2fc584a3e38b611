/**
 * A small PNG codec for label images, where decoders built for photographs go wrong: a
 * palette-indexed PNG (PASCAL VOC's masks) must give its palette indices, not RGB, and a 1-, 2- or
 * 4-bit grey PNG its raw values, not values stretched to 0..255.
 *
 * Masks come from strangers: the decoder refuses everything the PNG specification (ISO/IEC 15948,
 * W3C PNG 2nd edition) forbids, with a PngError naming the rule, checks every chunk's CRC, refuses
 * images larger than `limitInputPixels` from the header before it allocates or inflates anything,
 * and inflates with a bound of exactly the bytes the header implies.
 */
import { promisify } from 'util'
import * as zlib from 'zlib'
import { constants as bufferConstants } from 'buffer'
import { LimitError, PngError, rangeError, typeError } from '../errors'

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

/**
 * sharp's default for `limitInputPixels`: 0x3FFF x 0x3FFF = 268,402,689 pixels (a 16383 x 16383
 * image; 268 MB for one uint8 channel).
 */
export const DEFAULT_LIMIT_INPUT_PIXELS = 0x3fff * 0x3fff

/**
 * Resolves a `limitInputPixels` option as sharp does: `true` or undefined: the default
 * (268402689); a positive integer: that many pixels; `false` or 0: no limit (Infinity).
 */
export function resolveLimitInputPixels (value: unknown, name = 'limitInputPixels'): number {
  if (value === undefined || value === true) return DEFAULT_LIMIT_INPUT_PIXELS
  if (value === false || value === 0) return Infinity
  if (typeof value !== 'number' || !Number.isInteger(value)) throw typeError(name, 'a positive integer (pixels), true (the default limit) or false (no limit)', value)
  if (value < 0 || value > Number.MAX_SAFE_INTEGER) throw rangeError(name, 'a positive integer (pixels), true (the default limit) or false (no limit)', value)
  return value
}

/** The error for an image of `width` x `height` over `limit` pixels. */
export function pixelLimitError (width: number, height: number, limit: number, what = 'image'): LimitError {
  const pixels = width * height
  return new LimitError(`${what} of ${width}x${height} = ${pixels} pixels exceeds limitInputPixels (${limit}): ` +
    'pass a larger limitInputPixels (or false for none) to read it', limit, pixels)
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
  /** 0 grey, 3 palette (decodeIndexedPng refuses others; decodePng also gives 2 RGB, 4 grey + alpha, 6 RGBA). */
  colourType: number
  bitDepth: number
  /** Samples per pixel: 1 (grey, palette), 2 (grey + alpha), 3 (RGB), 4 (RGBA). */
  channels: number
  /** The samples, interleaved: palette indices or grey values for 1 channel (Uint16Array for 16-bit). */
  data: Uint8Array | Uint16Array
  /** PLTE entries as [r, g, b], for palette images. */
  palette?: Array<[number, number, number]>
}

export interface PngDecodeOptions {
  /** Largest width x height accepted (checked from the header); true: 268402689 (sharp's default), false or 0: none. */
  limitInputPixels?: number | boolean
}

// Allowed bit depths per colour type, and samples per pixel (PNG specification, table 11.1).
const DEPTHS: Record<number, readonly number[]> = { 0: [1, 2, 4, 8, 16], 2: [8, 16], 3: [1, 2, 4, 8], 4: [8, 16], 6: [8, 16] }
const CHANNELS: Record<number, number> = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 }

// Adam7 passes: x0, y0, dx, dy
const ADAM7 = [[0, 0, 8, 8], [4, 0, 8, 8], [0, 4, 4, 8], [2, 0, 4, 4], [0, 2, 2, 4], [1, 0, 2, 2], [0, 1, 1, 2]]

interface PngLayout {
  width: number
  height: number
  bitDepth: number
  colourType: number
  interlace: number
  channels: number
  palette?: Array<[number, number, number]>
  idat: Buffer[]
  /** Bytes the scanlines take once inflated (filter bytes included). */
  expected: number
}

function passesOf (width: number, height: number, interlace: number): Array<{ x0: number, y0: number, dx: number, dy: number, pw: number, ph: number }> {
  const out = []
  for (const [x0, y0, dx, dy] of interlace === 1 ? ADAM7 : [[0, 0, 1, 1]]) {
    const pw = Math.ceil((width - x0) / dx)
    const ph = Math.ceil((height - y0) / dy)
    if (pw > 0 && ph > 0) out.push({ x0, y0, dx, dy, pw, ph })
  }
  return out
}

function rowBytesOf (pw: number, bitDepth: number, channels: number): number {
  return Math.ceil(pw * bitDepth * channels / 8)
}

/**
 * Walks the chunks and checks everything the specification requires of them, without inflating:
 * signature, chunk lengths (at most 2^31 - 1) and type codes, every CRC, IHDR first and once with
 * valid fields, PLTE rules, consecutive IDATs, IEND last and empty, no unknown critical chunk.
 * The pixel limit is checked as soon as IHDR is read.
 */
function layout (buf: Uint8Array, limit: number): PngLayout {
  if (!isPng(buf)) throw new PngError('not a PNG file (bad signature)')
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.length)
  let pos = 8
  let ihdr: Omit<PngLayout, 'idat' | 'expected' | 'palette'> | undefined
  let palette: Array<[number, number, number]> | undefined
  const idat: Buffer[] = []
  let idatDone = false
  let previous = ''
  for (let index = 0; ; index++) {
    if (pos === b.length) throw new PngError('truncated PNG (no IEND chunk)')
    if (pos + 12 > b.length) throw new PngError(`truncated PNG (${b.length - pos} bytes after the last chunk, too few for a chunk)`)
    const len = b.readUInt32BE(pos)
    const typeBytes = b.subarray(pos + 4, pos + 8)
    const type = typeBytes.toString('latin1')
    if (!typeBytes.every((c) => (c >= 65 && c <= 90) || (c >= 97 && c <= 122))) {
      throw new PngError(`corrupt PNG: chunk type ${JSON.stringify(type)} at byte ${pos + 4} is not four ASCII letters`)
    }
    if (len > 0x7fffffff) throw new PngError(`corrupt PNG: ${type} chunk length ${len} exceeds 2^31 - 1`)
    const data = pos + 8
    if (data + len + 4 > b.length) throw new PngError(`truncated PNG (${type} chunk of ${len} bytes runs past the end of the file)`)
    if (crc32(b, pos + 4, data + len) !== b.readUInt32BE(data + len)) throw new PngError(`corrupt PNG (bad CRC in ${type} chunk at byte ${pos})`)
    pos = data + len + 4
    if (index === 0 && type !== 'IHDR') throw new PngError(`corrupt PNG: the first chunk is ${type}, not IHDR`)
    if (previous === 'IDAT' && type !== 'IDAT') idatDone = true
    previous = type
    if (type === 'IHDR') {
      if (index !== 0) throw new PngError('corrupt PNG: more than one IHDR chunk')
      if (len !== 13) throw new PngError(`corrupt PNG: IHDR chunk of ${len} bytes (expected 13)`)
      const width = b.readUInt32BE(data)
      const height = b.readUInt32BE(data + 4)
      const [bitDepth, colourType, compression, filter, interlace] = b.subarray(data + 8, data + 13)
      if (width < 1 || width > 0x7fffffff || height < 1 || height > 0x7fffffff) {
        throw new PngError(`invalid PNG size ${width}x${height} (width and height must be 1 to 2^31 - 1)`)
      }
      const depths = DEPTHS[colourType]
      if (depths === undefined) throw new PngError(`invalid PNG colour type ${colourType} (allowed: 0, 2, 3, 4, 6)`)
      if (!depths.includes(bitDepth)) throw new PngError(`invalid PNG bit depth ${bitDepth} for colour type ${colourType} (allowed: ${depths.join(', ')})`)
      if (compression !== 0) throw new PngError(`invalid PNG compression method ${compression} (only 0, deflate, is defined)`)
      if (filter !== 0) throw new PngError(`invalid PNG filter method ${filter} (only 0 is defined)`)
      if (interlace > 1) throw new PngError(`invalid PNG interlace method ${interlace} (0 none or 1 Adam7)`)
      if (width * height > limit) throw pixelLimitError(width, height, limit, 'PNG image')
      ihdr = { width, height, bitDepth, colourType, interlace, channels: CHANNELS[colourType] }
    } else if (type === 'PLTE') {
      const h = ihdr as NonNullable<typeof ihdr>
      if (palette !== undefined) throw new PngError('corrupt PNG: more than one PLTE chunk')
      if (idat.length > 0) throw new PngError('corrupt PNG: PLTE chunk after the image data (IDAT)')
      if (h.colourType === 0 || h.colourType === 4) throw new PngError(`corrupt PNG: PLTE chunk in a grey image (colour type ${h.colourType})`)
      if (len === 0 || len % 3 !== 0 || len / 3 > 256) throw new PngError(`corrupt PNG: PLTE chunk of ${len} bytes (expected 1 to 256 entries of 3 bytes)`)
      if (h.colourType === 3 && len / 3 > 1 << h.bitDepth) throw new PngError(`corrupt PNG: ${len / 3} palette entries for a ${h.bitDepth}-bit palette image (at most ${1 << h.bitDepth})`)
      palette = []
      for (let i = 0; i < len; i += 3) palette.push([b[data + i], b[data + i + 1], b[data + i + 2]])
    } else if (type === 'IDAT') {
      if (idatDone) throw new PngError('corrupt PNG: IDAT chunks are not consecutive')
      if ((ihdr as NonNullable<typeof ihdr>).colourType === 3 && palette === undefined) throw new PngError('corrupt PNG: palette image without a PLTE chunk before its image data')
      idat.push(b.subarray(data, data + len))
    } else if (type === 'IEND') {
      if (len !== 0) throw new PngError(`corrupt PNG: IEND chunk of ${len} bytes (expected 0)`)
      if (pos !== b.length) throw new PngError(`corrupt PNG: ${b.length - pos} bytes after the IEND chunk`)
      break
    } else if (typeBytes[0] < 97) {
      throw new PngError(`unsupported PNG: unknown critical chunk ${type} (a decoder must not ignore it)`)
    }
  }
  const h = ihdr as NonNullable<typeof ihdr>
  if (idat.length === 0) throw new PngError('corrupt PNG: no image data (IDAT chunk)')
  let expected = 0
  for (const p of passesOf(h.width, h.height, h.interlace)) expected += p.ph * (1 + rowBytesOf(p.pw, h.bitDepth, h.channels))
  return { ...h, palette, idat, expected }
}

function paeth (a: number, b: number, c: number): number {
  const p = a + b - c
  const pa = Math.abs(p - a)
  const pb = Math.abs(p - b)
  const pc = Math.abs(p - c)
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c
}

/** Undoes the scanline filters of one (sub)image in place; returns the offset after it. */
function unfilter (raw: Uint8Array, offset: number, rowBytes: number, rows: number, bpp: number, pass: number): number {
  let prev = -1
  for (let y = 0; y < rows; y++) {
    const f = raw[offset]
    const row = offset + 1
    if (f > 4) throw new PngError(`corrupt PNG: invalid filter type ${f} in row ${y}${pass >= 0 ? ` of interlace pass ${pass + 1}` : ''} (0 to 4)`)
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
        default: v += paeth(a, b, c)
      }
      raw[row + i] = v & 0xff
    }
    prev = row
    offset = row + rowBytes
  }
  return offset
}

/**
 * Decodes any valid PNG (every colour type and bit depth, interlaced or not) to its raw samples,
 * never converted: palette indices for palette images, grey or RGB(A) values at their own bit depth
 * (16-bit in a Uint16Array). A file that breaks the specification is a PngError; one over
 * `limitInputPixels` a LimitError, raised before anything is inflated.
 */
export async function decodePng (buf: Uint8Array, options: PngDecodeOptions = {}): Promise<DecodedPng> {
  return decodeLayout(layout(buf, resolveLimitInputPixels(options.limitInputPixels)))
}

async function decodeLayout (png: PngLayout): Promise<DecodedPng> {
  const { width, height, bitDepth, colourType, channels, palette } = png
  const samples = width * height * channels
  // Bounds: inflated bytes and output samples must fit in a buffer (only reachable with no pixel limit).
  if (png.expected + 1 > bufferConstants.MAX_LENGTH || samples > bufferConstants.MAX_LENGTH / 2) {
    throw new LimitError(`PNG image of ${width}x${height} is too large to decode in one buffer`, bufferConstants.MAX_LENGTH, png.expected)
  }
  let raw: Uint8Array
  try {
    // One byte more than the scanlines need: reaching it means the data is too long.
    raw = await inflate(Buffer.concat(png.idat), { maxOutputLength: png.expected + 1 })
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') {
      throw new PngError(`corrupt PNG: the image data inflates to more than the ${png.expected} bytes that ${width}x${height} at ${bitDepth} bits x ${channels} channels takes`)
    }
    throw new PngError(`corrupt or truncated PNG image data (zlib: ${(err as Error).message})`)
  }
  if (raw.length !== png.expected) {
    throw new PngError(`corrupt PNG: the image data inflates to ${raw.length} bytes, ${raw.length < png.expected ? 'fewer' : 'more'} than the ${png.expected} bytes that ${width}x${height} at ${bitDepth} bits x ${channels} channels takes`)
  }
  const out = bitDepth === 16 ? new Uint16Array(samples) : new Uint8Array(samples)
  const bpp = Math.max(1, (bitDepth * channels) >> 3)
  const passes = passesOf(width, height, png.interlace)
  const entries = palette?.length ?? 0
  let offset = 0
  for (const [k, { x0, y0, dx, dy, pw, ph }] of passes.entries()) {
    const rowBytes = rowBytesOf(pw, bitDepth, channels)
    const start = offset
    offset = unfilter(raw, offset, rowBytes, ph, bpp, png.interlace === 1 ? k : -1)
    const n = pw * channels
    for (let y = 0; y < ph; y++) {
      const row = start + y * (rowBytes + 1) + 1
      const oy = (y0 + y * dy) * width
      for (let s = 0; s < n; s++) {
        let v: number
        if (bitDepth === 8) v = raw[row + s]
        else if (bitDepth === 16) v = (raw[row + 2 * s] << 8) | raw[row + 2 * s + 1]
        else {
          const bit = s * bitDepth
          v = (raw[row + (bit >> 3)] >> (8 - bitDepth - (bit & 7))) & ((1 << bitDepth) - 1)
        }
        const x = Math.floor(s / channels)
        if (colourType === 3 && v >= entries) {
          throw new PngError(`corrupt PNG: pixel (${x0 + x * dx}, ${y0 + y * dy}) has palette index ${v} but the palette has ${entries} entries`)
        }
        out[(oy + x0 + x * dx) * channels + (s % channels)] = v
      }
    }
  }
  return { width, height, colourType, bitDepth, channels, data: out, palette }
}

/**
 * Decodes a grey (any bit depth) or palette PNG to one value per pixel: palette indices, never
 * colours. Everything the PNG specification forbids is a PngError saying which rule; an image over
 * `limitInputPixels` (default 268402689 pixels) is a LimitError, raised from the header.
 */
export async function decodeIndexedPng (buf: Uint8Array, options: PngDecodeOptions = {}): Promise<DecodedPng> {
  const limit = resolveLimitInputPixels(options.limitInputPixels)
  const h = layout(buf, limit)
  if (h.colourType !== 0 && h.colourType !== 3) throw new PngError(`PNG colour type ${h.colourType} is not grey or palette`)
  return decodeLayout(h)
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
    for (let x = 0; x < width; x++) {
      const k = indices[y * width + x]
      // PNG forbids indices past the palette (and decodeIndexedPng refuses them)
      if (!(k >= 0 && k < palette.length && Number.isInteger(k))) throw new RangeError(`Expected indices 0..${palette.length - 1} (one per palette colour) but received ${k} at pixel (${x}, ${y})`)
      raw[y * (width + 1) + 1 + x] = k
    }
  }
  return Buffer.concat([SIGNATURE, chunk('IHDR', ihdr), chunk('PLTE', plte), chunk('IDAT', zlib.deflateSync(raw)), chunk('IEND', new Uint8Array(0))])
}
