// FCN (Long, Shelhamer, Darrell 2015).
// ResNet backbones: the dilated-ResNet head as torchvision's fcn_resnet50/101: backbone.*,
// classifier.* (FCNHead on layer4), aux_classifier.* (on layer3).
// VGG backbones (vgg16, vgg16_bn): the classic FCN-32s/16s/8s (option variant) of the reference
// voc-fcn*s nets: backbone.features.*, fc6, fc7, score_fr, score_pool4, score_pool3, upscore*.
#pragma once
#include "models/segmentation_model.h"

namespace segtorch {
ModelPtr CreateFCN(const ModelConfig& config);
}
