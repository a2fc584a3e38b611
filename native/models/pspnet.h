// PSPNet (Zhao et al., "Pyramid Scene Parsing Network", CVPR 2017), as the authors' PyTorch
// reference (hszhao/semseg): a dilated ResNet at output stride 8, the pyramid pooling module on
// layer4 (bins 1, 2, 3, 6, each reduced to C/4 channels by 1x1 conv + BN + ReLU, upsampled and
// concatenated with the input), then `cls`: 3x3 conv 512 + BN + ReLU + Dropout2d(0.1) + 1x1
// conv to the classes. With aux: true, the deep-supervision head `aux` on layer3 (3x3 conv 256 +
// BN + ReLU + Dropout2d(0.1) + 1x1 conv), training only.
// Names: backbone.* (torchvision's ResNet), ppm.features.i.{1,2}, cls.{0,1,4}, aux.{0,1,4}.
// Bilinear upsampling with align_corners=false (the reference uses true with 8k+1 input sizes;
// segtorch pads to multiples of 8).
#pragma once
#include "models/segmentation_model.h"

namespace segtorch {
ModelPtr CreatePSPNet(const ModelConfig& config);
}
