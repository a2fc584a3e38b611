// FCN (Long, Shelhamer, Darrell 2015) with a dilated ResNet backbone, as torchvision's
// fcn_resnet50/101: backbone.*, classifier.* (FCNHead on layer4), aux_classifier.* (on layer3).
#pragma once
#include "models/segmentation_model.h"

namespace segtorch {
ModelPtr CreateFCN(const ModelConfig& config);
}
