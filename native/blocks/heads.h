// Heads shared by several architectures.
#pragma once
#include <torch/torch.h>

namespace segtorch {

// torchvision's FCNHead: 3x3 conv (in -> in/4, no bias) + BN + ReLU + Dropout(0.1) + 1x1 conv -> classes.
// Children are indexed 0..4 so that parameter names match torchvision (classifier.0.weight, ...).
torch::nn::Sequential FCNHead(int64_t in_channels, int64_t num_classes);

}  // namespace segtorch
