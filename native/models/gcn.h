// GCN (Peng, Zhang, Yu, Luo, Sun: Large Kernel Matters - Improve Semantic Segmentation by Global
// Convolutional Network, CVPR 2017).
#pragma once
#include "models/segmentation_model.h"

namespace segtorch {
ModelPtr CreateGCN(const ModelConfig& config);
}
