/**
 * The architectures users can create, their options and defaults. One entry per architecture,
 * mirroring native/models/registry.cc.
 */
export type ResNetBackbone = 'resnet18' | 'resnet34' | 'resnet50' | 'resnet101' | 'resnet152'
export type Backbone = ResNetBackbone
export type Arch = 'fcn'
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
  /** Whether `aux: true` (an auxiliary head for deep supervision) is available. */
  aux: boolean
  /** Options only this architecture has (passed to native code as `extra`). */
  options: Readonly<Record<string, OptionSpec>>
}

const RESNETS: readonly ResNetBackbone[] = ['resnet18', 'resnet34', 'resnet50', 'resnet101', 'resnet152']

export const ARCHITECTURES: Readonly<Record<Arch, ArchSpec>> = {
  fcn: {
    paper: 'Long, Shelhamer, Darrell: Fully Convolutional Networks for Semantic Segmentation (CVPR 2015); dilated-ResNet head as torchvision',
    backbones: RESNETS,
    defaultBackbone: 'resnet50',
    outputStrides: [8, 16, 32],
    defaultOutputStride: 8,
    aux: true,
    options: {}
  }
}
