// DeepLab v2 (Chen et al., TPAMI 2017): a dilated ResNet (ResNet-101 by default) at output stride 8
// and ASPP-L: four 3x3 convs with atrous rates 6, 12, 18, 24 straight to the class scores, summed,
// then bilinear upsampling. Names: backbone.* (torchvision's ResNet), aspp.c0..c3.
#pragma once
#include "models/segmentation_model.h"

namespace segtorch {
ModelPtr CreateDeepLabV2(const ModelConfig& config);
}
