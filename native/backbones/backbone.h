// What every backbone is: a module that maps images to feature maps from shallow to deep.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

namespace segtorch {

class BackboneImpl : public torch::nn::Module {
 public:
  // Feature maps from shallow to deep (ResNet: layer1..layer4).
  virtual std::vector<torch::Tensor> forward(torch::Tensor x) = 0;
  // Channels of each feature map.
  virtual std::vector<int64_t> channels() const = 0;
  // Stride of each feature map with respect to the input, after dilation (ResNet at output
  // stride 8: {4, 8, 8, 8}).
  virtual std::vector<int64_t> strides() const = 0;
};
using BackbonePtr = std::shared_ptr<BackboneImpl>;

// "resnet50", "vgg16", "mobilenetv2", ... -> a backbone; RangeError listing the names otherwise.
BackbonePtr CreateBackbone(const std::string& name, int64_t in_channels, int64_t output_stride);
std::vector<std::string> BackboneNames();

}  // namespace segtorch
