#include "backbones/vgg.h"
#include "blocks/batch_norm.h"
#include "blocks/conv2d.h"
#include "blocks/max_pool.h"

#include "base/errors.h"

namespace segtorch {

namespace nn = torch::nn;

namespace {
// torchvision's configuration "D" (VGG-16): output channels of each 3x3 conv, per block.
const std::vector<std::vector<int64_t>> kVGG16 = {{64, 64}, {128, 128}, {256, 256, 256}, {512, 512, 512}, {512, 512, 512}};
}  // namespace

bool IsVGG(const std::string& name) { return name == "vgg16" || name == "vgg16_bn"; }

VGGImpl::VGGImpl(const VGGOptions& o) : output_stride_(o.output_stride()) {
  if (o.in_channels() < 1) ThrowRange("Expected inChannels >= 1 but received " + std::to_string(o.in_channels()));
  if (o.output_stride() != 8 && o.output_stride() != 16 && o.output_stride() != 32) {
    ThrowRange("Expected a VGG output stride of 8, 16 or 32 but received " + std::to_string(o.output_stride()));
  }
  if (o.pool_kernel() != 2 && o.pool_kernel() != 3) {
    ThrowRange("Expected a VGG pooling kernel of 2 or 3 but received " + std::to_string(o.pool_kernel()));
  }
  features = nn::Sequential();
  int64_t in = o.in_channels();
  int64_t stride = 1;
  for (size_t b = 0; b < kVGG16.size(); ++b) {
    // Output stride 8: pool4 and pool5 keep the resolution, conv5 is dilated by 2.
    bool strided = !((o.output_stride() <= 8 && b == 3) || (o.output_stride() <= 16 && b == 4));
    int64_t dilation = (o.output_stride() == 8 && b == 4) ? 2 : 1;
    size_t begin = features->size();
    for (int64_t out : kVGG16[b]) {
      features->push_back(Conv2d(nn::Conv2dOptions(in, out, 3).padding(dilation).dilation(dilation)));
      if (o.batch_norm()) features->push_back(BatchNorm2d(out));
      features->push_back(nn::ReLU(nn::ReLUOptions().inplace(true)));
      in = out;
    }
    blocks_.emplace_back(begin, features->size());
    pools_.push_back(features->size());
    if (o.pool_kernel() == 2) {
      if (strided) {
        features->push_back(nn::Functional([](const torch::Tensor& x) { return MaxPool2d(x, 2, 2); }));
      } else {
        features->push_back(nn::Identity());
      }
    } else {
      const int64_t s = strided ? 2 : 1;
      features->push_back(nn::Functional([s](const torch::Tensor& x) { return MaxPool2d(x, 3, s, 1); }));
    }
    if (strided) stride *= 2;
    strides_.push_back(stride);
  }
  register_module("features", features);

  // torchvision's initialisation
  for (auto& m : modules(/*include_self=*/false)) {
    if (auto* conv = m->as<torch::nn::Conv2d>()) {
      nn::init::kaiming_normal_(conv->weight, 0.0, torch::kFanOut, torch::kReLU);
      nn::init::constant_(conv->bias, 0.0);
    } else if (auto* bn = m->as<BatchNorm2d>()) {
      nn::init::constant_(bn->weight, 1.0);
      nn::init::constant_(bn->bias, 0.0);
    }
  }
}

torch::Tensor VGGImpl::block(int64_t i, torch::Tensor x) {
  return ForwardSequential(features, std::move(x), blocks_.at(i).first, blocks_.at(i).second);
}

torch::Tensor VGGImpl::pool(int64_t i, torch::Tensor x) { return (features->begin() + pools_.at(i))->forward(x); }

std::vector<torch::Tensor> VGGImpl::forward(torch::Tensor x) {
  std::vector<torch::Tensor> out;
  for (int64_t i = 0; i < static_cast<int64_t>(blocks_.size()); ++i) {
    x = pool(i, block(i, x));
    out.push_back(x);
  }
  return out;
}

}  // namespace segtorch
