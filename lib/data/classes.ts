/** Class names, colour palettes and label-id tables of the public data sets. */

/** An RGB colour. */
export type Colour = readonly [number, number, number]

/**
 * The PASCAL VOC colour map (the one its palette PNGs use): the bits of the class index spread
 * over the high bits of r, g and b. Also a distinct palette for any class count.
 */
export function vocColourMap (n: number): Colour[] {
  const out: Colour[] = []
  for (let i = 0; i < n; i++) {
    let r = 0
    let g = 0
    let b = 0
    let c = i
    for (let j = 7; j >= 0; j--) {
      r |= (c & 1) << j
      g |= ((c >> 1) & 1) << j
      b |= ((c >> 2) & 1) << j
      c >>= 3
    }
    out.push([r, g, b])
  }
  return out
}

export const CAMVID_CLASSES = ['sky', 'building', 'pole', 'road', 'pavement', 'tree', 'sign-symbol', 'fence', 'car', 'pedestrian', 'bicyclist'] as const
/** SegNet's CamVid colours. */
export const CAMVID_PALETTE: Colour[] = [[128, 128, 128], [128, 0, 0], [192, 192, 128], [128, 64, 128], [60, 40, 222], [128, 128, 0],
  [192, 128, 128], [64, 64, 128], [64, 0, 128], [64, 64, 0], [0, 128, 192]]

export const VOC_CLASSES = ['background', 'aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair', 'cow',
  'diningtable', 'dog', 'horse', 'motorbike', 'person', 'pottedplant', 'sheep', 'sofa', 'train', 'tvmonitor'] as const
export const VOC_PALETTE: Colour[] = vocColourMap(21)

export const CITYSCAPES_CLASSES = ['road', 'sidewalk', 'building', 'wall', 'fence', 'pole', 'traffic light', 'traffic sign', 'vegetation',
  'terrain', 'sky', 'person', 'rider', 'car', 'truck', 'bus', 'train', 'motorcycle', 'bicycle'] as const
export const CITYSCAPES_PALETTE: Colour[] = [[128, 64, 128], [244, 35, 232], [70, 70, 70], [102, 102, 156], [190, 153, 153], [153, 153, 153],
  [250, 170, 30], [220, 220, 0], [107, 142, 35], [152, 251, 152], [70, 130, 180], [220, 20, 60], [255, 0, 0], [0, 0, 142], [0, 0, 70],
  [0, 60, 100], [0, 80, 100], [0, 0, 230], [119, 11, 32]]
/** Cityscapes labelIds 0..33 -> the 19 train ids (255: not evaluated). */
export const CITYSCAPES_TRAIN_IDS: readonly number[] = [255, 255, 255, 255, 255, 255, 255, 0, 1, 255, 255, 2, 3, 4, 255, 255, 255, 5,
  255, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 255, 255, 16, 17, 18]

/** ADE20K (SceneParsing / ADEChallengeData2016): the 150 classes of labels 1..150. */
export const ADE20K_CLASSES = ['wall', 'building', 'sky', 'floor', 'tree', 'ceiling', 'road', 'bed', 'windowpane', 'grass', 'cabinet',
  'sidewalk', 'person', 'earth', 'door', 'table', 'mountain', 'plant', 'curtain', 'chair', 'car', 'water', 'painting', 'sofa', 'shelf',
  'house', 'sea', 'mirror', 'rug', 'field', 'armchair', 'seat', 'fence', 'desk', 'rock', 'wardrobe', 'lamp', 'bathtub', 'railing',
  'cushion', 'base', 'box', 'column', 'signboard', 'chest of drawers', 'counter', 'sand', 'sink', 'skyscraper', 'fireplace',
  'refrigerator', 'grandstand', 'path', 'stairs', 'runway', 'case', 'pool table', 'pillow', 'screen door', 'stairway', 'river',
  'bridge', 'bookcase', 'blind', 'coffee table', 'toilet', 'flower', 'book', 'hill', 'bench', 'countertop', 'stove', 'palm',
  'kitchen island', 'computer', 'swivel chair', 'boat', 'bar', 'arcade machine', 'hovel', 'bus', 'towel', 'light', 'truck', 'tower',
  'chandelier', 'awning', 'streetlight', 'booth', 'television receiver', 'airplane', 'dirt track', 'apparel', 'pole', 'land',
  'bannister', 'escalator', 'ottoman', 'bottle', 'buffet', 'poster', 'stage', 'van', 'ship', 'fountain', 'conveyer belt', 'canopy',
  'washer', 'plaything', 'swimming pool', 'stool', 'barrel', 'basket', 'waterfall', 'tent', 'bag', 'minibike', 'cradle', 'oven',
  'ball', 'food', 'step', 'tank', 'trade name', 'microwave', 'pot', 'animal', 'bicycle', 'lake', 'dishwasher', 'screen', 'blanket',
  'sculpture', 'hood', 'sconce', 'vase', 'traffic light', 'tray', 'ashcan', 'fan', 'pier', 'crt screen', 'plate', 'monitor',
  'bulletin board', 'shower', 'radiator', 'glass', 'clock', 'flag'] as const
/** Generated (the VOC colour map of indices 1..150), distinct per class. */
export const ADE20K_PALETTE: Colour[] = vocColourMap(151).slice(1)
