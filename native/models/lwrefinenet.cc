#include "models/lwrefinenet.h"

#include "base/errors.h"
#include "blocks/conv2d.h"
#include "blocks/refinenet.h"
#include "blocks/resize.h"

namespace segtorch {

namespace nn = torch::nn;

namespace {

Conv2d LwConv1x1(int64_t in, int64_t out) { return Conv2d(nn::Conv2dOptions(in, out, 1).bias(false)); }

constexpr int64_t kCrpStages = 4;

}  // namespace

LWRefineNetTrunk::LWRefineNetTrunk(const ModelConfig& c, bool depthwise_last_crp, bool align_corners)
    : align_corners_(align_corners) {
  const int64_t w = kWidth;
  if (c.backbone == "mobilenetv2") {
    mobile_ = true;
    // The network taps features.17 (320 channels): torchvision's features.18 (1x1 conv to 1280) is
    // not part of it.
    mobilenet_ = register_module(
        "backbone", MobileNetV2(MobileNetV2Options().in_channels(c.in_channels).output_stride(c.output_stride).last_conv(false)));
    const auto& bc = mobilenet_->block_channels();  // 32, 16, 24, 24, 32, 32, 32, 64 x4, 96 x3, 160 x3, 320
    conv8 = register_module("conv8", LwConv1x1(bc[17], w));
    conv7 = register_module("conv7", LwConv1x1(bc[16], w));
    conv6 = register_module("conv6", LwConv1x1(bc[13], w));
    conv5 = register_module("conv5", LwConv1x1(bc[10], w));
    conv4 = register_module("conv4", LwConv1x1(bc[6], w));
    conv3 = register_module("conv3", LwConv1x1(bc[3], w));
    crp4 = register_module("crp4", CRPStack(w, kCrpStages, 1));
    crp3 = register_module("crp3", CRPStack(w, kCrpStages, 1));
    crp2 = register_module("crp2", CRPStack(w, kCrpStages, 1));
    crp1 = register_module("crp1", CRPStack(w, kCrpStages, 1, depthwise_last_crp));
    conv_adapt4 = register_module("conv_adapt4", LwConv1x1(w, w));
    conv_adapt3 = register_module("conv_adapt3", LwConv1x1(w, w));
    conv_adapt2 = register_module("conv_adapt2", LwConv1x1(w, w));
    return;
  }
  if (!IsResNet(c.backbone)) {
    ThrowRange("Expected backbone resnet18, resnet34, resnet50, resnet101, resnet152 or mobilenetv2 for " + c.arch +
               " but received " + c.backbone);
  }
  resnet_ = register_module(
      "backbone", ResNet(ResNetOptions(ResNetDepth(c.backbone)).in_channels(c.in_channels).output_stride(c.output_stride)));
  auto ch = resnet_->channels();
  p_ims1d2_outl1_dimred = register_module("p_ims1d2_outl1_dimred", LwConv1x1(ch[3], 2 * w));
  mflow_conv_g1_pool = register_module("mflow_conv_g1_pool", CRPStack(2 * w, kCrpStages, 1));
  mflow_conv_g1_b3_joint_varout_dimred = register_module("mflow_conv_g1_b3_joint_varout_dimred", LwConv1x1(2 * w, w));
  p_ims1d2_outl2_dimred = register_module("p_ims1d2_outl2_dimred", LwConv1x1(ch[2], w));
  adapt_stage2_b2_joint_varout_dimred = register_module("adapt_stage2_b2_joint_varout_dimred", LwConv1x1(w, w));
  mflow_conv_g2_pool = register_module("mflow_conv_g2_pool", CRPStack(w, kCrpStages, 1));
  mflow_conv_g2_b3_joint_varout_dimred = register_module("mflow_conv_g2_b3_joint_varout_dimred", LwConv1x1(w, w));
  p_ims1d2_outl3_dimred = register_module("p_ims1d2_outl3_dimred", LwConv1x1(ch[1], w));
  adapt_stage3_b2_joint_varout_dimred = register_module("adapt_stage3_b2_joint_varout_dimred", LwConv1x1(w, w));
  mflow_conv_g3_pool = register_module("mflow_conv_g3_pool", CRPStack(w, kCrpStages, 1));
  mflow_conv_g3_b3_joint_varout_dimred = register_module("mflow_conv_g3_b3_joint_varout_dimred", LwConv1x1(w, w));
  p_ims1d2_outl4_dimred = register_module("p_ims1d2_outl4_dimred", LwConv1x1(ch[0], w));
  adapt_stage4_b2_joint_varout_dimred = register_module("adapt_stage4_b2_joint_varout_dimred", LwConv1x1(w, w));
  mflow_conv_g4_pool = register_module("mflow_conv_g4_pool", CRPStack(w, kCrpStages, 1, depthwise_last_crp));
}

torch::Tensor LWRefineNetTrunk::Decode(const torch::Tensor& x) { return mobile_ ? DecodeMobileNet(x) : DecodeResNet(x); }

torch::Tensor LWRefineNetTrunk::DecodeResNet(const torch::Tensor& x) {
  auto f = resnet_->forward(x);
  auto up = [&](const torch::Tensor& t, const torch::Tensor& like) { return ResizeLike(t, like, align_corners_); };
  auto x4 = mflow_conv_g1_pool->forward(p_ims1d2_outl1_dimred(f[3]).relu_());
  x4 = up(mflow_conv_g1_b3_joint_varout_dimred(x4), f[2]);
  // adapt(dimred(f)) + x, ReLU: the addition and the ReLU inside adapt's convolution where it runs fused.
  auto x3 = adapt_stage2_b2_joint_varout_dimred->ForwardAct(p_ims1d2_outl2_dimred(f[2]), segtorch::Activation::kReLU, x4);
  x3 = mflow_conv_g2_pool->forward(x3);
  x3 = up(mflow_conv_g2_b3_joint_varout_dimred(x3), f[1]);
  auto x2 = adapt_stage3_b2_joint_varout_dimred->ForwardAct(p_ims1d2_outl3_dimred(f[1]), segtorch::Activation::kReLU, x3);
  x2 = mflow_conv_g3_pool->forward(x2);
  x2 = up(mflow_conv_g3_b3_joint_varout_dimred(x2), f[0]);
  auto x1 = adapt_stage4_b2_joint_varout_dimred->ForwardAct(p_ims1d2_outl4_dimred(f[0]), segtorch::Activation::kReLU, x2);
  return mflow_conv_g4_pool->forward(x1);
}

torch::Tensor LWRefineNetTrunk::DecodeMobileNet(const torch::Tensor& x) {
  auto f = mobilenet_->forward_all(x);
  // The reference's layer3..layer8: the last block of each group of inverted residuals.
  const auto &l3 = f[3], &l4 = f[6], &l5 = f[10], &l6 = f[13], &l7 = f[16], &l8 = f[17];
  auto up = [&](const torch::Tensor& t, const torch::Tensor& like) { return ResizeLike(t, like, align_corners_); };
  // conv(l) + y: the addition inside the convolution where it runs fused (ReLU6 after it).
  auto y7 = crp4->forward(Activation(conv7->ForwardAct(l7, segtorch::Activation::kNone, conv8(l8))));
  y7 = up(conv_adapt4(y7), l6);
  auto y5 = crp3->forward(Activation(conv6->ForwardAct(l6, segtorch::Activation::kNone, conv5(l5)) + y7));
  y5 = up(conv_adapt3(y5), l4);
  auto y4 = crp2->forward(Activation(conv4->ForwardAct(l4, segtorch::Activation::kNone, y5)));
  y4 = up(conv_adapt2(y4), l3);
  return crp1->forward(Activation(conv3->ForwardAct(l3, segtorch::Activation::kNone, y4)));
}

namespace {

class LWRefineNet : public LWRefineNetTrunk {
 public:
  explicit LWRefineNet(const ModelConfig& c) : LWRefineNetTrunk(c, /*depthwise_last_crp=*/false, /*align_corners=*/true) {
    // 3x3 classifier: `segm` in the MobileNetV2 reference, `clf_conv` in the ResNet one.
    auto clf = Conv2d(nn::Conv2dOptions(kWidth, c.num_classes, 3).padding(1).bias(true));
    classifier_ = register_module(c.backbone == "mobilenetv2" ? "segm" : "clf_conv", clf);
  }
  SegOutput forward(const torch::Tensor& x) override {
    SegOutput out;
    SetLogits(out, classifier_(Decode(x)), x);
    return out;
  }

 private:
  Conv2d classifier_{nullptr};
};

}  // namespace

ModelPtr CreateLWRefineNet(const ModelConfig& c) { return std::make_shared<LWRefineNet>(c); }

}  // namespace segtorch
