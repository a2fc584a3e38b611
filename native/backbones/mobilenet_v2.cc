#include "backbones/mobilenet_v2.h"
#include "blocks/batch_norm.h"
#include "blocks/conv2d.h"

#include <string>

#include "blocks/conv_bn_relu.h"
#include "base/errors.h"

namespace segtorch {

namespace nn = torch::nn;

namespace {

// torchvision's Conv2dNormActivation with ReLU6: children 0 (conv, no bias), 1 (BN), 2 (ReLU6).
// A Sequential with a concrete forward, so that it can sit inside another Sequential.
class ConvBNReLU6Impl : public nn::SequentialImpl {
 public:
  ConvBNReLU6Impl(int64_t in, int64_t out, int64_t kernel, int64_t stride = 1, int64_t groups = 1, int64_t dilation = 1) {
    int64_t padding = (kernel - 1) / 2 * dilation;
    push_back(Conv2d(
        nn::Conv2dOptions(in, out, kernel).stride(stride).padding(padding).dilation(dilation).groups(groups).bias(false)));
    push_back(BatchNorm2d(out));
    // ReLU6 (blocks/conv2d.h Relu6: hardtanh on libtorch 2.x, clamp on 1.13, whose hardtanh backward has
    // no bf16 CPU kernel).
    push_back(nn::Functional([](const torch::Tensor& x) { return Relu6(x); }));
  }
  // The children's arithmetic in turn, or one oneDNN call with the folded BN and the ReLU6 as a
  // post-op where predict's copy prepacks the convolution (blocks/conv2d.h).
  torch::Tensor forward(torch::Tensor x) {
    return ConvBnAct(*ptr<Conv2dImpl>(0), *ptr<BatchNorm2dImpl>(1), x, Activation::kReLU6);
  }
};
TORCH_MODULE(ConvBNReLU6);

}  // namespace

InvertedResidualImpl::InvertedResidualImpl(int64_t in, int64_t out, int64_t stride, int64_t expand_ratio, int64_t dilation) {
  int64_t hidden = in * expand_ratio;
  use_res_connect_ = stride == 1 && in == out;
  nn::Sequential layers;
  if (expand_ratio != 1) layers->push_back(ConvBNReLU6(in, hidden, 1));
  layers->push_back(ConvBNReLU6(hidden, hidden, 3, stride, hidden, dilation));
  layers->push_back(Conv2d(nn::Conv2dOptions(hidden, out, 1).bias(false)));
  layers->push_back(BatchNorm2d(out));
  conv = register_module("conv", layers);
}

torch::Tensor InvertedResidualImpl::forward(const torch::Tensor& x) {
  // conv's children but the last two (projection conv + BN), then those with the residual addition
  // (a post-op where the convolution runs prepacked).
  torch::Tensor h = x;
  const size_t n = conv->size();
  auto it = conv->begin();
  for (size_t i = 0; i + 2 < n; ++i, ++it) h = it->forward(h);
  return ConvBnAct(*conv->ptr<Conv2dImpl>(n - 2), *conv->ptr<BatchNorm2dImpl>(n - 1), h, Activation::kNone,
                   use_res_connect_ ? x : torch::Tensor());
}

MobileNetV2Impl::MobileNetV2Impl(const MobileNetV2Options& o) {
  if (o.in_channels() < 1) ThrowRange("Expected inChannels >= 1 but received " + std::to_string(o.in_channels()));
  if (o.output_stride() != 8 && o.output_stride() != 16 && o.output_stride() != 32) {
    ThrowRange("Expected outputStride 8, 16 or 32 but received " + std::to_string(o.output_stride()));
  }
  // t (expansion), c (channels), n (blocks), s (stride of the first block): torchvision's table.
  const int64_t settings[7][4] = {{1, 16, 1, 1}, {6, 24, 2, 2}, {6, 32, 3, 2}, {6, 64, 4, 2},
                                  {6, 96, 3, 1}, {6, 160, 3, 2}, {6, 320, 1, 1}};
  features = nn::Sequential();
  features->push_back(ConvBNReLU6(o.in_channels(), 32, 3, 2));
  block_channels_ = {32};
  std::vector<int64_t> block_strides = {2};
  int64_t current_stride = 2, rate = 1, in = 32;
  for (const auto& s : settings) {
    for (int64_t i = 0; i < s[2]; ++i) {
      int64_t stride = i == 0 ? s[3] : 1;
      int64_t dilation = 1;
      if (current_stride == o.output_stride()) {
        // Past the output stride: no more striding; this block keeps the rate so far and the
        // blocks after it dilate by the stride it gave up (TensorFlow DeepLab's rule).
        dilation = rate;
        rate *= stride;
        stride = 1;
      } else {
        current_stride *= stride;
      }
      features->push_back(InvertedResidual(in, s[1], stride, s[0], dilation));
      in = s[1];
      block_channels_.push_back(in);
      block_strides.push_back(current_stride);
    }
  }
  if (o.last_conv()) {
    features->push_back(ConvBNReLU6(in, 1280, 1));
    block_channels_.push_back(1280);
    block_strides.push_back(current_stride);
  }
  register_module("features", features);
  taps_ = {3, 6, 13, block_channels_.size() - 1};
  for (auto t : taps_) {
    channels_.push_back(block_channels_[t]);
    strides_.push_back(block_strides[t]);
  }

  // torchvision's initialisation (kaiming fan-out convolutions, BN 1 / 0): the blocks' shared one.
  InitKaimingFanOut(*this);
}

std::vector<torch::Tensor> MobileNetV2Impl::forward_all(torch::Tensor x) {
  std::vector<torch::Tensor> out;
  out.reserve(features->size());
  for (auto& m : *features) {  // AnyModule::forward is non-const (libtorch 1.13 and 2.x)
    x = m.forward(x);
    out.push_back(x);
  }
  return out;
}

std::vector<torch::Tensor> MobileNetV2Impl::forward(torch::Tensor x) {
  auto all = forward_all(std::move(x));
  std::vector<torch::Tensor> out;
  for (auto t : taps_) out.push_back(all[t]);
  return out;
}

}  // namespace segtorch
