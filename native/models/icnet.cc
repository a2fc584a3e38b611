// Three branches:
//  - low (1/4 of the input): the whole dilated ResNet (output stride 8 of its input, 1/32 of the
//    image), PSPNet's pyramid pooling as ICNet has it (average pools over 1, 2, 3, 6 bins,
//    upsampled and summed with the features, no convolutions), then a 1x1 conv + BN + ReLU to 256;
//  - medium (1/2): the same backbone's stem, layer1 and layer2 (shared weights): 1/16 of the image;
//  - high (full): three 3x3 stride-2 conv + BN + ReLU (32, 32, 64 channels): 1/8 of the image.
// Cascade feature fusion (CFF) units: the coarser input upsampled x2, a 3x3 conv with dilation 2 +
// BN; the finer input through a 1x1 conv + BN; sum, ReLU (128 channels). In training each CFF's
// upsampled coarse input also goes through a 1x1 classifier: the cascade label guidance outputs.
// The 1/8 fusion is upsampled x2 and classified (conv6_cls): the 1/4 output, upsampled to the
// input size as `out`. Training outputs: "sub16" (1/16), "sub8" (1/8), "sub4" (1/4), weighted 0.4,
// 0.4 (the user's auxWeight, default 0.4) and 1.0 as the paper's lambdas.
#include "models/icnet.h"
#include "blocks/batch_norm.h"
#include "blocks/conv2d.h"
#include "blocks/pool_bins.h"

#include "backbones/resnet.h"
#include "blocks/resize.h"
#include "base/errors.h"

namespace segtorch {

namespace nn = torch::nn;

namespace {

// conv (no bias) + BN + ReLU, children 0, 1, 2; a Sequential with a concrete forward.
class ConvBNReLUImpl : public nn::SequentialImpl {
 public:
  ConvBNReLUImpl(int64_t in, int64_t out, int64_t kernel, int64_t stride) {
    push_back(Conv2d(nn::Conv2dOptions(in, out, kernel).stride(stride).padding(kernel / 2).bias(false)));
    push_back(BatchNorm2d(out));
    push_back(nn::ReLU());
  }
  torch::Tensor forward(torch::Tensor x) { return ForwardSequential(*this, std::move(x)); }
};
TORCH_MODULE(ConvBNReLU);

// Cascade feature fusion: F1 (coarse, low_channels) and F2 (fine, twice F1's resolution).
class CascadeFeatureFusionImpl : public nn::Module {
 public:
  CascadeFeatureFusionImpl(int64_t low_channels, int64_t high_channels, int64_t out_channels, int64_t num_classes)
      : conv_low(register_module("conv_low", Conv2d(nn::Conv2dOptions(low_channels, out_channels, 3)
                                                             .padding(2)
                                                             .dilation(2)
                                                             .bias(false)))),
        bn_low(register_module("bn_low", BatchNorm2d(out_channels))),
        conv_high(register_module("conv_high", Conv2d(nn::Conv2dOptions(high_channels, out_channels, 1).bias(false)))),
        bn_high(register_module("bn_high", BatchNorm2d(out_channels))),
        conv_low_cls(register_module("conv_low_cls", Conv2d(nn::Conv2dOptions(low_channels, num_classes, 1)))) {}
  // Returns the fused features and, in training, the classifier's logits on the upsampled F1.
  std::pair<torch::Tensor, torch::Tensor> forward(const torch::Tensor& low, const torch::Tensor& high) {
    auto up = ResizeLike(low, high, /*align_corners=*/true);  // Caffe's Interp
    auto fused = (bn_low(conv_low(up)) + bn_high(conv_high(high))).relu_();
    return {fused, is_training() ? conv_low_cls(up) : torch::Tensor()};
  }
  Conv2d conv_low;
  BatchNorm2d bn_low;
  Conv2d conv_high;
  BatchNorm2d bn_high;
  Conv2d conv_low_cls;
};
TORCH_MODULE(CascadeFeatureFusion);

class ICNet : public SegmentationModel {
 public:
  explicit ICNet(const ModelConfig& c) {
    if (c.output_stride != 8) ThrowRange("Expected outputStride 8 for icnet but received " + std::to_string(c.output_stride));
    backbone_ = register_module("backbone", ResNet(ResNetOptions(ResNetDepth(c.backbone)).in_channels(c.in_channels).output_stride(8)));
    auto ch = backbone_->channels();
    conv_sub1 = register_module(
        "conv_sub1", nn::Sequential(ConvBNReLU(c.in_channels, 32, 3, 2), ConvBNReLU(32, 32, 3, 2), ConvBNReLU(32, 64, 3, 2)));
    conv5_4_k1 = register_module("conv5_4_k1", ConvBNReLU(ch[3], 256, 1, 1));
    cff_24 = register_module("cff_24", CascadeFeatureFusion(256, ch[1], 128, c.num_classes));
    cff_12 = register_module("cff_12", CascadeFeatureFusion(128, 64, 128, c.num_classes));
    conv6_cls = register_module("conv6_cls", Conv2d(nn::Conv2dOptions(128, c.num_classes, 1)));

    // Convolutions outside the backbone: Kaiming (fan out, as torchvision's), BN weight 1, bias 0;
    // the classifiers (conv_low_cls, conv6_cls) keep PyTorch's default, as torchvision's heads.
    for (auto& m : named_modules("", /*include_self=*/false)) {
      if (m.key().rfind("backbone", 0) == 0 || m.key().find("cls") != std::string::npos) continue;
      if (auto* conv = m.value()->as<torch::nn::Conv2d>()) {
        nn::init::kaiming_normal_(conv->weight, 0.0, torch::kFanOut, torch::kReLU);
      } else if (auto* bn = m.value()->as<BatchNorm2d>()) {
        nn::init::ones_(bn->weight);
        nn::init::zeros_(bn->bias);
      }
    }
  }

  SegOutput forward(const torch::Tensor& x) override {
    int64_t h = x.size(2), w = x.size(3);
    // Medium branch: stem, layer1, layer2 at 1/2 -> 1/16.
    auto x2 = ResizeBilinear(x, h / 2, w / 2, /*align_corners=*/true);
    auto sub2 = backbone_->layer2->forward(backbone_->layer1->forward(backbone_->stem(x2)));
    // Low branch: the whole dilated backbone at 1/4 -> 1/32, pyramid pooling, 1x1 to 256.
    auto x4 = ResizeBilinear(x, h / 4, w / 4, /*align_corners=*/true);
    auto sub4 = backbone_->forward(x4)[3];
    auto pooled = sub4;
    for (int64_t bins : {1, 2, 3, 6}) {
      pooled = AddResized(std::move(pooled), AdaptiveAvgPool(sub4, bins), /*align_corners=*/true);
    }
    sub4 = conv5_4_k1(pooled);
    // High branch: three stride-2 convs -> 1/8.
    auto sub1 = conv_sub1->forward(x);

    auto f24 = cff_24->forward(sub4, sub2);   // 1/16
    auto f12 = cff_12->forward(f24.first, sub1);  // 1/8
    auto up = ResizeBilinear(f12.first, f12.first.size(2) * 2, f12.first.size(3) * 2, /*align_corners=*/true);
    auto logits4 = conv6_cls(up);  // 1/4
    SegOutput out;
    SetLogits(out, logits4, x);
    if (is_training()) {
      out.aux.emplace_back("sub16", f24.second);
      out.aux.emplace_back("sub8", f12.second);
      out.aux.emplace_back("sub4", logits4);
    }
    return out;
  }
  // The 1/4 output has the paper's weight 1; the 1/16 and 1/8 ones the user's auxWeight (0.4 by
  // default, the paper's).
  double AuxWeight(const std::string& name, double requested) const override { return name == "sub4" ? 1.0 : requested; }

 private:
  ResNet backbone_{nullptr};

 public:
  nn::Sequential conv_sub1{nullptr};
  ConvBNReLU conv5_4_k1{nullptr};
  CascadeFeatureFusion cff_24{nullptr}, cff_12{nullptr};
  Conv2d conv6_cls{nullptr};
};

}  // namespace

ModelPtr CreateICNet(const ModelConfig& c) {
  CheckConfig(c, {kResNets});
  return std::make_shared<ICNet>(c);
}

}  // namespace segtorch
