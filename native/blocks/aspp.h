// Atrous spatial pyramid pooling, the DeepLab variants.
//
// ASPP (DeepLab v3 / v3+; torchvision's layout and names): convs.0 = 1x1 conv + BN + ReLU,
// convs.1..R = 3x3 convs with the given atrous rates + BN + ReLU (depthwise-separable with
// `separable`, as in DeepLab v3+), convs.R+1 = image pooling (global average, 1x1 conv + BN + ReLU,
// upsampled back); the branches are concatenated and `project`ed (1x1 conv + BN + ReLU + dropout).
//
// ASPPSum (DeepLab v2's ASPP-L): one 3x3 conv per rate straight to the class scores (with bias),
// named c0..c3 as in the reference re-implementations, summed.
#pragma once
#include <torch/torch.h>

#include <vector>

#include "blocks/conv2d.h"

namespace segtorch {

struct ASPPOptions {
  ASPPOptions(int64_t in_channels, std::vector<int64_t> rates) : in_channels_(in_channels), rates_(std::move(rates)) {}
  TORCH_ARG(int64_t, in_channels);
  TORCH_ARG(std::vector<int64_t>, rates);
  TORCH_ARG(int64_t, out_channels) = 256;
  // Depthwise-separable 3x3 branches (DeepLab v3+'s aspp_with_separable_conv).
  TORCH_ARG(bool, separable) = false;
  // Dropout after the projection: 0.5 in torchvision's DeepLab v3, 0.1 in DeepLab v3+'s reference.
  TORCH_ARG(double, dropout) = 0.5;
};

class ASPPImpl : public torch::nn::Module {
 public:
  explicit ASPPImpl(const ASPPOptions& options);
  torch::Tensor forward(const torch::Tensor& x);
  int64_t out_channels() const { return options_.out_channels(); }

  torch::nn::ModuleList convs{nullptr};
  torch::nn::Sequential project{nullptr};

 private:
  ASPPOptions options_;
  std::vector<torch::nn::Sequential> branches_;  // convs, typed
};
TORCH_MODULE(ASPP);

class ASPPSumImpl : public torch::nn::Module {
 public:
  ASPPSumImpl(int64_t in_channels, int64_t num_classes, const std::vector<int64_t>& rates);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  std::vector<Conv2d> branches_;
};
TORCH_MODULE(ASPPSum);

}  // namespace segtorch
