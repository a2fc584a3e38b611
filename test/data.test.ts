import * as assert from 'assert'
import { spawnSync } from 'child_process'
import * as fs from 'fs'
import * as path from 'path'
import sharp from 'sharp'
import * as root from '../lib'
import {
  ade20k, ADE20K_CLASSES, camvid, cityscapes, DataError, decodeDepth, decodeImage, decodeIndexedPng, decodeMask, folder, fromAsyncIterable, readImage, voc, VOC_PALETTE
} from '../lib/data'
import { ImageError, PngError, SegtorchError } from '../lib/errors'
import { greyPng, labels, palettePng, rgbFile, rgbPixels, write } from './data-fixtures'
import { ROOT, tmpdir } from './helpers'

const CAMVID = path.join(ROOT, '..', 'shared', 'data', 'camvid')

async function rejectsData (p: Promise<unknown>, file: RegExp, reason: RegExp): Promise<DataError> {
  try {
    await p
  } catch (err) {
    assert.ok(err instanceof DataError, `expected a DataError but got ${(err as Error)?.constructor?.name}: ${(err as Error)?.message}`)
    assert.match(err.file, file)
    assert.match(err.reason, reason)
    assert.ok(err.message.startsWith(err.file), 'the message starts with the file')
    return err
  }
  assert.fail('expected a DataError')
}

describe('data sets', () => {
  let dir: string
  before(() => { dir = tmpdir('segtorch-data-') })
  after(() => fs.rmSync(dir, { recursive: true, force: true }))

  describe('decoding', () => {
    it('a palette-indexed PNG gives its palette indices, never RGB (hand-built, 8-bit)', async () => {
      const idx = labels(7, 5, 21)
      idx[0] = 255 // the VOC border colour
      const file = palettePng(path.join(dir, 'pal8.png'), idx, 7, 5, [...VOC_PALETTE, ...Array(235).fill([224, 224, 192])])
      const m = await decodeMask(fs.readFileSync(file))
      assert.deepStrictEqual([m.width, m.height, m.channels], [7, 5, 1])
      assert.deepStrictEqual(Array.from(m.data), Array.from(idx))
      // sharp alone would give colours: that is what we must not return
      const { info } = await sharp(file).raw().toBuffer({ resolveWithObject: true })
      assert.strictEqual(info.channels, 3)
    })

    it('a palette PNG written by sharp (2-bit, quantised) gives indices whose palette colours are the pixels', async () => {
      const w = 9
      const h = 4
      const colours = [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0]]
      const rgb = Buffer.alloc(w * h * 3)
      const truth = labels(w, h, 4, 5)
      truth.forEach((k, i) => rgb.set(colours[k], i * 3))
      const buf = await sharp(rgb, { raw: { width: w, height: h, channels: 3 } }).png({ palette: true, colours: 4, dither: 0 }).toBuffer()
      assert.strictEqual(buf[25], 3, 'sharp wrote a palette PNG')
      const png = await decodeIndexedPng(buf)
      const m = await decodeMask(buf)
      assert.ok(m.data.every((x) => x < 4), 'values are indices < 4')
      m.data.forEach((x, i) => assert.deepStrictEqual(png.palette?.[x], colours[truth[i]]))
    })

    it('interlaced (Adam7) palette PNGs decode to the same indices', async () => {
      const w = 13
      const h = 11
      const colours = [[10, 20, 30], [200, 0, 0], [0, 200, 0], [0, 0, 200], [90, 90, 90]]
      const truth = labels(w, h, 5, 9)
      const rgb = Buffer.alloc(w * h * 3)
      truth.forEach((k, i) => rgb.set(colours[k], i * 3))
      const buf = await sharp(rgb, { raw: { width: w, height: h, channels: 3 } }).png({ palette: true, colours: 8, dither: 0, progressive: true }).toBuffer()
      assert.strictEqual(buf[28], 1, 'interlaced')
      const png = await decodeIndexedPng(buf)
      png.data.forEach((x, i) => assert.deepStrictEqual(png.palette?.[x], colours[truth[i]]))
    })

    it('grey masks keep their values; RGB masks with equal channels too; other RGB masks are refused', async () => {
      const vals = Uint8Array.from([0, 1, 2, 3, 11, 255])
      const g = await decodeMask(fs.readFileSync(await greyPng(path.join(dir, 'g.png'), vals, 6, 1)))
      assert.deepStrictEqual(Array.from(g.data), Array.from(vals))
      // sharp writes 1-channel raw input as RGB: equal channels are read back as the value
      const asRgb = await sharp(Buffer.from(vals), { raw: { width: 6, height: 1, channels: 1 } }).png().toBuffer()
      assert.strictEqual(asRgb[25], 2)
      assert.deepStrictEqual(Array.from((await decodeMask(asRgb)).data), Array.from(vals))
      const colour = await sharp(rgbPixels(4, 4), { raw: { width: 4, height: 4, channels: 3 } }).png().toBuffer()
      await assert.rejects(decodeMask(colour), /RGB mask .*expected class indices/)
    })

    it('16-bit grey masks keep values up to 255 and refuse larger ones; 16-bit depth is scaled', async () => {
      const ok = await sharp(Uint16Array.from([0, 5, 255, 7]), { raw: { width: 4, height: 1, channels: 1 } }).toColourspace('grey16').png().toBuffer()
      assert.deepStrictEqual([ok[24], ok[25]], [16, 0])
      assert.deepStrictEqual(Array.from((await decodeMask(ok)).data), [0, 5, 255, 7])
      const big = await sharp(Uint16Array.from([0, 300, 1, 2]), { raw: { width: 4, height: 1, channels: 1 } }).toColourspace('grey16').png().toBuffer()
      await assert.rejects(decodeMask(big), /label 300 at pixel \(1, 0\)/)
      const d = await decodeDepth(Buffer.from(big), 0.001)
      assert.deepStrictEqual(Array.from(d.data).map((x) => Math.round(x * 1000)), [0, 300, 1, 2])
    })

    it('image data that cannot be decoded or used is an ImageError (PngError for PNG rules), with its code and file', async () => {
      const image = async (p: Promise<unknown>, message: RegExp, type: Function = ImageError): Promise<ImageError> => {
        const err = await p.then(() => undefined, (e: unknown) => e)
        assert.ok(err instanceof type, `expected a ${type.name} but got ${(err as Error)?.constructor?.name}: ${(err as Error)?.message}`)
        assert.ok(err instanceof ImageError && err instanceof SegtorchError)
        assert.match(err.message, message)
        assert.strictEqual(err.code, type === PngError ? 'ERR_SEGTORCH_PNG' : 'ERR_SEGTORCH_IMAGE')
        assert.strictEqual(err.name, type.name)
        return err
      }
      const junk = Buffer.from('not an image at all')
      const jpeg = fs.readFileSync(await rgbFile(path.join(dir, 'err.jpeg'), 8, 8, 3, 'jpeg'))
      const png = fs.readFileSync(await rgbFile(path.join(dir, 'err.png'), 8, 8, 3))
      // Not an image, empty, cut short: each decoder.
      await image(decodeImage(junk), /^Input buffer contains unsupported image format$/)
      await image(decodeImage(Buffer.alloc(0)), /^empty image data \(0 bytes\)$/)
      await image(decodeImage(jpeg.subarray(0, jpeg.length - 40)), /^truncated JPEG \(no end-of-image marker\)$/)
      await image(decodeImage(png.subarray(0, png.length - 8)), /^truncated PNG \(no IEND chunk at the end\)$/)
      await image(decodeMask(junk), /unsupported image format/)
      await image(decodeMask(Buffer.alloc(0)), /^empty image data \(0 bytes\)$/)
      await image(decodeMask(png.subarray(0, png.length - 8)), /^truncated PNG/, PngError)
      await image(decodeDepth(junk), /unsupported image format/)
      await image(decodeDepth(jpeg.subarray(0, jpeg.length - 40)), /^truncated JPEG/)
      // Decodable, but not usable as a mask or a depth map.
      await image(decodeMask(png), /RGB mask with colour rgb\(.*expected class indices/)
      await image(decodeMask(png, { colours: new Map([[0, 0]]) }), /is not in the colour map/)
      await image(decodeDepth(png), /^depth image with 3 channels: expected a single-channel \(grey\) image$/)
      // A file: the message starts with its path, which the error also carries.
      const bad = write(path.join(dir, 'bad-image.jpg'), junk)
      const err = await image(readImage(bad), /unsupported image format/)
      assert.strictEqual(err.file, bad)
      assert.ok(err.message.startsWith(`${bad}: `), err.message)
      assert.strictEqual((await image(decodeImage(bad), /unsupported image format/)).file, bad)
      // The same class from the package's entry point.
      assert.strictEqual(root.ImageError, ImageError)
      assert.ok(Object.getPrototypeOf(root.PngError) === ImageError)
    })

    it('JPEG, WebP and TIFF images decode to RGB', async () => {
      for (const f of ['jpeg', 'webp', 'tiff'] as const) {
        const file = await rgbFile(path.join(dir, `fmt.${f}`), 5, 3, 1, f)
        const s = await fromAsyncIterable([{ image: fs.readFileSync(file) }], { classes: 2 })[Symbol.asyncIterator]().next()
        assert.deepStrictEqual([s.value.width, s.value.height, s.value.channels, s.value.image.length], [5, 3, 3, 45])
      }
    })
  })

  describe('folder()', () => {
    let images: string
    let masks: string
    before(async () => {
      images = path.join(dir, 'f', 'images')
      masks = path.join(dir, 'f', 'masks')
      await rgbFile(path.join(images, 'a.png'), 6, 4, 1)
      await rgbFile(path.join(images, 'sub', 'b.jpg'), 6, 4, 2, 'jpeg')
      await greyPng(path.join(masks, 'a_mask.png'), labels(6, 4, 3), 6, 4)
      palettePng(path.join(masks, 'sub', 'b_mask.png'), labels(6, 4, 3, 7), 6, 4, VOC_PALETTE.slice(0, 3))
    })

    it('pairs images and masks by relative stem, with HWC pixels, labels, classes and palette', async () => {
      const ds = folder({ images, masks, classes: ['bg', 'cell', 'edge'], maskSuffix: '_mask' })
      assert.strictEqual(ds.length, 2)
      assert.deepStrictEqual(ds.classes, ['bg', 'cell', 'edge'])
      assert.strictEqual(ds.palette.length, 3)
      assert.strictEqual(ds.ignoreIndex, 255)
      const a = await ds.get(0)
      assert.strictEqual(a.file, path.join(images, 'a.png'))
      assert.deepStrictEqual([a.width, a.height, a.channels, a.image.length], [6, 4, 3, 72])
      assert.deepStrictEqual(Array.from(a.image), Array.from(rgbPixels(6, 4, 1)), 'interleaved height x width x channels, lossless')
      assert.deepStrictEqual(Array.from(a.mask ?? []), Array.from(labels(6, 4, 3)))
      const b = await ds.get(1)
      assert.strictEqual(b.file, path.join(images, 'sub', 'b.jpg'))
      assert.deepStrictEqual(Array.from(b.mask ?? []), Array.from(labels(6, 4, 3, 7)), 'palette mask read as indices')
      await assert.rejects(ds.get(2), RangeError)
    })

    it('one folder for images and masks: masks (by suffix) are not images', async () => {
      const d = path.join(dir, 'same')
      await rgbFile(path.join(d, 'x.png'), 3, 2)
      await greyPng(path.join(d, 'x_mask.png'), Uint8Array.from([0, 1, 1, 0, 1, 0]), 3, 2)
      const ds = folder({ images: d, masks: d, maskSuffix: '_mask', classes: 2 })
      assert.strictEqual(ds.length, 1)
      assert.deepStrictEqual(Array.from((await ds.get(0)).mask ?? []), [0, 1, 1, 0, 1, 0])
    })

    it('labelMap maps raw values; values that are not labels are errors naming value, pixel and file', async () => {
      const ds = folder({ images, masks, classes: 2, maskSuffix: '_mask', labelMap: { 2: 255 } })
      const a = await ds.get(0)
      assert.deepStrictEqual(Array.from(a.mask ?? []), Array.from(labels(6, 4, 3)).map((x) => (x === 2 ? 255 : x)))
      const strict = folder({ images, masks, classes: 2, maskSuffix: '_mask' })
      await rejectsData(strict.get(0), /a_mask\.png$/, /mask value 2 at pixel \(\d+, \d+\) is not a label/)
    })

    it('rgbMasks maps palette colours to classes', async () => {
      const d = path.join(dir, 'rgb')
      await rgbFile(path.join(d, 'img', 'x.png'), 4, 2)
      const pal = [[10, 0, 0], [0, 20, 0], [0, 0, 30]] as const
      const lab = labels(4, 2, 3, 3)
      const px = Buffer.alloc(4 * 2 * 3)
      lab.forEach((k, i) => px.set(pal[k], i * 3))
      write(path.join(d, 'lab', 'x.png'), await sharp(px, { raw: { width: 4, height: 2, channels: 3 } }).png().toBuffer())
      const ds = folder({ images: path.join(d, 'img'), masks: path.join(d, 'lab'), classes: 3, palette: pal, rgbMasks: true })
      assert.deepStrictEqual(Array.from((await ds.get(0)).mask ?? []), Array.from(lab))
    })

    it('bad data: missing mask, corrupt, truncated PNG and JPEG, size mismatch, unreadable file', async () => {
      const bad = path.join(dir, 'bad')
      const img = path.join(bad, 'images')
      const msk = path.join(bad, 'masks')
      await rgbFile(path.join(img, 'nomask.png'), 4, 4)
      write(path.join(img, 'corrupt.png'), Buffer.from('this is not an image at all'))
      await greyPng(path.join(msk, 'corrupt.png'), labels(4, 4, 2), 4, 4)
      const full = fs.readFileSync(await rgbFile(path.join(dir, 'full.png'), 64, 64))
      write(path.join(img, 'trunc.png'), full.subarray(0, full.length >> 1))
      await greyPng(path.join(msk, 'trunc.png'), labels(64, 64, 2), 64, 64)
      const jpg = fs.readFileSync(await rgbFile(path.join(dir, 'full.jpg'), 64, 64, 1, 'jpeg'))
      write(path.join(img, 'truncjpg.jpg'), jpg.subarray(0, Math.floor(jpg.length * 0.6)))
      await greyPng(path.join(msk, 'truncjpg.png'), labels(64, 64, 2), 64, 64)
      await rgbFile(path.join(img, 'size.png'), 8, 6)
      await greyPng(path.join(msk, 'size.png'), labels(6, 8, 2), 6, 8)
      fs.symlinkSync(path.join(dir, 'gone.png'), path.join(img, 'unread.png')) // listed, but reading fails
      await greyPng(path.join(msk, 'unread.png'), labels(4, 4, 2), 4, 4)
      const idx = labels(4, 4, 2)
      await rgbFile(path.join(img, 'truncmask.png'), 4, 4)
      const pal = fs.readFileSync(palettePng(path.join(dir, 'p.png'), idx, 4, 4, VOC_PALETTE.slice(0, 2)))
      write(path.join(msk, 'truncmask.png'), pal.subarray(0, pal.length - 20))
      const ds = folder({ images: img, masks: msk, classes: 2 })
      const files = Array.from({ length: ds.length }, (_, i) => path.basename(ds.file?.(i) ?? ''))
      const get = (name: string): Promise<unknown> => ds.get(files.indexOf(name))
      await rejectsData(get('nomask.png'), /nomask\.png$/, /no mask nomask\.\* in .*masks/)
      const corrupt = await rejectsData(get('corrupt.png'), /images\/corrupt\.png$/, /unsupported image format/)
      assert.ok(corrupt.cause instanceof ImageError, 'the DataError keeps the decoder\'s ImageError as its cause')
      await rejectsData(get('trunc.png'), /images\/trunc\.png$/, /read error|truncat|premature/i)
      await rejectsData(get('truncjpg.jpg'), /truncjpg\.jpg$/, /premature end|truncat/i)
      await rejectsData(get('size.png'), /masks\/size\.png$/, /mask is 6x8 but its image size\.png is 8x6/)
      await rejectsData(get('unread.png'), /images\/unread\.png$/, /file not found/)
      await rejectsData(get('truncmask.png'), /masks\/truncmask\.png$/, /truncated/)
    })

    it('rejects bad options with TypeError / RangeError', () => {
      assert.throws(() => folder({ images, classes: 2, bogus: 1 } as never), /Unknown option 'bogus'/)
      assert.throws(() => folder({ images, classes: 'x' as never }), TypeError)
      assert.throws(() => folder({ images, classes: 3, ignoreIndex: 1 }), RangeError)
      assert.throws(() => folder({ images: path.join(dir, 'nope'), classes: 2 }), /does not exist/)
    })
  })

  describe('public data sets (synthetic layouts)', () => {
    it('voc(): JPEGImages + SegmentationClass palette PNGs + ImageSets lists, border 255 kept; SBD augmented list', async () => {
      const r = path.join(dir, 'VOCdevkit', 'VOC2012')
      const ids = ['2007_000032', '2007_000039', '2008_000001']
      for (const [i, id] of ids.entries()) {
        await rgbFile(path.join(r, 'JPEGImages', `${id}.jpg`), 5, 4, i, 'jpeg')
        const idx = labels(5, 4, 21, i)
        idx[3] = 255
        palettePng(path.join(r, i < 2 ? 'SegmentationClass' : 'SegmentationClassAug', `${id}.png`), idx, 5, 4, [...VOC_PALETTE, ...Array(235).fill([224, 224, 192])])
      }
      write(path.join(r, 'ImageSets', 'Segmentation', 'train.txt'), Buffer.from(`${ids[0]}\n`))
      write(path.join(r, 'ImageSets', 'Segmentation', 'val.txt'), Buffer.from(`${ids[1]}\n`))
      write(path.join(r, 'ImageSets', 'Segmentation', 'train_aug.txt'), Buffer.from(ids.map((id) => `/JPEGImages/${id}.jpg /SegmentationClassAug/${id}.png`).join('\n')))
      const train = voc(path.join(dir, 'VOCdevkit'), 'train')
      assert.strictEqual(train.length, 1)
      assert.strictEqual(train.classes.length, 21)
      assert.deepStrictEqual(train.palette[15], [192, 128, 128]) // person
      const s = await train.get(0)
      const want = labels(5, 4, 21, 0)
      want[3] = 255
      assert.deepStrictEqual(Array.from(s.mask ?? []), Array.from(want))
      assert.strictEqual(voc(r, 'val').length, 1)
      const aug = voc(r, 'train', { augmented: true })
      assert.strictEqual(aug.length, 3)
      assert.strictEqual((await aug.get(2)).mask?.[3], 255)
    })

    it('cityscapes(): labelIds mapped to the 19 train ids, others 255', async () => {
      const r = path.join(dir, 'cityscapes')
      await rgbFile(path.join(r, 'leftImg8bit', 'val', 'aachen', 'aachen_000000_000019_leftImg8bit.png'), 6, 1)
      await greyPng(path.join(r, 'gtFine', 'val', 'aachen', 'aachen_000000_000019_gtFine_labelIds.png'), Uint8Array.from([7, 26, 0, 33, 24, 9]), 6, 1)
      write(path.join(r, 'gtFine', 'val', 'aachen', 'aachen_000000_000019_gtFine_color.png'), Buffer.from('ignored'))
      const ds = cityscapes(r, 'val')
      assert.strictEqual(ds.length, 1)
      assert.strictEqual(ds.classes.length, 19)
      assert.deepStrictEqual(Array.from((await ds.get(0)).mask ?? []), [0, 13, 255, 18, 11, 255])
    })

    it('ade20k(): 150 classes, label 0 ignored, 1..150 -> 0..149', async () => {
      const r = path.join(dir, 'ADEChallengeData2016')
      await rgbFile(path.join(r, 'images', 'validation', 'ADE_val_00000001.jpg'), 4, 1, 1, 'jpeg')
      await greyPng(path.join(r, 'annotations', 'validation', 'ADE_val_00000001.png'), Uint8Array.from([0, 1, 150, 13]), 4, 1)
      const ds = ade20k(dir, 'val')
      assert.strictEqual(ADE20K_CLASSES.length, 150)
      assert.strictEqual(ds.classes.length, 150)
      assert.strictEqual(ds.palette.length, 150)
      assert.deepStrictEqual(Array.from((await ds.get(0)).mask ?? []), [255, 0, 149, 12])
    })

    it('camvid(): 367 train / 101 val, 11 classes, void 11 -> 255', async function () {
      if (!fs.existsSync(path.join(CAMVID, 'trainannot'))) {
        console.log(`      (skipped: no CamVid at ${CAMVID})`)
        this.skip()
      }
      const train = camvid(CAMVID, 'train')
      const val = camvid(CAMVID, 'val')
      assert.strictEqual(train.length, 367)
      assert.strictEqual(val.length, 101)
      assert.strictEqual(train.classes.length, 11)
      assert.strictEqual(train.palette.length, 11)
      // find a sample with void pixels and compare with the raw annotation
      for (let i = 0; i < train.length; i++) {
        const file = (train.file?.(i) ?? '').replace(`${path.sep}train${path.sep}`, `${path.sep}trainannot${path.sep}`)
        const raw = await sharp(file).raw().toBuffer({ resolveWithObject: true })
        const c = raw.info.channels
        const vals = Uint8Array.from({ length: raw.info.width * raw.info.height }, (_, k) => raw.data[k * c])
        if (!vals.includes(11)) continue
        const s = await train.get(i)
        assert.deepStrictEqual([s.width, s.height, s.channels], [480, 360, 3])
        const mask = s.mask as Uint8Array
        vals.forEach((x, k) => { if (mask[k] !== (x === 11 ? 255 : x)) assert.fail(`pixel ${k}: raw ${x} gave ${mask[k]}`) })
        assert.ok(mask.every((x) => x < 11 || x === 255))
        return
      }
      assert.fail('no CamVid annotation with void pixels')
    })
  })

  describe('fromAsyncIterable()', () => {
    it('decodes encoded bytes, paths and raw pixels from an async generator, re-iterable through a function', async () => {
      const png = await sharp(rgbPixels(3, 2), { raw: { width: 3, height: 2, channels: 3 } }).png().toBuffer()
      const maskFile = await greyPng(path.join(dir, 'src', 'm.png'), Uint8Array.from([0, 1, 1, 0, 255, 1]), 3, 2)
      async function * items (): AsyncGenerator<import('../lib/data').SourceItem> {
        yield { image: png, mask: maskFile, name: 'encoded' }
        yield { image: Uint8Array.from(rgbPixels(2, 2)), width: 2, height: 2, mask: Uint8Array.from([1, 0, 0, 1]) }
      }
      const ds = fromAsyncIterable(() => items(), { classes: ['a', 'b'], length: 2 })
      assert.strictEqual(ds.length, 2)
      for (let pass = 0; pass < 2; pass++) {
        const got = []
        for await (const s of ds) got.push(s)
        assert.strictEqual(got.length, 2)
        assert.strictEqual(got[0].file, 'encoded')
        assert.deepStrictEqual(Array.from(got[0].mask ?? []), [0, 1, 1, 0, 255, 1])
        assert.strictEqual(got[1].file, 'item 1')
        assert.deepStrictEqual([got[1].width, got[1].height], [2, 2])
      }
      await rejectsData(ds.decode({ image: Buffer.from('junk') }, 5), /^item 5$/, /unsupported image format/)
      await rejectsData(ds.decode({ image: png, mask: Buffer.from([1, 2, 3]), name: 'n' }, 0), /^n \(mask\)$/, /unsupported image format/)
    })
  })

  describe('exports', () => {
    it("segtorch/data and segtorch's data namespace (CommonJS and ES module, from dist/)", function () {
      assert.strictEqual(typeof root.data.loader, 'function')
      assert.strictEqual(typeof root.data.camvid, 'function')
      if (!fs.existsSync(path.join(ROOT, 'dist', 'data', 'index.js')) || !fs.existsSync(path.join(ROOT, 'dist', 'data', 'index.mjs'))) {
        console.log('      (skipped: dist/ not built)')
        this.skip()
      }
      const cjs = spawnSync(process.execPath, ['-e', "const d = require('segtorch/data'); const r = require('segtorch'); console.log(typeof d.loader, typeof d.folder, r.data.loader === d.loader)"], { cwd: ROOT, encoding: 'utf8' })
      assert.strictEqual(cjs.stdout.trim(), 'function function true', cjs.stderr)
      const esm = spawnSync(process.execPath, ['--input-type=module', '-e', "import { loader, voc } from 'segtorch/data'; import { data } from 'segtorch'; console.log(typeof loader, typeof voc, data.loader === loader)"], { cwd: ROOT, encoding: 'utf8' })
      assert.strictEqual(esm.stdout.trim(), 'function function true', esm.stderr)
    })
  })
})
