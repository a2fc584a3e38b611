/**
 * The architectures users can create, their options and defaults. One entry per architecture,
 * mirroring native/models/registry.cc; `Arch` is the table's keys.
 */
export type ResNetBackbone = 'resnet18' | 'resnet34' | 'resnet50' | 'resnet101' | 'resnet152'
export type VGGBackbone = 'vgg16' | 'vgg16_bn'
/** 'none': architectures without a pretrained backbone (unet). */
export type Backbone = ResNetBackbone | VGGBackbone | 'mobilenetv2' | 'mobilenetv3_large' | 'xception65' | 'none'
export type OutputStride = 8 | 16 | 32

/** An architecture-specific option: its type, allowed values and default. */
export type OptionSpec =
  | { type: 'boolean', default: boolean, doc: string }
  | { type: 'integer', default: number, min: number, max: number, doc: string }
  | { type: 'number', default: number, min: number, max: number, doc: string }
  | { type: 'enum', values: readonly string[], default: string, doc: string }

export interface ArchSpec {
  /** Paper the architecture follows. */
  paper: string
  backbones: readonly Backbone[]
  defaultBackbone: Backbone
  outputStrides: readonly OutputStride[]
  defaultOutputStride: OutputStride
  /** Default output stride of particular backbones, where it differs from defaultOutputStride (deeplabv3 on MobileNetV3: 16, as torchvision). */
  backboneOutputStride?: Readonly<Partial<Record<Backbone, OutputStride>>>
  /** Whether `aux: true` (an auxiliary head for deep supervision) is available. */
  aux: boolean
  /** Default of `aux` when not given (PSPNet trains with its auxiliary loss, as the paper). Default false. */
  defaultAux?: boolean
  /** Default of the training step's `clipGradNorm` (lib/train.ts autoClipGradNorm): 1 for GCN. Default 0 (off). */
  defaultClipGradNorm?: number
  /** Options only this architecture has (passed to native code as `extra`). */
  options: Readonly<Record<string, OptionSpec>>
}

const RESNETS: readonly ResNetBackbone[] = ['resnet18', 'resnet34', 'resnet50', 'resnet101', 'resnet152']
const VGGS: readonly VGGBackbone[] = ['vgg16', 'vgg16_bn']

const TABLE = {
  fcn: {
    paper: 'Long, Shelhamer, Darrell: Fully Convolutional Networks for Semantic Segmentation (CVPR 2015); dilated-ResNet head as torchvision',
    backbones: [...RESNETS, ...VGGS],
    defaultBackbone: 'resnet50',
    outputStrides: [8, 16, 32],
    defaultOutputStride: 8,
    aux: true,
    options: {
      variant: {
        type: 'enum',
        values: ['32s', '16s', '8s'],
        default: '8s',
        doc: "VGG backbones only (the classic FCN; outputStride and aux do not apply to it): FCN-32s, FCN-16s (+ pool4 scores) or FCN-8s (+ pool4 and pool3 scores). ResNet backbones ignore it"
      },
      learnUpsampling: {
        type: 'boolean',
        default: true,
        doc: "VGG backbones only: the 2x transposed-conv upsamplings of 16s/8s start bilinear and are trained (the paper); false keeps them fixed (the reference nets). The final upsampling is always fixed bilinear"
      },
      fcChannels: { type: 'integer', default: 4096, min: 1, max: 65536, doc: "VGG backbones only: channels of fc6 (7x7) and fc7 (1x1), VGG's fully connected layers as convolutions (the paper: 4096, 120 M of FCN-8s' 134 M parameters)" }
    }
  },
  segnet: {
    paper: 'Badrinarayanan, Kendall, Cipolla: SegNet: A Deep Convolutional Encoder-Decoder Architecture for Image Segmentation (TPAMI 2017)',
    backbones: ['vgg16_bn', 'vgg16'],
    defaultBackbone: 'vgg16_bn',
    outputStrides: [32],
    defaultOutputStride: 32,
    aux: false,
    options: {}
  },
  unet: {
    paper: 'Ronneberger, Fischer, Brox: U-Net: Convolutional Networks for Biomedical Image Segmentation (MICCAI 2015)',
    backbones: ['none'],
    defaultBackbone: 'none',
    outputStrides: [16],
    defaultOutputStride: 16,
    aux: false,
    options: {
      baseChannels: { type: 'integer', default: 64, min: 1, max: 1024, doc: 'channels of the first level (doubled at each of the four down levels: 64 -> 1024)' },
      upsampling: {
        type: 'enum',
        values: ['transposed', 'bilinear'],
        default: 'transposed',
        doc: "'transposed': 2x2 transposed conv halving the channels (the paper's up-convolution); 'bilinear': bilinear x2 then a 1x1 conv halving the channels"
      },
      dropout: { type: 'number', default: 0.5, min: 0, max: 0.99, doc: 'dropout after the two deepest contracting levels (the paper: drop-out at the end of the contracting path); 0 turns it off' },
      batchNorm: { type: 'boolean', default: false, doc: 'batch norm after every 3x3 conv (not in the original U-Net)' }
    }
  },
  dilated: {
    paper: 'Yu, Koltun: Multi-Scale Context Aggregation by Dilated Convolutions (ICLR 2016): VGG-16 front end + context module',
    backbones: VGGS,
    defaultBackbone: 'vgg16',
    outputStrides: [8],
    defaultOutputStride: 8,
    aux: false,
    options: {
      context: {
        type: 'enum',
        values: ['basic', 'large', 'none'],
        default: 'basic',
        doc: "context module: 'basic' (C channels throughout), 'large' (2C .. 32C) or 'none' (the front end alone)"
      },
      identityInit: { type: 'boolean', default: true, doc: "the paper's identity initialisation of the context module (false: He initialisation)" },
      fcChannels: { type: 'integer', default: 4096, min: 1, max: 65536, doc: "channels of the front end's fc6 (7x7, dilation 4) and fc7 (1x1) (the paper: 4096, 120 M of its 134 M parameters)" }
    }
  },
  deeplabv2: {
    paper: 'Chen, Papandreou, Kokkinos, Murphy, Yuille: DeepLab: Semantic Image Segmentation with Deep Convolutional Nets, Atrous Convolution, and Fully Connected CRFs (TPAMI 2017), ASPP-L (rates 6, 12, 18, 24 at output stride 8, halved at 16; branch scores summed)',
    backbones: RESNETS,
    defaultBackbone: 'resnet101',
    outputStrides: [8, 16],
    defaultOutputStride: 8,
    aux: false,
    options: {}
  },
  deeplabv3: {
    paper: 'Chen, Papandreou, Schroff, Adam: Rethinking Atrous Convolution for Semantic Image Segmentation (2017); as torchvision deeplabv3_resnet50/101 (ASPP rates 12, 24, 36 at output stride 8, 6, 12, 18 at 16) and deeplabv3_mobilenet_v3_large (output stride 16 by default, rates 12, 24, 36 there, aux head on backbone.4, no input padding)',
    backbones: [...RESNETS, 'mobilenetv3_large'],
    defaultBackbone: 'resnet101',
    outputStrides: [8, 16],
    defaultOutputStride: 8,
    backboneOutputStride: { mobilenetv3_large: 16 },
    aux: true,
    options: {}
  },
  lraspp: {
    paper: 'Howard, Sandler, Chu, Chen, Chen, Tan, Wang, Zhu, Pang, Vasudevan, Le, Adam: Searching for MobileNetV3 (ICCV 2019), the Lite R-ASPP head; as torchvision lraspp_mobilenet_v3_large (no input padding)',
    backbones: ['mobilenetv3_large'],
    defaultBackbone: 'mobilenetv3_large',
    outputStrides: [16, 8, 32],
    defaultOutputStride: 16,
    aux: false,
    options: {
      interChannels: { type: 'integer', default: 128, min: 1, max: 4096, doc: "channels of the head's 1x1 conv and its global-average gate on the deepest map (torchvision's inter_channels)" }
    }
  },
  deeplabv3plus: {
    paper: 'Chen, Zhu, Papandreou, Schroff, Adam: Encoder-Decoder with Atrous Separable Convolution for Semantic Image Segmentation (ECCV 2018)',
    backbones: [...RESNETS, 'xception65'],
    defaultBackbone: 'resnet101',
    outputStrides: [16, 8],
    defaultOutputStride: 16,
    aux: false,
    options: {
      separable: { type: 'boolean', default: false, doc: 'depthwise-separable 3x3 convolutions in the ASPP and the decoder (the paper\'s best models with xception65)' }
    }
  },
  pspnet: {
    paper: 'Zhao, Shi, Qi, Wang, Jia: Pyramid Scene Parsing Network (CVPR 2017); as the authors\' PyTorch reference hszhao/semseg',
    backbones: RESNETS,
    defaultBackbone: 'resnet101',
    outputStrides: [8, 16],
    defaultOutputStride: 8,
    aux: true,
    defaultAux: true,
    options: {}
  },
  upernet: {
    paper: 'Xiao, Liu, Zhou, Jiang, Sun: Unified Perceptual Parsing for Scene Understanding (ECCV 2018); semantic head as mmsegmentation\'s UPerHead',
    backbones: RESNETS,
    defaultBackbone: 'resnet50',
    outputStrides: [32],
    defaultOutputStride: 32,
    aux: true,
    options: {
      channels: { type: 'integer', default: 512, min: 1, max: 4096, doc: 'channels of the pyramid pooling branches, the FPN and the fusion convs' }
    }
  },
  deeplabv1: {
    paper: 'Chen, Papandreou, Kokkinos, Murphy, Yuille: Semantic Image Segmentation with Deep Convolutional Nets and Fully Connected CRFs (ICLR 2015), DeepLab-LargeFOV',
    backbones: VGGS,
    defaultBackbone: 'vgg16',
    outputStrides: [8],
    defaultOutputStride: 8,
    aux: false,
    options: {
      fcChannels: { type: 'integer', default: 1024, min: 1, max: 65536, doc: "channels of fc6 (3x3, dilation 12) and fc7 (1x1) (DeepLab-LargeFOV: 1024)" }
    }
  },
  refinenet: {
    paper: 'Lin, Milan, Shen, Reid: RefineNet: Multi-Path Refinement Networks for High-Resolution Semantic Segmentation (CVPR 2017), 4-cascaded',
    backbones: RESNETS,
    defaultBackbone: 'resnet101',
    outputStrides: [32],
    defaultOutputStride: 32,
    aux: false,
    options: {
      crpBlocks: { type: 'integer', default: 2, min: 1, max: 8, doc: 'pooling blocks in each chained residual pooling (the paper uses 2; the released code 4)' },
      outputRcus: { type: 'integer', default: 1, min: 1, max: 8, doc: "RCUs in the output convolutions of RefineNet-4, -3, -2 (the paper: 1; the released code: 3). RefineNet-1 always has 3: its output RCU and the two extra before the classifier" }
    }
  },
  lwrefinenet: {
    paper: 'Nekrasov, Shen, Reid: Light-Weight RefineNet for Real-Time Semantic Segmentation (BMVC 2018)',
    backbones: [...RESNETS, 'mobilenetv2'],
    defaultBackbone: 'resnet50',
    outputStrides: [32, 16, 8],
    defaultOutputStride: 32,
    aux: false,
    options: {}
  },
  mtrefinenet: {
    paper: 'Nekrasov, Dharmasiri, Spek, Drummond, Shen, Reid: Real-Time Joint Semantic Segmentation and Depth Estimation Using Asymmetric Annotations (ICRA 2019)',
    backbones: ['mobilenetv2', ...RESNETS],
    defaultBackbone: 'mobilenetv2',
    outputStrides: [32, 16, 8],
    defaultOutputStride: 32,
    aux: false,
    options: {}
  },
  icnet: {
    paper: 'Zhao, Qi, Shen, Shi, Jia: ICNet for Real-Time Semantic Segmentation on High-Resolution Images (ECCV 2018)',
    backbones: RESNETS,
    defaultBackbone: 'resnet50',
    outputStrides: [8],
    defaultOutputStride: 8,
    aux: false,
    options: {}
  },
  gcn: {
    paper: 'Peng, Zhang, Yu, Luo, Sun: Large Kernel Matters - Improve Semantic Segmentation by Global Convolutional Network (CVPR 2017)',
    backbones: RESNETS,
    defaultBackbone: 'resnet152',
    outputStrides: [32],
    defaultOutputStride: 32,
    aux: false,
    // Its head has no normalisation (the paper's): from scratch at SGD 0.01 / momentum 0.9 it diverges within 4-10
    // steps (PyTorch's twin too); clipped at 1 it trains (README, Architectures).
    defaultClipGradNorm: 1,
    options: {
      kernelSize: { type: 'integer', default: 15, min: 1, max: 63, doc: 'k of the global convolution modules (k x 1 + 1 x k); odd' }
    }
  },
  dfn: {
    paper: 'Yu, Wang, Peng, Gao, Yu, Sang: Learning a Discriminative Feature Network for Semantic Segmentation (CVPR 2018)',
    backbones: RESNETS,
    defaultBackbone: 'resnet101',
    outputStrides: [32],
    defaultOutputStride: 32,
    aux: false,
    options: {
      deepSupervision: { type: 'boolean', default: true, doc: "cross-entropy on the smooth network's 1/32, 1/16 and 1/8 stage outputs (training outputs smooth32, smooth16, smooth8; weight 1 each, as the paper)" },
      borderWeight: { type: 'number', default: 0.1, min: 0, max: 100, doc: "weight (the paper's lambda) of the border network's focal loss (training output border)" }
    }
  }
} satisfies Record<string, ArchSpec>

/** An architecture key: the keys of the table above (test/architectures.test.ts checks them against the addon's registry). */
export type Arch = keyof typeof TABLE

export const ARCHITECTURES: Readonly<Record<Arch, ArchSpec>> = TABLE

