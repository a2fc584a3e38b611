#include "backbones/xception.h"
#include "blocks/batch_norm.h"
#include "blocks/conv2d.h"

#include "blocks/conv_bn_relu.h"
#include "base/errors.h"

namespace segtorch {

namespace nn = torch::nn;

namespace {

// Depthwise 3x3 (stride, dilation) + BN + ReLU, pointwise 1x1 + BN (+ ReLU with `relu_out`).
class SeparableConvImpl : public nn::Module {
 public:
  SeparableConvImpl(int64_t in, int64_t out, int64_t stride, int64_t dilation, bool relu_out)
      : depthwise(register_module("depthwise", Conv2d(nn::Conv2dOptions(in, in, 3)
                                                                .stride(stride)
                                                                .padding(dilation)
                                                                .dilation(dilation)
                                                                .groups(in)
                                                                .bias(false)))),
        depthwise_bn(register_module("depthwise_bn", BatchNorm2d(in))),
        pointwise(register_module("pointwise", Conv2d(nn::Conv2dOptions(in, out, 1).bias(false)))),
        pointwise_bn(register_module("pointwise_bn", BatchNorm2d(out))),
        relu_out_(relu_out) {}
  torch::Tensor forward(const torch::Tensor& x) {
    auto y = pointwise_bn(pointwise(depthwise_bn(depthwise(x)).relu_()));
    return relu_out_ ? y.relu_() : y;
  }
  Conv2d depthwise;
  BatchNorm2d depthwise_bn;
  Conv2d pointwise;
  BatchNorm2d pointwise_bn;

 private:
  bool relu_out_;
};
TORCH_MODULE(SeparableConv);

enum class Skip { kConv, kSum, kNone };

// One Xception module: three separable convs (the last one strided), plus the shortcut.
class XceptionBlockImpl : public nn::Module {
 public:
  XceptionBlockImpl(int64_t in, std::vector<int64_t> depths, Skip skip, int64_t stride, int64_t dilation,
                    bool activation_in_separable)
      : skip_(skip), pre_activation_(!activation_in_separable) {
    int64_t c = in;
    for (int i = 0; i < 3; ++i) {
      sep_.push_back(register_module("separable_conv" + std::to_string(i + 1),
                                     SeparableConv(c, depths[i], i == 2 ? stride : 1, dilation, activation_in_separable)));
      c = depths[i];
    }
    if (skip == Skip::kConv) {
      shortcut_ = register_module("shortcut", Conv2d(nn::Conv2dOptions(in, depths[2], 1).stride(stride).bias(false)));
      shortcut_bn_ = register_module("shortcut_bn", BatchNorm2d(depths[2]));
    }
  }
  // `second`, when given, receives the output of the second separable conv.
  torch::Tensor forward(const torch::Tensor& x, torch::Tensor* second = nullptr) {
    torch::Tensor r = x;
    for (int i = 0; i < 3; ++i) {
      // Pre-activation: not in place, the input is still needed by the shortcut.
      if (pre_activation_) r = torch::relu(r);
      r = sep_[i]->forward(r);
      if (i == 1 && second != nullptr) *second = r;
    }
    switch (skip_) {
      case Skip::kConv: return r + shortcut_bn_(shortcut_(x));
      case Skip::kSum: return r + x;
      default: return r;
    }
  }

 private:
  Skip skip_;
  bool pre_activation_;
  std::vector<SeparableConv> sep_;
  Conv2d shortcut_{nullptr};
  BatchNorm2d shortcut_bn_{nullptr};
};
TORCH_MODULE(XceptionBlock);

}  // namespace

bool IsXception(const std::string& name) { return name == "xception65"; }

XceptionImpl::XceptionImpl(const XceptionOptions& o) {
  if (o.output_stride() != 8 && o.output_stride() != 16 && o.output_stride() != 32) {
    ThrowRange("Expected outputStride 8, 16 or 32 for xception65 but received " + std::to_string(o.output_stride()));
  }
  if (o.in_channels() < 1) ThrowRange("Expected inChannels >= 1 but received " + std::to_string(o.in_channels()));
  conv1_1_ = register_module("conv1_1", Conv2d(nn::Conv2dOptions(o.in_channels(), 32, 3).stride(2).padding(1).bias(false)));
  bn1_1_ = register_module("bn1_1", BatchNorm2d(32));
  conv1_2_ = register_module("conv1_2", Conv2d(nn::Conv2dOptions(32, 64, 3).padding(1).bias(false)));
  bn1_2_ = register_module("bn1_2", BatchNorm2d(64));

  // The reference's stack_blocks_dense: once the target stride is reached, a block runs with
  // stride 1 at the current rate and multiplies the rate by its nominal stride.
  int64_t current = 2, rate = 1;
  auto block = [&](int64_t in, std::vector<int64_t> depths, Skip skip, int64_t stride, bool act) {
    XceptionBlock b{nullptr};
    if (current == o.output_stride()) {
      b = XceptionBlock(in, depths, skip, 1, rate, act);
      rate *= stride;
    } else {
      b = XceptionBlock(in, depths, skip, stride, 1, act);
      current *= stride;
    }
    return b;
  };
  entry_flow_ = register_module("entry_flow", nn::ModuleList());
  entry_flow_->push_back(block(64, {128, 128, 128}, Skip::kConv, 2, false));
  int64_t low_level_stride = current;  // entry_flow.1's second separable conv runs before its stride
  entry_flow_->push_back(block(128, {256, 256, 256}, Skip::kConv, 2, false));
  entry_flow_->push_back(block(256, {728, 728, 728}, Skip::kConv, 2, false));
  int64_t entry_stride = current;
  middle_flow_ = register_module("middle_flow", nn::ModuleList());
  for (int64_t i = 0; i < o.middle_blocks(); ++i) middle_flow_->push_back(block(728, {728, 728, 728}, Skip::kSum, 1, false));
  exit_flow_ = register_module("exit_flow", nn::ModuleList());
  exit_flow_->push_back(block(728, {728, 1024, 1024}, Skip::kConv, 2, false));
  exit_flow_->push_back(block(1024, {1536, 1536, 2048}, Skip::kNone, 1, true));
  strides_ = {low_level_stride, entry_stride, entry_stride, current};

  InitKaimingFanOut(*this);
}

std::vector<torch::Tensor> XceptionImpl::forward(torch::Tensor x) {
  x = bn1_1_(conv1_1_(x)).relu_();
  x = bn1_2_(conv1_2_(x)).relu_();
  x = entry_flow_[0]->as<XceptionBlockImpl>()->forward(x);
  torch::Tensor low_level;
  x = entry_flow_[1]->as<XceptionBlockImpl>()->forward(x, &low_level);
  auto entry = entry_flow_[2]->as<XceptionBlockImpl>()->forward(x);
  x = entry;
  for (size_t i = 0; i < middle_flow_->size(); ++i) x = middle_flow_[i]->as<XceptionBlockImpl>()->forward(x);
  auto middle = x;
  x = exit_flow_[0]->as<XceptionBlockImpl>()->forward(x);
  x = exit_flow_[1]->as<XceptionBlockImpl>()->forward(x);
  return {low_level, entry, middle, x};
}

}  // namespace segtorch
