// Conv + BN + ReLU as indexed Sequentials (children 0, 1, 2, ...), the layout torchvision uses for
// ASPP branches and segmentation heads, so that parameter names read `<name>.0.weight`,
// `<name>.1.running_mean`, ...
#pragma once
#include <torch/torch.h>

namespace segtorch {

// k x k conv (no bias, "same" padding for the dilation) + BN + ReLU: children 0, 1, 2.
torch::nn::Sequential ConvBNReLUSeq(int64_t in_channels, int64_t out_channels, int64_t kernel, int64_t dilation = 1);

// Depthwise-separable k x k conv as DeepLab v3+ uses it in ASPP and the decoder: depthwise conv
// (dilated, no bias) + BN + ReLU, pointwise 1x1 conv (no bias) + BN + ReLU: children 0..5.
torch::nn::Sequential SeparableConvBNReLUSeq(int64_t in_channels, int64_t out_channels, int64_t kernel = 3,
                                             int64_t dilation = 1);

// He initialisation of every Conv2d below `module` (normal, fan_out, ReLU gain; bias 0) and
// BN weight 1, bias 0: torchvision's ResNet / mmseg's ConvModule initialisation.
void InitKaimingFanOut(torch::nn::Module& module);

}  // namespace segtorch
