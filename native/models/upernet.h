// UPerNet (Xiao et al., "Unified Perceptual Parsing for Scene Understanding", ECCV 2018), the
// semantic-segmentation head as mmsegmentation's UPerHead: a ResNet (output stride 32, no
// dilation); the pyramid pooling module on layer4 (bins 1, 2, 3, 6, `channels` each) followed by
// a 3x3 conv `bottleneck`; an FPN top-down path (1x1 `lateral_convs` on layer1..3, each level plus
// the upsampled coarser one, 3x3 `fpn_convs`); all four levels upsampled to stride 4,
// concatenated and fused by the 3x3 `fpn_bottleneck`; Dropout2d(0.1) and the 1x1 `conv_seg`.
// Every conv is conv (no bias) + BN + ReLU, `channels` wide (512 by default). With aux: true,
// an FCN head on layer3 (`auxiliary_head`: 3x3 conv to C/4 + BN + ReLU + dropout + 1x1; weight
// 0.4, as the mmseg configs), training only.
// Names: backbone.*, ppm.features.i.{1,2}, bottleneck.{0,1}, lateral_convs.i.{0,1},
// fpn_convs.i.{0,1}, fpn_bottleneck.{0,1}, conv_seg, auxiliary_head.{0,1,4}.
#pragma once
#include "models/segmentation_model.h"

namespace segtorch {
ModelPtr CreateUPerNet(const ModelConfig& config);
}
