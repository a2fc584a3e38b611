// SegNet (Badrinarayanan, Kendall, Cipolla, TPAMI 2017): a VGG-16-BN encoder (the 13 conv layers,
// torchvision's names under backbone.features.*) whose max-pooling indices drive max_unpool2d in a
// mirrored decoder: dec5 .. dec1 (3x3 conv + BN + ReLU, mirroring the encoder's channels) and a
// 3x3 classifier conv at full resolution.
#pragma once
#include "models/segmentation_model.h"

namespace segtorch {
ModelPtr CreateSegNet(const ModelConfig& config);
}
