// ICNet (Zhao, Qi, Shen, Shi, Jia: ICNet for Real-Time Semantic Segmentation on High-Resolution
// Images, ECCV 2018): the image cascade with cascade feature fusion and cascade label guidance.
#pragma once
#include "models/segmentation_model.h"

namespace segtorch {
ModelPtr CreateICNet(const ModelConfig& config);
}
