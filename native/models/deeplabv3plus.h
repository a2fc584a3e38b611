// DeepLab v3+ (Chen et al., "Encoder-Decoder with Atrous Separable Convolution", ECCV 2018):
// the DeepLab v3 encoder (backbone + ASPP with image pooling; rates 6, 12, 18 at output stride 16,
// doubled at 8) and the decoder of the reference (tensorflow/models research/deeplab): the
// stride-4 low-level feature projected to 48 channels (1x1 conv + BN + ReLU), the ASPP output
// upsampled to it, concatenated, two 3x3 convs of 256 (+ BN + ReLU), a 1x1 classifier and
// bilinear upsampling to the input. `separable`: depthwise-separable 3x3 convs in the ASPP and the
// decoder (the paper's best models). Backbones: ResNet (low-level feature: layer1) and aligned
// Xception-65 (backbones/xception.h).
// Names: backbone.*, aspp.{convs,project}.*, decoder.{feature_projection,decoder_conv0,
// decoder_conv1}.*, classifier.*.
#pragma once
#include "models/segmentation_model.h"

namespace segtorch {
ModelPtr CreateDeepLabV3Plus(const ModelConfig& config);
}
