// ES module entry of segtorch/data: the CommonJS build re-exported by name.
import cjs from './index.js'

export const {
  folder, camvid, voc, cityscapes, ade20k, fromAsyncIterable, isRandomAccess, DataError,
  loader, Loader, augment, decodeImage, decodeMask, decodeDepth, readImage, toPlanar, writeLabelPng,
  decodeIndexedPng, decodePng, encodeIndexedPng, DEFAULT_LIMIT_INPUT_PIXELS, CAMVID_CLASSES, CAMVID_PALETTE, VOC_CLASSES, VOC_PALETTE,
  CITYSCAPES_CLASSES, CITYSCAPES_PALETTE, CITYSCAPES_TRAIN_IDS, ADE20K_CLASSES, ADE20K_PALETTE, vocColourMap
} = cjs
export default cjs
