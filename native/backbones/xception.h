// Aligned Xception-65, the backbone of DeepLab v3+ (Chen et al. 2018; tensorflow/models
// research/deeplab/core/xception.py, after MSRA's modified Xception):
//   entry flow: conv1_1 (3x3/2, 32) and conv1_2 (3x3, 64), each + BN + ReLU; blocks of three
//               separable convs (128, 256, 728 channels), each block strided by its last separable
//               conv (every max pooling of Xception replaced by a strided separable conv), with a
//               1x1 conv + BN shortcut;
//   middle flow: 16 blocks of three 728-channel separable convs with identity shortcuts;
//   exit flow:  block1 (728, 1024, 1024; strided; conv shortcut), block2 (1536, 1536, 2048; no
//               shortcut; ReLU after every pointwise conv).
// Every separable conv is depthwise 3x3 + BN + ReLU + pointwise 1x1 + BN (the paper: "extra batch
// normalization and ReLU activation are added after each 3x3 depthwise convolution"); the blocks
// before exit block2 are pre-activated (ReLU before each separable conv), as the reference.
// Output stride 32, 16 or 8: once the stride is reached, the later blocks run unstrided with
// dilation (the reference's stack_blocks_dense).
//
// forward() returns, shallow to deep: the stride-4 low-level feature of the DeepLab v3+ decoder
// (entry_flow.1's second separable conv, 256 channels, the reference's
// entry_flow/block2/unit_1/xception_module/separable_conv2_pointwise), the entry flow's output
// (728, stride 16 at most), the middle flow's output (728) and the exit flow's output (2048).
// Names: conv1_1, bn1_1, conv1_2, bn1_2, entry_flow.{0..2}, middle_flow.{0..15}, exit_flow.{0,1},
// each block with separable_conv{1,2,3}.{depthwise,depthwise_bn,pointwise,pointwise_bn} and
// shortcut / shortcut_bn.
#pragma once
#include <torch/torch.h>

#include <vector>

#include "backbones/backbone.h"
#include "blocks/batch_norm.h"
#include "blocks/conv2d.h"

namespace segtorch {

struct XceptionOptions {
  TORCH_ARG(int64_t, in_channels) = 3;
  TORCH_ARG(int64_t, output_stride) = 16;
  // Blocks in the middle flow: 16 for Xception-65 (8 for Xception-41).
  TORCH_ARG(int64_t, middle_blocks) = 16;
};

class XceptionImpl : public BackboneImpl {
 public:
  explicit XceptionImpl(const XceptionOptions& options);
  std::vector<torch::Tensor> forward(torch::Tensor x) override;
  std::vector<int64_t> channels() const override { return {256, 728, 728, 2048}; }
  std::vector<int64_t> strides() const override { return strides_; }

 private:
  Conv2d conv1_1_{nullptr}, conv1_2_{nullptr};
  BatchNorm2d bn1_1_{nullptr}, bn1_2_{nullptr};
  torch::nn::ModuleList entry_flow_{nullptr}, middle_flow_{nullptr}, exit_flow_{nullptr};
  std::vector<int64_t> strides_;
};
TORCH_MODULE(Xception);

bool IsXception(const std::string& name);

}  // namespace segtorch
