// MobileNetV3-Large (Howard et al., "Searching for MobileNetV3", 2019) as torchvision's
// mobilenet_v3_large(...).features, seen through the IntermediateLayerGetter of its segmentation
// models: children 0..16 registered on the backbone itself, so parameter names are torchvision's
// `backbone.0.0.weight`, `backbone.13.block.2.fc1.weight`, ... (2,971,952 parameters for 3 input
// channels).
//   0       3x3 conv stride 2 (16) + BN + hardswish
//   1..15   bottlenecks (`block` Sequential: [1x1 expand + BN + act], kxk depthwise + BN + act,
//           [squeeze-excitation fc1/fc2 with hardsigmoid gate], 1x1 projection + BN; identity added
//           when stride 1 and in == out); act is ReLU in the first six, hardswish after
//   16      1x1 conv 160 -> 960 + BN + hardswish
// Every BN has eps 1e-3 and momentum 0.01, as torchvision's.
//
// Output stride 16 is torchvision's dilated=True (what its deeplabv3 / lraspp use): the last stage
// (13..15) keeps stride 1 and its depthwise convolutions dilate by 2, its first block included.
// Output stride 8 applies the same rule one stage earlier (7..12 dilation 2, 13..15 dilation 4);
// 32 is the classification network.
#pragma once
#include <torch/torch.h>

#include <vector>

#include "backbones/backbone.h"

namespace segtorch {

struct MobileNetV3Options {
  TORCH_ARG(int64_t, in_channels) = 3;
  TORCH_ARG(int64_t, output_stride) = 16;
};

class MobileNetV3Impl : public BackboneImpl {
 public:
  explicit MobileNetV3Impl(const MobileNetV3Options& options = {});
  // Ends of the stride-4, 8 and 16 levels and the last conv: the outputs of 3 (24 ch), 6 (40),
  // 12 (112) and 16 (960).
  std::vector<torch::Tensor> forward(torch::Tensor x) override;
  // The output of every child 0..16, in order.
  std::vector<torch::Tensor> forward_all(torch::Tensor x);
  std::vector<int64_t> channels() const override { return channels_; }
  std::vector<int64_t> strides() const override { return strides_; }
  // Channels of child i's output.
  const std::vector<int64_t>& block_channels() const { return block_channels_; }
  // torchvision's stage_indices: 0, the blocks that stride (in the undilated network) and the last
  // child: {0, 2, 4, 7, 13, 16}. Its segmentation heads read stage_indices[-4] (4, C2, stride 8)
  // and stage_indices[-1] (16).
  const std::vector<int64_t>& stage_indices() const { return stage_indices_; }

 private:
  std::vector<torch::nn::AnyModule> children_;
  std::vector<int64_t> channels_, strides_, block_channels_, stage_indices_;
  std::vector<size_t> taps_;
};
TORCH_MODULE(MobileNetV3);

// Hardswish and hardsigmoid (at::hardswish / at::hardsigmoid; both have bf16 CPU backward kernels
// in libtorch 1.13, unlike hardtanh, so no composite is needed as for ReLU6).
torch::Tensor HardSwish(const torch::Tensor& x);
torch::Tensor HardSigmoid(const torch::Tensor& x);

}  // namespace segtorch
