/**
 * segtorch/data: data sets (folder, CamVid, PASCAL VOC, Cityscapes, ADE20K, any async source),
 * decoding with sharp, native augmentation and a bounded, prefetching loader for `model.fit`.
 */
export { folder, camvid, membrane, voc, cityscapes, ade20k, fromAsyncIterable, isRandomAccess, DataError } from './datasets'
export type { Sample, Dataset, StreamDataset, AnyDataset, FolderOptions, VocOptions, DecodeOptions, SourceItem, SourceOptions } from './datasets'
export { loader, Loader, augment } from './loader'
export { classFrequencies, classWeights, weightsFromFrequencies } from './stats'
export type { ClassFrequencies, ClassWeighting } from './stats'
export type { LoaderOptions, LoaderBatch, AugmentOptions, TransformOptions, SkippedSample } from './loader'
export { decodeImage, decodeMask, decodeDepth, readImage, toPlanar, writeLabelPng } from './images'
export type { DecodedImage, ImageDecodeOptions, MaskDecodeOptions } from './images'
export { decodeIndexedPng, decodePng, encodeIndexedPng, DEFAULT_LIMIT_INPUT_PIXELS } from './png'
export type { DecodedPng, PngDecodeOptions } from './png'
export {
  CAMVID_CLASSES, CAMVID_PALETTE, VOC_CLASSES, VOC_PALETTE, CITYSCAPES_CLASSES, CITYSCAPES_PALETTE, CITYSCAPES_TRAIN_IDS,
  ADE20K_CLASSES, ADE20K_PALETTE, vocColourMap
} from './classes'
export type { Colour } from './classes'
