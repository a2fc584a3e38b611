/**
 * Recipes: named training configurations (architecture, backbone, augmentation, loss, optimizer,
 * schedule, crop, batch and budget) as the papers trained them, or as measured here on a validation
 * split. One flat record of options per recipe, the same keys as `segtorch train`'s flags (camelCase),
 * so that `segtorch train --recipe NAME` and `recipe(NAME)` in the API mean the same thing; every
 * field can be overridden.
 */
import type { Arch, Backbone, OutputStride } from './models'
import type { FitOptions } from './fit'
import type { LoaderOptions } from './data/loader'
import type { Dataset } from './data/datasets'
import type { LossName } from './train'
import { ClassWeighting, classWeights as computeClassWeights } from './data/stats'
import * as v from './validate'

/** Training options as one flat record: `segtorch train`'s flags in camelCase. */
export interface TrainingOptions {
  arch: Arch
  backbone?: Backbone
  outputStride?: OutputStride
  aux?: boolean
  /** Image channels (3 RGB, 1 grey). */
  channels?: 1 | 3
  /** Architecture options, e.g. { baseChannels: 16 } (see ARCHITECTURES[arch].options). */
  modelOption?: Record<string, unknown>
  /** Images per step. */
  batchSize: number
  epochs?: number
  iterations?: number
  /** Seconds of training; the schedule runs over time when neither epochs nor iterations are given. */
  timeLimit?: number
  optimizer: 'sgd' | 'adam' | 'adamw'
  lr: number
  momentum?: number
  weightDecay: number
  /** Learning-rate multiplier of everything outside the backbone (PSPNet / DeepLab: 10). */
  headLrMultiplier?: number
  schedule: 'constant' | 'poly' | 'cosine'
  warmup?: number
  loss?: LossName
  /** Per-class loss weights, or a rule computed from the training masks before training. */
  classWeights?: ClassWeighting | readonly number[]
  ohemThreshold?: number
  ohemMinKept?: number
  /** Weight of auxiliary losses (PSPNet's 0.4). */
  auxWeight?: number
  precision?: 'auto' | 'fp32' | 'bf16' | 'fp16'
  /** Every sample resampled to [height, width] first (training and validation). */
  resize?: readonly [number, number]
  crop?: readonly [number, number]
  scale?: readonly [number, number] | false
  flip?: boolean
  /** Colour jitter strength (brightness, contrast, saturation), 0 for none. */
  jitter?: number
  /** Epochs between validations. */
  validateEvery?: number
  /** Validation: a split name of the data set (e.g. 'val'), a data spec or a fraction to hold out. */
  val?: string
}

export interface Recipe {
  readonly name: string
  /** One line: what it trains, on what, for how long. */
  readonly summary: string
  /** The paper or measurement each choice comes from. */
  readonly source: string
  /** The data set it is made for (its `--data` kind). */
  readonly data: 'camvid' | 'voc' | 'cityscapes' | 'ade20k' | 'membrane'
  /** What it reached, where it was measured (undefined: not measured by us). */
  readonly measured?: string
  readonly options: Readonly<TrainingOptions>
}

// What camvid-cpu and camvid-gpu share: the network, optimizer, loss and augmentation.
const CAMVID_LWREFINENET = {
  arch: 'lwrefinenet', backbone: 'mobilenetv2', optimizer: 'adamw', lr: 2e-3, weightDecay: 1e-4, schedule: 'poly',
  loss: 'ce', classWeights: 'sqrt-median-frequency', precision: 'auto', scale: [0.5, 2], flip: true, jitter: 0.2, val: 'val'
} as const

const PSP_SGD = { optimizer: 'sgd', lr: 0.01, momentum: 0.9, weightDecay: 1e-4, schedule: 'poly', headLrMultiplier: 10 } as const

export const RECIPES = {
  'camvid-cpu': {
    name: 'camvid-cpu',
    summary: 'CamVid at 180x240 on a 2-core CPU in 25 minutes: Light-Weight RefineNet on MobileNetV2, from scratch',
    source: 'Light-Weight RefineNet (Nekrasov et al. 2018) keeps stride-4 detail for thin classes; random scale 0.5-2.0 + crop + flip and poly with warm-up as PSPNet / DeepLab; ' +
      'class weights: the square root of SegNet\'s median-frequency balancing; AdamW 2e-3 (what beat SGD from scratch in bench/camvid)',
    data: 'camvid',
    measured: 'CamVid val at 180x240, 1500 s on 2 cores (AMD EPYC, AVX512-BF16): 62.2 mIoU, against 48.9 for torchvision\'s deeplabv3_mobilenet_v3_large with AdamW in PyTorch 2.15 in the same time (bench/README.md)',
    options: { ...CAMVID_LWREFINENET, batchSize: 8, timeLimit: 1500, warmup: 100, resize: [180, 240], crop: [180, 240], validateEvery: 10 }
  },
  'camvid-gpu': {
    name: 'camvid-gpu',
    summary: 'CamVid at full 360x480 on one GPU: Light-Weight RefineNet on MobileNetV2, 10,000 steps of batch 16, from scratch',
    source: 'camvid-cpu\'s choices at the resolution SegNet reports (360x480) with a larger batch and a step budget instead of a time budget',
    data: 'camvid',
    options: { ...CAMVID_LWREFINENET, batchSize: 16, iterations: 10000, warmup: 200, crop: [360, 480] }
  },
  'voc-pspnet': {
    name: 'voc-pspnet',
    summary: 'PASCAL VOC 2012 (+SBD): PSPNet on dilated ResNet-101 (output stride 8), 30k steps of batch 16 at 473x473',
    source: 'Zhao et al., Pyramid Scene Parsing Network (CVPR 2017), sec. 5.1: SGD momentum 0.9, weight decay 1e-4, lr 0.01 with poly(0.9), ' +
      '30k iterations on VOC, batch 16, crop 473, random scale 0.5-2.0 and mirror, auxiliary loss weight 0.4 on res4b22; new layers at 10x lr as their code',
    data: 'voc',
    options: {
      arch: 'pspnet', backbone: 'resnet101', outputStride: 8, aux: true, auxWeight: 0.4,
      batchSize: 16, iterations: 30000, ...PSP_SGD, warmup: 0, loss: 'ce', precision: 'auto',
      crop: [473, 473], scale: [0.5, 2], flip: true, jitter: 0, val: 'val'
    }
  },
  'voc-deeplabv3plus': {
    name: 'voc-deeplabv3plus',
    summary: 'PASCAL VOC 2012 (+SBD): DeepLab v3+ on aligned Xception-65 (output stride 16), 30k steps of batch 16 at 513x513',
    source: 'Chen et al., Encoder-Decoder with Atrous Separable Convolution (ECCV 2018), sec. 4 and DeepLab v3 sec. 4: lr 0.007 with poly(0.9), ' +
      'crop 513, output stride 16 for training, batch 16, random scale 0.5-2.0 and left-right flips, 30k iterations; weight decay 4e-5 (their Xception setting)',
    data: 'voc',
    options: {
      arch: 'deeplabv3plus', backbone: 'xception65', outputStride: 16,
      batchSize: 16, iterations: 30000, optimizer: 'sgd', lr: 0.007, momentum: 0.9, weightDecay: 4e-5, schedule: 'poly', warmup: 0,
      loss: 'ce', precision: 'auto', crop: [513, 513], scale: [0.5, 2], flip: true, jitter: 0, val: 'val'
    }
  },
  'cityscapes-pspnet': {
    name: 'cityscapes-pspnet',
    summary: 'Cityscapes (fine): PSPNet on dilated ResNet-101 (output stride 8), 90k steps of batch 16 at 713x713, OHEM',
    source: 'Zhao et al. 2017, sec. 5.1 / 5.4: as voc-pspnet with 90k iterations and crop 713; online hard example mining as ICNet (Zhao et al. 2018) trained its Cityscapes models (threshold 0.7, at least 100k pixels)',
    data: 'cityscapes',
    options: {
      arch: 'pspnet', backbone: 'resnet101', outputStride: 8, aux: true, auxWeight: 0.4,
      batchSize: 16, iterations: 90000, ...PSP_SGD, warmup: 0, loss: 'ohem', ohemThreshold: 0.7, ohemMinKept: 100000, precision: 'auto',
      crop: [713, 713], scale: [0.5, 2], flip: true, jitter: 0, val: 'val'
    }
  },
  'ade20k-pspnet': {
    name: 'ade20k-pspnet',
    summary: 'ADE20K (150 classes): PSPNet on dilated ResNet-50 (output stride 8), 150k steps of batch 16 at 473x473',
    source: 'Zhao et al. 2017, sec. 5.1-5.2: 150k iterations on ImageNet scene parsing (ADE20K), ResNet-50 as in their ablations, batch 16, crop 473, scale 0.5-2.0, mirror, auxiliary loss 0.4',
    data: 'ade20k',
    options: {
      arch: 'pspnet', backbone: 'resnet50', outputStride: 8, aux: true, auxWeight: 0.4,
      batchSize: 16, iterations: 150000, ...PSP_SGD, warmup: 0, loss: 'ce', precision: 'auto',
      crop: [473, 473], scale: [0.5, 2], flip: true, jitter: 0, val: 'val'
    }
  },
  membrane: {
    name: 'membrane',
    summary: 'The demo: U-Net (16 channels at its first level) on the ISBI 2012 membrane images shipped in data/membrane',
    source: 'Ronneberger et al., U-Net (MICCAI 2015): the network made for these images, trained on random crops with left-right flips (not up-down nor transposed: ' +
      'the shipped labels sit ~0.6 px above their images, learnable only from crops that keep their up and down; README); ' +
      'BatchNorm after each convolution (Ioffe & Szegedy 2015; not in the paper) and Adam 3e-3 with poly decay: the paper\'s plain network at 1e-3 needs about three times the steps (README)',
    data: 'membrane',
    measured: 'the 5 held-back images after 180 s on 2 cores (AMD EPYC Zen 3, AVX2 only, fp32; 264-270 steps, seeds 1 and 2): membrane IoU 0.683 / 0.678, cell interior 0.911 / 0.910 ' +
      '(all 8 flips: 0.668 / 0.651; the plain U-Net at 1e-3: 0.589 / 0.886)',
    options: {
      arch: 'unet', channels: 1, modelOption: { baseChannels: 16, batchNorm: true },
      batchSize: 4, timeLimit: 180, optimizer: 'adam', lr: 3e-3, weightDecay: 0, schedule: 'poly', warmup: 0,
      loss: 'ce', precision: 'auto', crop: [256, 256], scale: false, flip: true, jitter: 0, val: '0.17'
    }
  }
} as const satisfies Record<string, Recipe>

export type RecipeName = keyof typeof RECIPES

/** The recipes by name (read-only). */
export const recipes: Readonly<Record<RecipeName, Recipe>> = RECIPES

/** A recipe by name; a RangeError naming the known ones otherwise. */
export function getRecipe (name: unknown): Recipe {
  if (typeof name !== 'string' || !(name in RECIPES)) {
    throw new RangeError(`Expected a recipe name (${Object.keys(RECIPES).join(', ')}) but received ${typeof name === 'string' ? `'${name}'` : String(name)}`)
  }
  return RECIPES[name as RecipeName]
}

/** What `createModel`, `loader` and `fit` take, from flat training options. */
export interface TrainingPlan {
  /** The flat options (the recipe's with the overrides), as stored with a run. */
  options: TrainingOptions
  /** For createModel (add numClasses, device; inChannels when the options do not give channels). */
  model: { arch: Arch, backbone?: Backbone, outputStride?: OutputStride, aux?: boolean, [option: string]: unknown }
  /** For loader() of the training data (add seed). */
  loader: LoaderOptions
  /** For loader() of the validation data. */
  validationLoader: LoaderOptions
  /** For fit() (add validation, checkpointDir, signal, callbacks). */
  fit: FitOptions
}

/**
 * Turns flat training options into the options of createModel, loader and fit. Class weights given
 * as a rule need the numbers: pass them in `classWeights` (computed from the training masks).
 */
export function trainingPlan (o: TrainingOptions, extra: { classWeights?: number[], ignoreIndex?: number } = {}): TrainingPlan {
  const weights = typeof o.classWeights === 'object' ? [...o.classWeights] : extra.classWeights
  if (typeof o.classWeights === 'string' && weights === undefined) {
    throw new TypeError(`Expected the training data to compute class weights '${o.classWeights}' from: pass it to recipe(name, overrides, data), or classWeights from classWeights(dataset, '${o.classWeights}')`)
  }
  const lossOptions: Record<string, unknown> = {}
  if (weights !== undefined) lossOptions.classWeights = weights
  if (o.ohemThreshold !== undefined) lossOptions.ohemThreshold = o.ohemThreshold
  if (o.ohemMinKept !== undefined) lossOptions.ohemMinKept = o.ohemMinKept
  const crop = o.crop
  const fit: FitOptions = {
    ...(o.epochs !== undefined ? { epochs: o.epochs } : {}),
    ...(o.iterations !== undefined ? { iterations: o.iterations } : {}),
    ...(o.timeLimit !== undefined ? { timeLimit: o.timeLimit } : {}),
    ...(o.validateEvery !== undefined ? { validateEvery: o.validateEvery } : {}),
    optimizer: { type: o.optimizer, lr: o.lr, weightDecay: o.weightDecay, ...(o.optimizer === 'sgd' && o.momentum !== undefined ? { momentum: o.momentum } : {}) },
    schedule: { type: o.schedule, warmup: o.warmup ?? 0 },
    ...(o.loss !== undefined ? { loss: o.loss } : {}),
    ...(Object.keys(lossOptions).length ? { lossOptions } : {}),
    ...(o.auxWeight !== undefined ? { auxWeight: o.auxWeight } : {}),
    ...(o.headLrMultiplier !== undefined ? { headLrMultiplier: o.headLrMultiplier } : {}),
    ...(o.precision !== undefined ? { precision: o.precision } : {}),
    ...(extra.ignoreIndex !== undefined ? { ignoreIndex: extra.ignoreIndex } : {})
  }
  const jitter = o.jitter === undefined || o.jitter === 0 ? false : o.jitter
  return {
    options: { ...o },
    model: {
      ...(o.modelOption ?? {}),
      arch: o.arch,
      ...(o.backbone !== undefined ? { backbone: o.backbone } : {}),
      ...(o.outputStride !== undefined ? { outputStride: o.outputStride } : {}),
      ...(o.aux !== undefined ? { aux: o.aux } : {}),
      ...(o.channels !== undefined ? { inChannels: o.channels } : {})
    },
    loader: {
      batchSize: o.batchSize,
      shuffle: true,
      ...(o.resize ? { resize: o.resize } : {}),
      augment: { scale: o.scale ?? [0.5, 2], flip: o.flip ?? true, jitter, ...(crop ? { crop } : {}) },
      ...(crop ? {} : { pad: 'batch' as const })
    },
    validationLoader: { batchSize: 1, ...(o.resize ? { resize: o.resize } : {}) },
    fit
  }
}

/**
 * A recipe's options as the base of a run of `arch`: without its model options (`modelOption`) when
 * `arch` names another network than the recipe's, since they are its own network's. The API's
 * recipe() and `segtorch train --recipe` both start from this.
 */
export function recipeOptionsFor (r: Recipe, arch: unknown): TrainingOptions {
  const o = { ...r.options } as TrainingOptions
  if (arch !== undefined && arch !== o.arch) delete o.modelOption
  return o
}

/**
 * A recipe's plan, with `overrides` on top of its options (`modelOption` merged key by key over the
 * recipe's, or dropped with it when `arch` names another network). Recipes whose class weights come from
 * the training masks need `data` (the training data set) to compute them.
 *
 *   const plan = await recipe('camvid-cpu', {}, camvid(root, 'train'))
 *   const model = await createModel({ ...plan.model, numClasses: 11 })
 *   await model.fit(loader(camvid(root, 'train'), plan.loader), { ...plan.fit, validation: loader(camvid(root, 'val'), plan.validationLoader) })
 */
export async function recipe (name: RecipeName, overrides?: Partial<TrainingOptions>, data?: Dataset): Promise<TrainingPlan & { recipe: Recipe }> {
  const r = getRecipe(name)
  const over = v.optionsObject('recipe overrides', overrides) as Partial<TrainingOptions>
  const base = recipeOptionsFor(r, over.arch)
  const o = { ...base, ...over } as TrainingOptions
  // modelOption merges key by key over the recipe's, as `segtorch train --model-option` does.
  if (base.modelOption !== undefined) o.modelOption = { ...base.modelOption, ...(over.modelOption ?? {}) }
  let weights: number[] | undefined
  if (typeof o.classWeights === 'string') {
    if (data === undefined) throw new TypeError(`Expected the training data set as recipe()'s third argument: recipe '${name}' computes its class weights ('${o.classWeights}') from the training masks`)
    weights = await computeClassWeights(data, o.classWeights)
  }
  return { ...trainingPlan(o, { classWeights: weights, ignoreIndex: data?.ignoreIndex }), recipe: r }
}
