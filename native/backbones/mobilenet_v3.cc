#include "backbones/mobilenet_v3.h"
#include "blocks/batch_norm.h"
#include "blocks/conv2d.h"

#include <string>

#include "blocks/conv_bn_relu.h"
#include "base/errors.h"

namespace segtorch {

namespace nn = torch::nn;

torch::Tensor HardSwish(const torch::Tensor& x) { return at::hardswish(x); }
torch::Tensor HardSigmoid(const torch::Tensor& x) { return at::hardsigmoid(x); }

namespace {

enum class Act { kNone, kReLU, kHardSwish };

// torchvision's BN for MobileNetV3.
BatchNorm2d BN(int64_t channels) { return BatchNorm2d(nn::BatchNormOptions(channels).eps(1e-3).momentum(0.01)); }

// torchvision's Conv2dNormActivation: children 0 (conv, no bias), 1 (BN), [2 (activation)].
class ConvBNActImpl : public nn::SequentialImpl {
 public:
  ConvBNActImpl(int64_t in, int64_t out, int64_t kernel, Act act, int64_t stride = 1, int64_t groups = 1,
                int64_t dilation = 1)
      : act_(act == Act::kReLU ? Activation::kReLU : act == Act::kHardSwish ? Activation::kHardSwish : Activation::kNone) {
    int64_t padding = (kernel - 1) / 2 * dilation;
    push_back(Conv2d(
        nn::Conv2dOptions(in, out, kernel).stride(stride).padding(padding).dilation(dilation).groups(groups).bias(false)));
    push_back(BN(out));
    if (act == Act::kReLU) push_back(nn::ReLU());
    if (act == Act::kHardSwish) push_back(nn::Functional(HardSwish));
  }
  // act(bn(conv(x))): children 0 and 1 as one oneDNN call with the activation as its post-op where
  // predict prepacks the convolution and folds the BN (blocks/conv2d.h ConvBnAct), child 2's
  // arithmetic otherwise.
  torch::Tensor forward(torch::Tensor x) { return ConvBnAct(*ptr<Conv2dImpl>(0), *ptr<BatchNorm2dImpl>(1), x, act_); }
  // act(bn(conv(x)) + add), the addition a post-op too where the convolution runs prepacked.
  torch::Tensor forward_add(const torch::Tensor& x, const torch::Tensor& add) {
    return ConvBnAct(*ptr<Conv2dImpl>(0), *ptr<BatchNorm2dImpl>(1), x, act_, add);
  }

 private:
  Activation act_;
};
TORCH_MODULE(ConvBNAct);

// torchvision's SqueezeExcitation with a hardsigmoid gate: global average, fc1 (1x1 conv with
// bias) + ReLU, fc2 (1x1 conv with bias) + hardsigmoid, times the input.
class SqueezeExcitationImpl : public nn::Module {
 public:
  SqueezeExcitationImpl(int64_t channels, int64_t squeeze) {
    fc1 = register_module("fc1", Conv2d(nn::Conv2dOptions(channels, squeeze, 1)));
    fc2 = register_module("fc2", Conv2d(nn::Conv2dOptions(squeeze, channels, 1)));
  }
  torch::Tensor forward(torch::Tensor x) {
    auto s = at::adaptive_avg_pool2d(x, {1, 1});
    s = HardSigmoid(fc2->forward(at::relu(fc1->forward(s))));
    return s * x;
  }
  Conv2d fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(SqueezeExcitation);

// The nearest multiple of 8 to v, not below 8 nor more than 10 % below v (the MobileNet rule for
// channel counts; the squeeze widths of the SE blocks come from it).
int64_t MakeDivisible(double v, int64_t divisor = 8) {
  int64_t rounded = std::max<int64_t>(divisor, static_cast<int64_t>(v + divisor / 2.0) / divisor * divisor);
  if (rounded < 0.9 * v) rounded += divisor;
  return rounded;
}

// One bottleneck (torchvision's InvertedResidual of mobilenetv3.py), children under `block`.
class InvertedResidualV3Impl : public nn::Module {
 public:
  InvertedResidualV3Impl(int64_t in, int64_t kernel, int64_t expanded, int64_t out, bool se, Act act, int64_t stride,
                 int64_t dilation)
      : use_res_(stride == 1 && in == out) {
    block = nn::Sequential();
    if (expanded != in) block->push_back(ConvBNAct(in, expanded, 1, act));
    block->push_back(ConvBNAct(expanded, expanded, kernel, act, stride, expanded, dilation));
    if (se) block->push_back(SqueezeExcitation(expanded, MakeDivisible(expanded / 4)));
    block->push_back(ConvBNAct(expanded, out, 1, Act::kNone));
    register_module("block", block);
  }
  torch::Tensor forward(torch::Tensor x) {
    // block's children but the last (the projection), then that with the residual addition (a oneDNN
    // post-op where the convolution runs prepacked: 8 separate additions in LR-ASPP's profile before).
    torch::Tensor h = x;
    const size_t n = block->size();
    auto it = block->begin();
    for (size_t i = 0; i + 1 < n; ++i, ++it) h = it->forward(h);
    return block->ptr<ConvBNActImpl>(n - 1)->forward_add(h, use_res_ ? x : torch::Tensor());
  }
  nn::Sequential block{nullptr};

 private:
  bool use_res_;
};
TORCH_MODULE(InvertedResidualV3);

struct BneckSetting {
  int64_t in, kernel, expanded, out;
  bool se, hardswish;
  int64_t stride;
};

// Table 1 of the paper, as torchvision's _mobilenet_v3_conf("mobilenet_v3_large").
const BneckSetting kLarge[] = {
    {16, 3, 16, 16, false, false, 1},    {16, 3, 64, 24, false, false, 2},   {24, 3, 72, 24, false, false, 1},
    {24, 5, 72, 40, true, false, 2},     {40, 5, 120, 40, true, false, 1},   {40, 5, 120, 40, true, false, 1},
    {40, 3, 240, 80, false, true, 2},    {80, 3, 200, 80, false, true, 1},   {80, 3, 184, 80, false, true, 1},
    {80, 3, 184, 80, false, true, 1},    {80, 3, 480, 112, true, true, 1},   {112, 3, 672, 112, true, true, 1},
    {112, 5, 672, 160, true, true, 2},   {160, 5, 960, 160, true, true, 1},  {160, 5, 960, 160, true, true, 1},
};

}  // namespace

MobileNetV3Impl::MobileNetV3Impl(const MobileNetV3Options& o) {
  if (o.in_channels() < 1) ThrowRange("Expected inChannels >= 1 but received " + std::to_string(o.in_channels()));
  if (o.output_stride() != 8 && o.output_stride() != 16 && o.output_stride() != 32) {
    ThrowRange("Expected outputStride 8, 16 or 32 but received " + std::to_string(o.output_stride()));
  }
  auto add = [&](nn::AnyModule m, int64_t channels, int64_t stride) {
    register_module(std::to_string(children_.size()), m.ptr());
    children_.push_back(std::move(m));
    block_channels_.push_back(channels);
    strides_.push_back(stride);  // per child for now; reduced to the taps below
  };
  add(nn::AnyModule(ConvBNAct(o.in_channels(), 16, 3, Act::kHardSwish, 2)), 16, 2);
  stage_indices_ = {0};
  int64_t current_stride = 2, rate = 1;
  for (const auto& s : kLarge) {
    int64_t stride = s.stride;
    if (stride > 1) {
      stage_indices_.push_back(static_cast<int64_t>(children_.size()));
      if (current_stride == o.output_stride()) {
        // torchvision's dilated stage: every block of it, the first included, dilates.
        rate *= stride;
        stride = 1;
      } else {
        current_stride *= stride;
      }
    }
    add(nn::AnyModule(InvertedResidualV3(s.in, s.kernel, s.expanded, s.out, s.se, s.hardswish ? Act::kHardSwish : Act::kReLU,
                                 stride, rate)),
        s.out, current_stride);
  }
  add(nn::AnyModule(ConvBNAct(160, 960, 1, Act::kHardSwish)), 960, current_stride);
  stage_indices_.push_back(static_cast<int64_t>(children_.size()) - 1);

  std::vector<int64_t> child_strides = std::move(strides_);
  strides_.clear();
  taps_ = {3, 6, 12, 16};
  for (auto t : taps_) {
    channels_.push_back(block_channels_[t]);
    strides_.push_back(child_strides[t]);
  }

  // torchvision's initialisation (kaiming fan-out convolutions, BN 1 / 0): the blocks' shared one.
  InitKaimingFanOut(*this);
}

std::vector<torch::Tensor> MobileNetV3Impl::forward_all(torch::Tensor x) {
  std::vector<torch::Tensor> out;
  out.reserve(children_.size());
  for (auto& m : children_) {
    x = m.forward(x);
    out.push_back(x);
  }
  return out;
}

std::vector<torch::Tensor> MobileNetV3Impl::forward(torch::Tensor x) {
  auto all = forward_all(std::move(x));
  std::vector<torch::Tensor> out;
  for (auto t : taps_) out.push_back(all[t]);
  return out;
}

}  // namespace segtorch
