// Dilated convolutions (Yu & Koltun, "Multi-Scale Context Aggregation by Dilated Convolutions",
// ICLR 2016; fyu/dilation): the VGG-16 front end (pool4 and pool5 removed, conv5 dilated 2, fc6 7x7
// dilated 4 with 4096 channels, fc7 1x1 4096, dropout, `final` 1x1 to the classes; output stride 8)
// plus the context module on the class scores: ctx_conv1_1, ctx_conv1_2, ctx_conv2_1 .. ctx_conv5_1,
// ctx_fc1 (3x3, dilations 1, 1, 2, 4, 8, 16, 1, each + ReLU) and ctx_final (1x1). Basic module: C
// channels throughout; large: 2C, 2C, 4C, 8C, 16C, 32C, 32C, then C. Scores are upsampled x8
// bilinearly to the input size.
#pragma once
#include "models/segmentation_model.h"

namespace segtorch {
ModelPtr CreateDilated(const ModelConfig& config);
}
