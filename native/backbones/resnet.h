// ResNet-18/34/50/101/152 with torchvision's layout and parameter names
// (conv1, bn1, layer1..layer4, blocks with conv1/bn1/conv2/bn2[/conv3/bn3] and downsample.0/.1).
// Output stride 32, 16 or 8 by replacing strides with dilation, as torchvision's
// replace_stride_with_dilation does; unlike torchvision, BasicBlock (ResNet-18/34) dilates too.
#pragma once
#include <torch/torch.h>

#include "backbones/backbone.h"
#include "blocks/batch_norm.h"
#include "blocks/conv2d.h"

#include <vector>

namespace segtorch {

struct ResNetOptions {
  ResNetOptions(int64_t depth) : depth_(depth) {}
  TORCH_ARG(int64_t, depth);
  TORCH_ARG(int64_t, in_channels) = 3;
  TORCH_ARG(int64_t, output_stride) = 32;
};

class ResNetImpl : public BackboneImpl {
 public:
  explicit ResNetImpl(const ResNetOptions& options);
  // Feature maps after layer1..layer4 (strides 4, 8, 16, 32 before dilation).
  std::vector<torch::Tensor> forward(torch::Tensor x) override;
  // The stem alone (conv1, bn1, relu, maxpool): stride 4.
  torch::Tensor stem(torch::Tensor x);
  // Channels of layer1..layer4 outputs.
  std::vector<int64_t> channels() const override { return channels_; }
  std::vector<int64_t> strides() const override { return strides_; }

  Conv2d conv1{nullptr};
  BatchNorm2d bn1{nullptr};
  torch::nn::Sequential layer1{nullptr}, layer2{nullptr}, layer3{nullptr}, layer4{nullptr};

 private:
  torch::nn::Sequential make_layer(bool bottleneck, int64_t planes, int64_t blocks, int64_t stride, bool dilate);
  int64_t inplanes_ = 64;
  int64_t dilation_ = 1;
  std::vector<int64_t> channels_;
  std::vector<int64_t> strides_;
};
TORCH_MODULE(ResNet);

bool IsResNet(const std::string& name);
int64_t ResNetDepth(const std::string& name);  // "resnet50" -> 50

}  // namespace segtorch
