// DeepLab v3 (Chen et al., "Rethinking Atrous Convolution for Semantic Image Segmentation", 2017)
// as torchvision's deeplabv3_resnet50/101, same structure and parameter names:
//   backbone.*        dilated ResNet (output stride 8 by default, as torchvision; 16 allowed), or
//                     MobileNetV3-Large as deeplabv3_mobilenet_v3_large (backbone.0 ... backbone.16,
//                     output stride 16 by default; ASPP rates 12, 24, 36 there too, aux head on
//                     backbone.4, no padding of the input)
//   classifier.0      ASPP: convs.0 (1x1), convs.1..3 (3x3, rates 12, 24, 36 at output stride 8;
//                     6, 12, 18 at 16), convs.4 (image pooling), project (1x1 + BN + ReLU +
//                     dropout 0.5), all 256 channels with BN
//   classifier.1..4   3x3 conv 256 (no bias) + BN + ReLU + 1x1 conv to the classes
//   aux_classifier.*  with aux: true, torchvision's FCNHead on layer3 (training only)
#pragma once
#include "models/segmentation_model.h"

namespace segtorch {
ModelPtr CreateDeepLabV3(const ModelConfig& config);
}
