import * as assert from 'assert'
import * as fs from 'fs'
import * as path from 'path'
import * as zlib from 'zlib'
import { LimitError, PngError } from '../lib'
import { DataError, decodeImage, decodeIndexedPng, decodeMask, decodePng, DEFAULT_LIMIT_INPUT_PIXELS, folder, fromAsyncIterable } from '../lib/data'
import { rgbFile } from './data-fixtures'
import { rejects, tmpdir } from './helpers'

// A PNG writer of our own, independent of lib/data/png.ts, so that each forbidden variant is exact:
// chunks with correct CRCs (unless a test breaks one on purpose), scanlines written by hand.

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1
  return c >>> 0
})

function crc32 (b: Uint8Array): number {
  let c = 0xffffffff
  for (const x of b) c = CRC_TABLE[(c ^ x) & 0xff] ^ (c >>> 8)
  return (c ^ 0xffffffff) >>> 0
}

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])

function chunk (type: string, data: Uint8Array = Buffer.alloc(0), crc?: number): Buffer {
  const b = Buffer.alloc(12 + data.length)
  b.writeUInt32BE(data.length, 0)
  b.write(type, 4, 'latin1')
  b.set(data, 8)
  b.writeUInt32BE(crc ?? crc32(b.subarray(4, 8 + data.length)), 8 + data.length)
  return b
}

function ihdr (width: number, height: number, bitDepth: number, colourType: number, compression = 0, filter = 0, interlace = 0): Buffer {
  const d = Buffer.alloc(13)
  d.writeUInt32BE(width, 0)
  d.writeUInt32BE(height, 4)
  d.set([bitDepth, colourType, compression, filter, interlace], 8)
  return chunk('IHDR', d)
}

/** Non-interlaced scanlines (filter byte `filterType`, 0 unless given) packing `values` (samples) MSB first. */
function scanlines (width: number, height: number, bitDepth: number, channels: number, values: ArrayLike<number>, filterType = 0): Buffer {
  const rowBytes = Math.ceil(width * channels * bitDepth / 8)
  const raw = Buffer.alloc(height * (rowBytes + 1))
  for (let y = 0; y < height; y++) {
    const row = y * (rowBytes + 1)
    raw[row] = filterType
    for (let s = 0; s < width * channels; s++) {
      const v = values[y * width * channels + s]
      if (bitDepth === 16) raw.writeUInt16BE(v, row + 1 + 2 * s)
      else if (bitDepth === 8) raw[row + 1 + s] = v
      else {
        const bit = s * bitDepth
        raw[row + 1 + (bit >> 3)] |= v << (8 - bitDepth - (bit & 7))
      }
    }
  }
  return raw
}

function png (...chunks: Buffer[]): Buffer {
  return Buffer.concat([SIGNATURE, ...chunks])
}

const IEND = chunk('IEND')
const idat = (raw: Uint8Array): Buffer => chunk('IDAT', zlib.deflateSync(raw))
const plte = (n: number): Buffer => chunk('PLTE', Buffer.alloc(3 * n, 7))

/** A valid grey or palette PNG of `values` (one per pixel). */
function simple (w: number, h: number, bitDepth: number, colourType: 0 | 3, values: ArrayLike<number>, paletteSize = 1 << Math.min(8, bitDepth)): Buffer {
  return png(ihdr(w, h, bitDepth, colourType), ...(colourType === 3 ? [plte(paletteSize)] : []), idat(scanlines(w, h, bitDepth, 1, values)), IEND)
}

/**
 * A zlib stream of `n` zero bytes made without deflating them: one full-flush deflate block of
 * 1 MiB of zeros (about 1 KB, byte-aligned, no reference to earlier data) repeated, then the rest,
 * then an empty final block; the Adler-32 of n zeros is (n mod 65521) << 16 | 1.
 */
function zerosZlib (n: number): Buffer {
  const MiB = 1 << 20
  const block = zlib.deflateRawSync(Buffer.alloc(MiB), { finishFlush: zlib.constants.Z_FULL_FLUSH })
  const parts: Buffer[] = [Buffer.from([0x78, 0x9c])]
  for (let i = 0; i < Math.floor(n / MiB); i++) parts.push(block)
  if (n % MiB) parts.push(zlib.deflateRawSync(Buffer.alloc(n % MiB), { finishFlush: zlib.constants.Z_FULL_FLUSH }))
  parts.push(Buffer.from([0x03, 0x00])) // final fixed-Huffman block holding only end-of-block
  const adler = Buffer.alloc(4)
  adler.writeUInt32BE((((n % 65521) << 16) | 1) >>> 0)
  parts.push(adler)
  return Buffer.concat(parts)
}

/** An 8-bit grey PNG of w x h zeros whose image data inflates to `bytes` (default: exactly what w x h needs). */
function zerosPng (w: number, h: number, bytes = h * (w + 1)): Buffer {
  return png(ihdr(w, h, 8, 0), chunk('IDAT', zerosZlib(bytes)), IEND)
}

async function refused (buf: Buffer, pattern: RegExp, decode = decodeIndexedPng): Promise<void> {
  await rejects(decode(buf), PngError, pattern)
}

describe('mask PNGs: the decoder follows the PNG specification', () => {
  describe('valid files decode exactly', () => {
    for (const [bitDepth, colourType] of [[1, 0], [2, 0], [4, 0], [8, 0], [16, 0], [1, 3], [2, 3], [4, 3], [8, 3]] as const) {
      it(`grey / palette at every allowed depth: colour type ${colourType}, ${bitDepth}-bit, odd width 5`, async () => {
        const max = colourType === 3 ? Math.min(255, (1 << bitDepth) - 1) : (bitDepth === 16 ? 65535 : (1 << bitDepth) - 1)
        const values = Array.from({ length: 5 * 3 }, (_, i) => (i * 7919) % (max + 1))
        const out = await decodeIndexedPng(simple(5, 3, bitDepth, colourType, values))
        assert.deepStrictEqual([out.width, out.height, out.bitDepth, out.colourType], [5, 3, bitDepth, colourType])
        assert.deepStrictEqual(Array.from(out.data), values)
      })
    }

    it('RGB and grey + alpha masks decode through decodePng / decodeMask to labels', async () => {
      const rgb = png(ihdr(2, 1, 8, 2), idat(scanlines(2, 1, 8, 3, [3, 3, 3, 9, 9, 9])), IEND)
      assert.deepStrictEqual(Array.from((await decodePng(rgb)).data), [3, 3, 3, 9, 9, 9])
      assert.deepStrictEqual(Array.from((await decodeMask(rgb)).data), [3, 9])
      const ga = png(ihdr(2, 1, 16, 4), idat(scanlines(2, 1, 16, 2, [4, 65535, 200, 0])), IEND)
      assert.deepStrictEqual(Array.from((await decodeMask(ga)).data), [4, 200])
    })

    it('ancillary chunks (known or not) are skipped, CRC checked', async () => {
      const buf = png(ihdr(2, 1, 8, 0), chunk('tEXt', Buffer.from('k\0v')), chunk('zzZz', Buffer.from([1, 2])), idat(scanlines(2, 1, 8, 1, [1, 2])), chunk('tIME', Buffer.alloc(7)), IEND)
      assert.deepStrictEqual(Array.from((await decodeIndexedPng(buf)).data), [1, 2])
    })
  })

  describe('IHDR', () => {
    for (const depth of [0, 3, 5, 7, 9, 32]) {
      it(`refuses grey bit depth ${depth} with a PngError (was an all-zero mask or garbage)`, async () => {
        await refused(png(ihdr(4, 1, depth, 0), idat(Buffer.alloc(8)), IEND), new RegExp(`bit depth ${depth} for colour type 0`))
        await rejects(decodeMask(png(ihdr(4, 1, depth, 0), idat(Buffer.alloc(8)), IEND)), PngError, /bit depth/)
      })
    }

    it('refuses a 16-bit palette PNG (its value 257 became class 0)', async () => {
      const buf = png(ihdr(2, 1, 16, 3), plte(256), idat(scanlines(2, 1, 16, 1, [257, 1])), IEND)
      await refused(buf, /bit depth 16 for colour type 3/)
      await rejects(decodeMask(buf), PngError, /bit depth 16 for colour type 3/)
    })

    it('refuses every forbidden colour type / bit depth combination', async () => {
      for (const [depth, type] of [[1, 2], [4, 2], [2, 4], [4, 6], [1, 6], [16, 3], [8, 1], [8, 5], [8, 7]]) {
        await refused(png(ihdr(1, 1, depth, type), idat(Buffer.alloc(9)), IEND), /invalid PNG (bit depth|colour type)/, decodePng)
      }
    })

    it('refuses width or height 0 or above 2^31 - 1', async () => {
      for (const [w, h] of [[0, 4], [4, 0], [0x80000000, 1], [1, 0xffffffff]]) {
        await refused(png(ihdr(w, h, 8, 0), idat(Buffer.alloc(1)), IEND), /invalid PNG size/)
      }
    })

    it('refuses compression, filter and interlace methods the specification does not define', async () => {
      const raw = scanlines(1, 1, 8, 1, [0])
      await refused(png(ihdr(1, 1, 8, 0, 1), idat(raw), IEND), /compression method 1/)
      await refused(png(ihdr(1, 1, 8, 0, 0, 1), idat(raw), IEND), /filter method 1/)
      await refused(png(ihdr(1, 1, 8, 0, 0, 0, 2), idat(raw), IEND), /interlace method 2/)
    })

    it('refuses a missing, late, duplicate or wrongly sized IHDR', async () => {
      const raw = idat(scanlines(1, 1, 8, 1, [0]))
      await refused(png(raw, IEND), /first chunk is IDAT, not IHDR/)
      await refused(png(chunk('tEXt', Buffer.from('a\0b')), ihdr(1, 1, 8, 0), raw, IEND), /first chunk is tEXt/)
      await refused(png(ihdr(1, 1, 8, 0), ihdr(1, 1, 8, 0), raw, IEND), /more than one IHDR/)
      await refused(png(chunk('IHDR', Buffer.alloc(12)), raw, IEND), /IHDR chunk of 12 bytes/)
    })
  })

  describe('chunks', () => {
    const good = (): Buffer[] => [ihdr(3, 2, 8, 0), idat(scanlines(3, 2, 8, 1, [1, 2, 3, 4, 5, 6])), IEND]

    it('checks the CRC of every chunk, critical or ancillary', async () => {
      const [h, d] = good()
      for (const [i, type] of [[0, 'IHDR'], [1, 'IDAT'], [2, 'IEND']] as const) {
        const chunks = good().map((c) => Buffer.from(c)) // copies: IEND is shared
        chunks[i][chunks[i].length - 1] ^= 1
        await refused(png(...chunks), new RegExp(`bad CRC in ${type}`))
      }
      await refused(png(h, chunk('tEXt', Buffer.from('a\0b'), 1234), d, IEND), /bad CRC in tEXt/)
    })

    it('refuses a file cut anywhere (truncated chunk, no IEND)', async () => {
      const full = png(...good())
      for (let cut = 9; cut < full.length; cut += 3) await refused(full.subarray(0, cut), /truncated|bad CRC/)
      await refused(png(...good().slice(0, 2)), /no IEND/)
    })

    it('refuses a chunk length above 2^31 - 1, a bad chunk type, an unknown critical chunk and bytes after IEND', async () => {
      const [h, d] = good()
      const huge = chunk('tEXt', Buffer.alloc(4))
      huge.writeUInt32BE(0x80000000, 0)
      await refused(png(h, huge, d, IEND), /length 2147483648 exceeds 2\^31 - 1/)
      await refused(png(h, chunk('tE1t', Buffer.alloc(1)), d, IEND), /not four ASCII letters/)
      await refused(png(h, chunk('ABCD', Buffer.alloc(1)), d, IEND), /unknown critical chunk ABCD/)
      await refused(png(h, d, chunk('IEND', Buffer.alloc(1))), /IEND chunk of 1 bytes/)
      await refused(Buffer.concat([png(h, d, IEND), Buffer.from('junk')]), /4 bytes after the IEND/)
    })

    it('refuses a file without image data and IDAT chunks that are not consecutive', async () => {
      const raw = zlib.deflateSync(scanlines(3, 2, 8, 1, [1, 2, 3, 4, 5, 6]))
      await refused(png(ihdr(3, 2, 8, 0), IEND), /no image data/)
      const a = chunk('IDAT', raw.subarray(0, 5))
      const b = chunk('IDAT', raw.subarray(5))
      assert.deepStrictEqual(Array.from((await decodeIndexedPng(png(ihdr(3, 2, 8, 0), a, b, IEND))).data), [1, 2, 3, 4, 5, 6])
      await refused(png(ihdr(3, 2, 8, 0), a, chunk('tEXt', Buffer.from('a\0b')), b, IEND), /IDAT chunks are not consecutive/)
    })

    it('refuses image data that inflates to fewer or more bytes than the header implies', async () => {
      const rows = scanlines(3, 2, 8, 1, [1, 2, 3, 4, 5, 6])
      await refused(png(ihdr(3, 2, 8, 0), idat(rows.subarray(0, rows.length - 1)), IEND), /inflates to 7 bytes, fewer than the 8/)
      await refused(png(ihdr(3, 2, 8, 0), idat(Buffer.concat([rows, Buffer.alloc(1)])), IEND), /inflates to (9 bytes, )?more than the 8 bytes/)
      await refused(png(ihdr(3, 2, 8, 0), chunk('IDAT', zlib.deflateSync(rows).subarray(0, 6)), IEND), /corrupt or truncated PNG image data/)
    })

    it('refuses filter type bytes above 4, in any row', async () => {
      for (let f = 0; f <= 4; f++) await decodeIndexedPng(png(ihdr(2, 2, 8, 0), idat(scanlines(2, 2, 8, 1, [0, 0, 0, 0], f)), IEND))
      const rows = scanlines(2, 2, 8, 1, [1, 2, 3, 4])
      rows[3] = 5 // second row's filter byte
      await refused(png(ihdr(2, 2, 8, 0), idat(rows), IEND), /invalid filter type 5 in row 1/)
    })
  })

  describe('PLTE', () => {
    const raw = scanlines(2, 1, 8, 1, [0, 1])
    it('a palette image needs a PLTE before its IDAT; grey images must not have one', async () => {
      await refused(png(ihdr(2, 1, 8, 3), idat(raw), IEND), /palette image without a PLTE/)
      await refused(png(ihdr(2, 1, 8, 3), idat(raw), plte(2), IEND), /PLTE chunk after the image data|without a PLTE/)
      await refused(png(ihdr(2, 1, 8, 0), plte(2), idat(raw), IEND), /PLTE chunk in a grey image/)
      await refused(png(ihdr(2, 1, 8, 4), plte(2), idat(scanlines(2, 1, 8, 2, [0, 0, 0, 0])), IEND), /PLTE chunk in a grey image/, decodePng)
    })

    it('refuses a PLTE of 0 entries, a length not a multiple of 3, more than 2^depth or 256 entries, or two PLTEs', async () => {
      await refused(png(ihdr(2, 1, 8, 3), chunk('PLTE'), idat(raw), IEND), /PLTE chunk of 0 bytes/)
      await refused(png(ihdr(2, 1, 8, 3), chunk('PLTE', Buffer.alloc(7)), idat(raw), IEND), /PLTE chunk of 7 bytes/)
      await refused(png(ihdr(2, 1, 8, 3), chunk('PLTE', Buffer.alloc(3 * 257)), idat(raw), IEND), /PLTE chunk of 771 bytes/)
      await refused(png(ihdr(2, 1, 1, 3), plte(3), idat(scanlines(2, 1, 1, 1, [0, 1])), IEND), /3 palette entries for a 1-bit palette image/)
      await refused(png(ihdr(2, 1, 8, 3), plte(2), plte(2), idat(raw), IEND), /more than one PLTE/)
    })

    it('refuses palette indices past the palette (values that no colour, and no class, stands for)', async () => {
      await refused(simple(2, 1, 8, 3, [0, 2], 2), /pixel \(1, 0\) has palette index 2 but the palette has 2 entries/)
      await refused(simple(3, 1, 4, 3, [1, 0, 15], 15), /palette index 15 but the palette has 15 entries/)
    })
  })

  describe('labels', () => {
    it('refuses 16-bit grey labels above 255 (they do not fit the class table)', async () => {
      await rejects(decodeMask(simple(2, 1, 16, 0, [3, 257])), PngError, /label 257 at pixel \(1, 0\).*above 255/)
    })

    it('a data set refuses mask values outside its classes, wide or not', async () => {
      const dir = tmpdir('segtorch-png-')
      fs.mkdirSync(path.join(dir, 'images'))
      fs.mkdirSync(path.join(dir, 'masks'))
      await rgbFile(path.join(dir, 'images', 'a.png'), 2, 1)
      await rgbFile(path.join(dir, 'images', 'b.png'), 2, 1)
      fs.writeFileSync(path.join(dir, 'masks', 'a.png'), simple(2, 1, 8, 3, [1, 4], 8))
      fs.writeFileSync(path.join(dir, 'masks', 'b.png'), simple(2, 1, 16, 0, [1, 256]))
      const ds = folder({ images: path.join(dir, 'images'), masks: path.join(dir, 'masks'), classes: 3 })
      await rejects(ds.get(0), DataError, /mask value 4 at pixel \(1, 0\) is not a label/)
      const err = await rejects(ds.get(1), DataError, /label 256/)
      assert.ok((err as { cause?: unknown }).cause instanceof PngError)
    })
  })
})

describe('image size limits (limitInputPixels)', () => {
  it('a 1 MB 32768 x 32768 mask PNG (a real deflate bomb: 1 GB of zeros) fails in < 1 s from its header, with a LimitError', async () => {
    const bomb = zerosPng(32768, 32768)
    assert.ok(bomb.length < 1.5e6, `${bomb.length} bytes`)
    const t0 = performance.now()
    const err = await rejects(decodeMask(bomb), LimitError, /32768x32768 = 1073741824 pixels exceeds limitInputPixels \(268402689\)/)
    assert.ok(performance.now() - t0 < 1000, `${performance.now() - t0} ms`)
    assert.strictEqual((err as LimitError).limit, DEFAULT_LIMIT_INPUT_PIXELS)
    assert.strictEqual((err as LimitError).code, 'ERR_SEGTORCH_LIMIT')
    await rejects(decodeIndexedPng(bomb), LimitError, /exceeds limitInputPixels/)
  })

  it('the bomb construction is a valid PNG: the same stream at 64 x 64 decodes to zeros', async () => {
    const out = await decodeIndexedPng(zerosPng(64, 64))
    assert.strictEqual(out.data.length, 4096)
    assert.ok(out.data.every((x) => x === 0))
  })

  it('inflating is bounded by the header: a 64 x 64 PNG whose IDAT inflates to 1 GB fails fast without allocating it', async () => {
    const bomb = zerosPng(64, 64, 1 << 30)
    const rss0 = process.memoryUsage().rss
    const t0 = performance.now()
    await refused(bomb, /inflates to more than the 4160 bytes/)
    assert.ok(performance.now() - t0 < 1000, `${performance.now() - t0} ms`)
    assert.ok(process.memoryUsage().rss - rss0 < 200e6, `RSS grew by ${(process.memoryUsage().rss - rss0) / 1e6} MB`)
  })

  it('is configurable on every decoder: a number of pixels, true (the default) or false (none)', async () => {
    const small = simple(20, 10, 8, 0, new Array(200).fill(1))
    await rejects(decodeMask(small, { limitInputPixels: 199 }), LimitError, /20x10 = 200 pixels exceeds limitInputPixels \(199\)/)
    assert.strictEqual((await decodeMask(small, { limitInputPixels: 200 })).data.length, 200)
    assert.strictEqual((await decodeMask(small, { limitInputPixels: false })).data.length, 200)
    assert.strictEqual((await decodeIndexedPng(small, { limitInputPixels: true })).data.length, 200)
    await rejects(decodeIndexedPng(small, { limitInputPixels: 10 }), LimitError, /exceeds/)
    const dir = tmpdir('segtorch-limit-')
    const file = await rgbFile(path.join(dir, 'x.png'), 20, 10)
    const bytes = fs.readFileSync(file)
    await rejects(decodeImage(bytes, 3, { limitInputPixels: 199 }), LimitError, /20x10 = 200 pixels exceeds limitInputPixels \(199\)/)
    await rejects(decodeImage(file, 3, { limitInputPixels: 199 }), LimitError, /exceeds limitInputPixels/)
    assert.strictEqual((await decodeImage(bytes, 3, { limitInputPixels: 200 })).width, 20)
  })

  it('sharp-decoded images (photographs) have the same default: a 32768 x 32768 PNG image is a LimitError in < 1 s', async () => {
    const t0 = performance.now()
    await rejects(decodeImage(zerosPng(32768, 32768), 1), LimitError, /32768x32768 = 1073741824 pixels exceeds limitInputPixels \(268402689\)/)
    assert.ok(performance.now() - t0 < 1000, `${performance.now() - t0} ms`)
  })

  it('data sets take limitInputPixels; a larger sample is a DataError caused by a LimitError', async () => {
    const dir = tmpdir('segtorch-limit-')
    fs.mkdirSync(path.join(dir, 'images'))
    fs.mkdirSync(path.join(dir, 'masks'))
    await rgbFile(path.join(dir, 'images', 'a.png'), 8, 8)
    fs.writeFileSync(path.join(dir, 'masks', 'a.png'), simple(8, 8, 8, 0, new Array(64).fill(1)))
    const ds = folder({ images: path.join(dir, 'images'), masks: path.join(dir, 'masks'), classes: 2, limitInputPixels: 63 })
    const err = await rejects(ds.get(0), DataError, /a\.png: .*8x8 = 64 pixels exceeds limitInputPixels \(63\)/)
    assert.ok((err as { cause?: unknown }).cause instanceof LimitError)
    const ok = folder({ images: path.join(dir, 'images'), masks: path.join(dir, 'masks'), classes: 2, limitInputPixels: 64 })
    assert.strictEqual((await ok.get(0)).mask?.length, 64)
  })

  it('rejects a limitInputPixels that is not a count, true or false', async () => {
    const buf = simple(1, 1, 8, 0, [0])
    await rejects(decodeMask(buf, { limitInputPixels: -1 }), RangeError, /Expected a positive integer .* for limitInputPixels but received -1/)
    await rejects(decodeMask(buf, { limitInputPixels: '9' as unknown as number }), TypeError, /for limitInputPixels but received '9'/)
    assert.throws(() => fromAsyncIterable([], { classes: 2, limitInputPixels: 1.5 }), TypeError)
  })
})

describe('decodeMask on PNGs cut short', () => {
  it('is a PngError saying the file is truncated', async () => {
    const full = simple(3, 2, 8, 0, [1, 2, 3, 4, 5, 6])
    await rejects(decodeMask(full.subarray(0, full.length - 5)), PngError, /truncated PNG \(7 bytes after the last chunk/)
    await rejects(decodeMask(full.subarray(0, full.length - 14)), PngError, /truncated PNG \(IDAT chunk of \d+ bytes runs past the end of the file\)/)
    await rejects(decodeMask(full.subarray(0, full.length - 12)), PngError, /truncated PNG \(no IEND chunk\)/)
  })
})
