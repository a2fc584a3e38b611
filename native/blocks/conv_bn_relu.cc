#include "blocks/conv_bn_relu.h"
#include "blocks/batch_norm.h"
#include "blocks/conv2d.h"

namespace segtorch {

namespace nn = torch::nn;

nn::Sequential ConvBNReLUSeq(int64_t in_channels, int64_t out_channels, int64_t kernel, int64_t dilation) {
  int64_t pad = dilation * (kernel - 1) / 2;
  return nn::Sequential(
      Conv2d(nn::Conv2dOptions(in_channels, out_channels, kernel).padding(pad).dilation(dilation).bias(false)),
      BatchNorm2d(out_channels), nn::ReLU());
}

nn::Sequential SeparableConvBNReLUSeq(int64_t in_channels, int64_t out_channels, int64_t kernel, int64_t dilation) {
  int64_t pad = dilation * (kernel - 1) / 2;
  return nn::Sequential(Conv2d(nn::Conv2dOptions(in_channels, in_channels, kernel)
                                       .padding(pad)
                                       .dilation(dilation)
                                       .groups(in_channels)
                                       .bias(false)),
                        BatchNorm2d(in_channels), nn::ReLU(),
                        Conv2d(nn::Conv2dOptions(in_channels, out_channels, 1).bias(false)),
                        BatchNorm2d(out_channels), nn::ReLU());
}

namespace {
void InitOne(nn::Module& m) {
  if (auto* conv = m.as<torch::nn::Conv2d>()) {
    nn::init::kaiming_normal_(conv->weight, 0.0, torch::kFanOut, torch::kReLU);
    if (conv->bias.defined()) nn::init::constant_(conv->bias, 0.0);
  } else if (auto* bn = m.as<BatchNorm2d>()) {
    nn::init::constant_(bn->weight, 1.0);
    nn::init::constant_(bn->bias, 0.0);
  }
}
}  // namespace

void InitKaimingFanOut(nn::Module& module) {
  // include_self=false: the module may still be under construction (no shared_ptr to it yet).
  InitOne(module);
  for (auto& m : module.modules(/*include_self=*/false)) InitOne(*m);
}

}  // namespace segtorch
