#include "blocks/ppm.h"
#include "blocks/batch_norm.h"
#include "blocks/conv2d.h"

#include "blocks/resize.h"

namespace segtorch {

namespace nn = torch::nn;

PPMImpl::PPMImpl(const PPMOptions& o) : options_(o) {
  features = register_module("features", nn::ModuleList());
  for (int64_t bin : o.bins()) {
    auto branch = nn::Sequential(nn::AdaptiveAvgPool2d(nn::AdaptiveAvgPool2dOptions(bin)),
                                 Conv2d(nn::Conv2dOptions(o.in_channels(), o.channels(), 1).bias(false)),
                                 BatchNorm2d(o.channels()), nn::ReLU());
    branches_.push_back(branch);
    features->push_back(branch);
  }
}

torch::Tensor PPMImpl::forward(const torch::Tensor& x) {
  std::vector<torch::Tensor> out{x};
  for (auto& b : branches_) out.push_back(ForwardSequential(b, x));
  return CatResized(out, x, options_.align_corners());
}

}  // namespace segtorch
