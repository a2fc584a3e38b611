// LR-ASPP, the Lite Reduced Atrous Spatial Pyramid Pooling head (Howard et al., "Searching for
// MobileNetV3", 2019, section 6.1.2) as torchvision's lraspp_mobilenet_v3_large, same structure and
// parameter names:
//   backbone.0 ... backbone.16   MobileNetV3-Large, last stage dilated (output stride 16)
//   classifier.cbr               1x1 conv 960 -> 128 (no bias) + BN + ReLU on the deepest map
//   classifier.scale.1           1x1 conv 960 -> 128 (no bias) after a global average, sigmoid:
//                                a squeeze-excitation-like gate on cbr's output
//   classifier.high_classifier   1x1 conv 128 -> K on the gated map, upsampled to the low map
//   classifier.low_classifier    1x1 conv 40 -> K on backbone.4 (stride 8), added
// The sum is upsampled bilinearly to the input size. Any input size, no padding (torchvision's
// own behaviour). interChannels (128) is torchvision's inter_channels.
#pragma once
#include "models/segmentation_model.h"

namespace segtorch {
ModelPtr CreateLRASPP(const ModelConfig& config);
}
