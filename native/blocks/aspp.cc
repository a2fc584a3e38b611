#include "blocks/aspp.h"
#include "blocks/batch_norm.h"
#include "blocks/conv2d.h"

#include "blocks/conv_bn_relu.h"
#include "blocks/resize.h"

namespace segtorch {

namespace nn = torch::nn;

ASPPImpl::ASPPImpl(const ASPPOptions& o) : options_(o) {
  int64_t in = o.in_channels(), out = o.out_channels();
  convs = register_module("convs", nn::ModuleList());
  branches_.push_back(ConvBNReLUSeq(in, out, 1));
  for (int64_t rate : o.rates()) {
    branches_.push_back(o.separable() ? SeparableConvBNReLUSeq(in, out, 3, rate) : ConvBNReLUSeq(in, out, 3, rate));
  }
  // Image pooling: children 0 (pool), 1 (conv), 2 (BN), 3 (ReLU) as torchvision's ASPPPooling.
  branches_.push_back(nn::Sequential(nn::AdaptiveAvgPool2d(nn::AdaptiveAvgPool2dOptions(1)),
                                     Conv2d(nn::Conv2dOptions(in, out, 1).bias(false)), BatchNorm2d(out),
                                     nn::ReLU()));
  for (auto& b : branches_) convs->push_back(b);
  int64_t n = static_cast<int64_t>(branches_.size());
  project = register_module("project", nn::Sequential(Conv2d(nn::Conv2dOptions(n * out, out, 1).bias(false)),
                                                      BatchNorm2d(out), nn::ReLU(), nn::Dropout(o.dropout())));
}

torch::Tensor ASPPImpl::forward(const torch::Tensor& x) {
  std::vector<torch::Tensor> res;
  res.reserve(branches_.size());
  for (size_t i = 0; i + 1 < branches_.size(); ++i) res.push_back(branches_[i]->forward(x));
  res.push_back(branches_.back()->forward(x));
  return ForwardSequential(*project, CatResized(res, x));
}

ASPPSumImpl::ASPPSumImpl(int64_t in_channels, int64_t num_classes, const std::vector<int64_t>& rates) {
  for (size_t i = 0; i < rates.size(); ++i) {
    int64_t r = rates[i];
    auto conv = Conv2d(nn::Conv2dOptions(in_channels, num_classes, 3).padding(r).dilation(r).bias(true));
    // The reference (Caffe's fc1_* layers): Gaussian std 0.01, bias 0.
    nn::init::normal_(conv->weight, 0.0, 0.01);
    nn::init::constant_(conv->bias, 0.0);
    branches_.push_back(register_module("c" + std::to_string(i), conv));
  }
}

torch::Tensor ASPPSumImpl::forward(const torch::Tensor& x) {
  torch::Tensor out = branches_[0]->forward(x);
  for (size_t i = 1; i < branches_.size(); ++i) out = out + branches_[i]->forward(x);
  return out;
}

}  // namespace segtorch
