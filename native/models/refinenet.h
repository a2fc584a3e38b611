// RefineNet (Lin, Milan, Shen, Reid: Multi-Path Refinement Networks for High-Resolution Semantic
// Segmentation, CVPR 2017), the 4-cascaded network on a ResNet at output stride 32.
#pragma once
#include "models/segmentation_model.h"

namespace segtorch {
ModelPtr CreateRefineNet(const ModelConfig& config);
}
