// DeepLab v1, LargeFOV variant (Chen, Papandreou, Kokkinos, Murphy, Yuille, "Semantic Image
// Segmentation with Deep Convolutional Nets and Fully Connected CRFs", ICLR 2015; the
// DeepLab-LargeFOV train.prototxt): VGG-16 with 3x3 max pooling (padding 1) everywhere, pool4 and
// pool5 at stride 1, conv5 dilated 2, a 3x3 average pool (pool5a), fc6 3x3 dilated 12 with 1024
// channels (fcChannels), fc7 1x1 1024 (ReLU + dropout 0.5 after each) and fc8 1x1 to the classes; output stride
// 8, scores upsampled bilinearly to the input size. No CRF.
#pragma once
#include "models/segmentation_model.h"

namespace segtorch {
ModelPtr CreateDeepLabV1(const ModelConfig& config);
}
