#include "blocks/refinenet.h"

#include <string>

#include "blocks/conv2d.h"
#include "blocks/max_pool.h"
#include "blocks/relu.h"

namespace segtorch {

namespace nn = torch::nn;

RCUBlockImpl::RCUBlockImpl(int64_t channels, int64_t blocks) {
  for (int64_t i = 1; i <= blocks; ++i) {
    auto a = register_module(std::to_string(i) + "_conv", Conv2d(nn::Conv2dOptions(channels, channels, 3).padding(1).bias(true)));
    auto b = register_module(std::to_string(i) + "_conv_relu_varout_dimred",
                             Conv2d(nn::Conv2dOptions(channels, channels, 3).padding(1).bias(false)));
    units_.emplace_back(a, b);
  }
}

torch::Tensor RCUBlockImpl::forward(torch::Tensor x) {
  // x + conv2(relu(conv1(relu(x)))): the inner ReLU and the addition inside the convolutions where they run fused.
  // The addition may write into x (given up here: nothing else uses it afterwards).
  for (auto& u : units_) {
    torch::Tensor h = u.first->ForwardAct(Relu(x), Activation::kReLU);
    x = u.second->ForwardAct(h, Activation::kNone, std::move(x));
  }
  return x;
}

CRPBlockImpl::CRPBlockImpl(int64_t channels, int64_t stages, int64_t kernel, bool depthwise) {
  for (int64_t i = 1; i <= stages; ++i) {
    convs_.push_back(register_module(std::to_string(i) + "_outvar_dimred",
                                     Conv2d(nn::Conv2dOptions(channels, channels, kernel)
                                                    .padding(kernel / 2)
                                                    .groups(depthwise ? channels : 1)
                                                    .bias(false))));
  }
}

torch::Tensor CRPBlockImpl::forward(torch::Tensor x) {
  // x + top_1 + ... + top_n, top_i = conv_i(pool(top_i-1)): each top feeds the next stage, so only the last
  // addition can go into its convolution (a post-op where it runs fused).
  torch::Tensor top = x;
  for (size_t i = 0; i < convs_.size(); ++i) {
    if (i + 1 == convs_.size()) {
      torch::Tensor pooled = MaxPool2d(top, 5, 1, 2);
      top.reset();
      return convs_[i]->ForwardAct(pooled, Activation::kNone, std::move(x));
    }
    top = convs_[i](MaxPool2d(top, 5, 1, 2));
    x = x + top;
  }
  return x;
}

nn::Sequential RCUStack(int64_t channels, int64_t blocks) { return nn::Sequential(RCUBlock(channels, blocks)); }

nn::Sequential CRPStack(int64_t channels, int64_t stages, int64_t kernel, bool depthwise) {
  return nn::Sequential(CRPBlock(channels, stages, kernel, depthwise));
}

}  // namespace segtorch
