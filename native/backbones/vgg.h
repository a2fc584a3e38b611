// VGG-16 and VGG-16-BN feature extractors with torchvision's layout and parameter names: one
// Sequential `features` whose children are indexed as torchvision's vgg16().features
// (features.0.weight ... features.28.bias; with batch norm features.0 conv, features.1 bn, ...), so
// that torchvision's features state dict loads under "backbone.features.".
//
// Output stride 32 (torchvision), 16 or 8: the strides of pool5 (16) or pool4 and pool5 (8) are
// removed, and conv5 is dilated by 2 at output stride 8. With 2x2 pooling (torchvision, FCN, Yu &
// Koltun) a pool whose stride is removed is dropped (an Identity in its slot); with 3x3 pooling
// (DeepLab-v1: kernel 3, padding 1 everywhere) it becomes a stride-1 3x3 pool. Pooling modules hold
// no parameters, so every variant loads the same state dict.
#pragma once
#include <torch/torch.h>

#include <string>
#include <vector>

#include "backbones/backbone.h"

namespace segtorch {

struct VGGOptions {
  explicit VGGOptions(bool batch_norm) : batch_norm_(batch_norm) {}
  TORCH_ARG(bool, batch_norm);
  TORCH_ARG(int64_t, in_channels) = 3;
  // 32, 16 or 8.
  TORCH_ARG(int64_t, output_stride) = 32;
  // 2: torchvision's 2x2 stride-2 max pooling; 3: DeepLab-v1's 3x3 pooling with padding 1.
  TORCH_ARG(int64_t, pool_kernel) = 2;
};

class VGGImpl : public BackboneImpl {
 public:
  explicit VGGImpl(const VGGOptions& options);
  // pool1..pool5 outputs (channels 64, 128, 256, 512, 512).
  std::vector<torch::Tensor> forward(torch::Tensor x) override;
  // The convolutions (+ batch norm) + ReLUs of block i (0..4), without its pooling.
  torch::Tensor block(int64_t i, torch::Tensor x);
  // The pooling that ends block i (an Identity where its stride was removed with 2x2 pooling).
  torch::Tensor pool(int64_t i, torch::Tensor x);
  std::vector<int64_t> channels() const override { return {64, 128, 256, 512, 512}; }
  std::vector<int64_t> strides() const override { return strides_; }
  // Dilation that layers placed after the backbone need to keep their field of view: 32 / output stride.
  int64_t head_dilation() const { return 32 / output_stride_; }

  torch::nn::Sequential features{nullptr};

 private:
  // [begin, end) indices in `features` of each block's layers, and the index of its pool.
  std::vector<std::pair<size_t, size_t>> blocks_;
  std::vector<size_t> pools_;
  std::vector<int64_t> strides_;
  int64_t output_stride_ = 32;
};
TORCH_MODULE(VGG);

bool IsVGG(const std::string& name);  // "vgg16", "vgg16_bn"

}  // namespace segtorch
