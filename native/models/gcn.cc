// On each ResNet stage (layer1..layer4, strides 4..32) a global convolution module gives score
// maps (numClasses channels): (k x 1 then 1 x k) + (1 x k then k x 1), no BN, no ReLU (k =
// kernelSize, odd, 15 by default); then a boundary refinement block (x + conv3x3(ReLU(conv3x3(x)))).
// Decoder from the coarsest: deconvolution x2 (learnable, initialised bilinear), sum with the next
// stage's score map, boundary refinement; after the 1/4 fusion two more deconvolution + boundary
// refinement steps reach full resolution. Nine BR blocks (brm1..brm9) and five deconvolutions.
#include "models/gcn.h"

#include <cmath>

#include "backbones/resnet.h"
#include "base/errors.h"
#include "blocks/conv2d.h"
#include "blocks/transposed_conv.h"

namespace segtorch {

namespace nn = torch::nn;

namespace {

class GlobalConvModuleImpl : public nn::Module {
 public:
  GlobalConvModuleImpl(int64_t in, int64_t out, int64_t k)
      : conv_l1(register_module("conv_l1", Conv2d(nn::Conv2dOptions(in, out, {k, 1}).padding({k / 2, 0})))),
        conv_l2(register_module("conv_l2", Conv2d(nn::Conv2dOptions(out, out, {1, k}).padding({0, k / 2})))),
        conv_r1(register_module("conv_r1", Conv2d(nn::Conv2dOptions(in, out, {1, k}).padding({0, k / 2})))),
        conv_r2(register_module("conv_r2", Conv2d(nn::Conv2dOptions(out, out, {k, 1}).padding({k / 2, 0})))) {}
  torch::Tensor forward(const torch::Tensor& x) {
    // Predictions: the sum inside conv_r2 (written into the left branch where it runs prepacked).
    if (!at::GradMode::is_enabled()) return conv_r2->ForwardAct(conv_r1(x), Activation::kNone, conv_l2(conv_l1(x)));
    return conv_l2(conv_l1(x)) + conv_r2(conv_r1(x));
  }
  Conv2d conv_l1, conv_l2, conv_r1, conv_r2;
};
TORCH_MODULE(GlobalConvModule);

class BoundaryRefineModuleImpl : public nn::Module {
 public:
  explicit BoundaryRefineModuleImpl(int64_t channels)
      : conv1(register_module("conv1", Conv2d(nn::Conv2dOptions(channels, channels, 3).padding(1)))),
        conv2(register_module("conv2", Conv2d(nn::Conv2dOptions(channels, channels, 3).padding(1)))) {}
  torch::Tensor forward(torch::Tensor x) {
    // Predictions: the ReLU and the addition inside the convolutions (x given up to the second where it runs prepacked).
    if (!at::GradMode::is_enabled()) {
      torch::Tensor h = conv1->ForwardAct(x, Activation::kReLU);
      return conv2->ForwardAct(h, Activation::kNone, std::move(x));
    }
    return x + conv2(conv1(x).relu_());
  }
  Conv2d conv1, conv2;
};
TORCH_MODULE(BoundaryRefineModule);

// x2 transposed convolution (kernel 4, stride 2, padding 1), channel i -> i initialised to the
// bilinear kernel (as FCN's upsampling layers), other weights 0.
SubpixelConvTranspose2d Deconv(int64_t channels) {
  auto d = SubpixelConvTranspose2d(nn::ConvTranspose2dOptions(channels, channels, 4).stride(2).padding(1).bias(false));
  const int64_t k = 4;
  const double factor = (k + 1) / 2, center = factor - 0.5;  // 2, 1.5
  auto filt = torch::empty({k, k});
  for (int64_t i = 0; i < k; ++i) {
    for (int64_t j = 0; j < k; ++j) {
      filt[i][j] = (1 - std::abs(i - center) / factor) * (1 - std::abs(j - center) / factor);
    }
  }
  torch::NoGradGuard no_grad;
  d->weight.zero_();
  for (int64_t c = 0; c < channels; ++c) d->weight[c][c].copy_(filt);
  return d;
}

class GCN : public SegmentationModel {
 public:
  explicit GCN(const ModelConfig& c) {
    if (c.output_stride != 32) ThrowRange("Expected outputStride 32 for gcn but received " + std::to_string(c.output_stride));
    double kd = c.Number("kernelSize", 15);
    int64_t k = static_cast<int64_t>(kd);
    if (k != kd || k < 1 || k % 2 == 0) ThrowRange("Expected an odd kernelSize >= 1 for gcn but received " + std::to_string(kd));
    backbone_ = register_module("backbone", ResNet(ResNetOptions(ResNetDepth(c.backbone)).in_channels(c.in_channels)));
    auto ch = backbone_->channels();
    int64_t n = c.num_classes;
    for (int i = 0; i < 4; ++i) gcm_.push_back(register_module("gcm" + std::to_string(i + 1), GlobalConvModule(ch[3 - i], n, k)));
    for (int i = 0; i < 9; ++i) brm_.push_back(register_module("brm" + std::to_string(i + 1), BoundaryRefineModule(n)));
    for (int i = 0; i < 5; ++i) deconv_.push_back(register_module("deconv" + std::to_string(i + 1), Deconv(n)));
  }

  SegOutput forward(const torch::Tensor& x) override {
    auto f = backbone_->forward(x);
    // Score maps of layer4 (1/32) .. layer1 (1/4).
    std::vector<torch::Tensor> s;
    for (int i = 0; i < 4; ++i) s.push_back(brm_[i](gcm_[i](f[3 - i])));
    auto y = s[0];
    for (int i = 1; i < 4; ++i) y = brm_[3 + i](deconv_[i - 1](y) + s[i]);  // 1/16, 1/8, 1/4
    y = brm_[7](deconv_[3](y));  // 1/2
    y = brm_[8](deconv_[4](y));  // 1/1
    SegOutput out;
    out.out = y;
    return out;
  }
  int64_t input_multiple() const override { return 32; }

 private:
  ResNet backbone_{nullptr};
  std::vector<GlobalConvModule> gcm_;
  std::vector<BoundaryRefineModule> brm_;
  std::vector<SubpixelConvTranspose2d> deconv_;
};

}  // namespace

ModelPtr CreateGCN(const ModelConfig& c) {
  CheckConfig(c, {kResNets});
  return std::make_shared<GCN>(c);
}

}  // namespace segtorch
