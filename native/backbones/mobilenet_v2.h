// MobileNetV2 (Sandler et al. 2018) with torchvision's layout and parameter names: features.0
// (3x3 conv stride 2 + BN + ReLU6), features.1..17 (InvertedResidual blocks, each a `conv`
// Sequential), features.18 (1x1 conv 320 -> 1280 + BN + ReLU6). torchvision's mobilenet_v2
// features hold 2,223,872 parameters; without features.18, 1,811,712.
// Output stride 32, 16 or 8: a stride-2 block past the output stride keeps stride 1 and the later
// depthwise convolutions dilate (as TensorFlow's DeepLab MobileNetV2 does).
#pragma once
#include <torch/torch.h>

#include <vector>

#include "backbones/backbone.h"

namespace segtorch {

struct MobileNetV2Options {
  TORCH_ARG(int64_t, in_channels) = 3;
  TORCH_ARG(int64_t, output_stride) = 32;
  // features.18 (1x1 conv to 1280 channels). Without it the deepest map is features.17's 320
  // channels, as Light-Weight RefineNet (and DeepLabV3+) use the network.
  TORCH_ARG(bool, last_conv) = true;
};

class InvertedResidualImpl : public torch::nn::Module {
 public:
  // torchvision's block: [1x1 expand + BN + ReLU6 when expand_ratio != 1], 3x3 depthwise (stride,
  // dilation) + BN + ReLU6, 1x1 linear projection + BN; identity added when stride 1 and in == out.
  InvertedResidualImpl(int64_t in, int64_t out, int64_t stride, int64_t expand_ratio, int64_t dilation = 1);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Sequential conv{nullptr};

 private:
  bool use_res_connect_ = false;
};
TORCH_MODULE(InvertedResidual);

class MobileNetV2Impl : public BackboneImpl {
 public:
  explicit MobileNetV2Impl(const MobileNetV2Options& options = {});
  // Feature maps at strides 4, 8, 16, 32 (before dilation): the outputs of features.3 (24 ch),
  // features.6 (32), features.13 (96) and features.18 (1280; features.17, 320, without last_conv).
  std::vector<torch::Tensor> forward(torch::Tensor x) override;
  // The output of every features.i, in order (decoders that tap more stages: Light-Weight RefineNet).
  std::vector<torch::Tensor> forward_all(torch::Tensor x);
  std::vector<int64_t> channels() const override { return channels_; }
  std::vector<int64_t> strides() const override { return strides_; }
  // Channels of features.i's output.
  const std::vector<int64_t>& block_channels() const { return block_channels_; }

  torch::nn::Sequential features{nullptr};

 private:
  std::vector<int64_t> channels_, strides_, block_channels_;
  std::vector<size_t> taps_;  // indices of the features.i returned by forward()
};
TORCH_MODULE(MobileNetV2);

}  // namespace segtorch
