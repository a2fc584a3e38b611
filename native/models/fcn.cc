#include "models/fcn.h"

#include "backbones/resnet.h"
#include "backbones/vgg.h"
#include "base/errors.h"
#include "blocks/conv2d.h"
#include "blocks/dropout.h"
#include "blocks/heads.h"
#include "blocks/transposed_conv.h"

namespace segtorch {

namespace {

class FCNResNet : public SegmentationModel {
 public:
  explicit FCNResNet(const ModelConfig& c) {
    backbone_ = register_module(
        "backbone", ResNet(ResNetOptions(ResNetDepth(c.backbone)).in_channels(c.in_channels).output_stride(c.output_stride)));
    auto ch = backbone_->channels();
    classifier_ = register_module("classifier", FCNHead(ch[3], c.num_classes));
    if (c.aux) aux_classifier_ = register_module("aux_classifier", FCNHead(ch[2], c.num_classes));
    stride_ = c.output_stride;
  }
  SegOutput forward(const torch::Tensor& x) override {
    auto feats = backbone_->forward(x);
    SegOutput out;
    SetLogits(out, ForwardSequential(classifier_, feats[3]), x);
    if (aux_classifier_ && is_training()) out.aux.emplace_back("aux", ResizeOutput(ForwardSequential(aux_classifier_, feats[2]), x));
    return out;
  }

 private:
  ResNet backbone_{nullptr};
  torch::nn::Sequential classifier_{nullptr}, aux_classifier_{nullptr};
  int64_t stride_ = 8;
};

// Caffe's "bilinear" filler as FCN's surgery.interp applies it: class c -> class c only.
void FillBilinear(const torch::Tensor& weight) {
  torch::NoGradGuard no_grad;
  int64_t k = weight.size(2);
  double factor = (k + 1) / 2;
  double center = (k % 2 == 1) ? factor - 1 : factor - 0.5;
  auto og = torch::arange(k, torch::kDouble);
  auto f1 = 1 - (og - center).abs() / factor;
  auto filt = torch::outer(f1, f1).to(weight.dtype());
  weight.zero_();
  for (int64_t c = 0; c < std::min(weight.size(0), weight.size(1)); ++c) weight[c][c].copy_(filt);
}

// Transposed convolution upsampling by `factor` (kernel 2f, stride f, no bias) as in the reference
// nets, with padding f/2 so that the output is exactly f times the input (no crop layer needed).
SubpixelConvTranspose2d Upscore(int64_t classes, int64_t factor, bool learnable) {
  auto up = SubpixelConvTranspose2d(
      torch::nn::ConvTranspose2dOptions(classes, classes, 2 * factor).stride(factor).padding(factor / 2).bias(false));
  FillBilinear(up->weight);
  up->weight.set_requires_grad(learnable);
  return up;
}

// The classic FCN-32s/16s/8s (Long, Shelhamer, Darrell 2015; shelhamer/fcn.berkeleyvision.org
// voc-fcn*s): VGG-16 with fc6/fc7 as convolutions (7x7 4096, 1x1 4096 channels, fcChannels; ReLU, dropout 0.5),
// score_fr, and for 16s/8s the pool4 / pool3 scores fused after 2x upsampling. Names follow the
// reference nets: fc6, fc7, score_fr, upscore2, score_pool4, upscore_pool4, score_pool3, upscore8
// (upscore16 for 16s, upscore for 32s); the VGG is backbone.features.* (torchvision's names).
//
// The reference pads the input by 100 pixels (conv1_1 pad 100) and runs fc6 unpadded, then crops
// every score map back into alignment. segtorch pads inputs to a multiple of 32 itself, so here
// fc6 is padded (3) and keeps the size, every transposed conv pads f/2 and yields exactly f times
// its input, and all maps align without crop layers; the weights keep the reference shapes.
class FCNVGG : public SegmentationModel {
 public:
  explicit FCNVGG(const ModelConfig& c) : variant_(c.String("variant", "8s")) {
    if (variant_ != "32s" && variant_ != "16s" && variant_ != "8s") {
      ThrowRange("Expected variant '32s', '16s' or '8s' for fcn but received '" + variant_ + "'");
    }
    if (c.aux) ThrowRange("Expected aux: false for fcn with a VGG backbone (the classic FCN has no auxiliary head) but received true");
    bool learn = c.Number("learnUpsampling", 1.0) != 0.0;
    int64_t fc = ChannelOption(c, "fcChannels", 4096);
    int64_t k = c.num_classes;
    namespace nn = torch::nn;
    backbone_ = register_module("backbone", VGG(VGGOptions(c.backbone == "vgg16_bn").in_channels(c.in_channels)));
    fc6_ = register_module("fc6", Conv2d(nn::Conv2dOptions(512, fc, 7).padding(3)));
    fc7_ = register_module("fc7", Conv2d(nn::Conv2dOptions(fc, fc, 1)));
    drop6_ = register_module("drop6", nn::Dropout(0.5));
    drop7_ = register_module("drop7", nn::Dropout(0.5));
    score_fr_ = register_module("score_fr", Conv2d(nn::Conv2dOptions(fc, k, 1)));
    // fc6/fc7 as torchvision initialises VGG's classifier (they replace its Linear layers).
    for (auto* conv : {fc6_.get(), fc7_.get()}) {
      nn::init::normal_(conv->weight, 0.0, 0.01);
      nn::init::zeros_(conv->bias);
    }
    std::vector<nn::Conv2dImpl*> scores{score_fr_.get()};
    if (variant_ == "32s") {
      upscore_ = register_module("upscore", Upscore(k, 32, false));
    } else {
      // The paper: the 2x upsamplings start bilinear and are learned, the last one stays bilinear.
      // The reference nets fix them all (learnUpsampling: false).
      upscore2_ = register_module("upscore2", Upscore(k, 2, learn));
      score_pool4_ = register_module("score_pool4", Conv2d(nn::Conv2dOptions(512, k, 1)));
      scores.push_back(score_pool4_.get());
      if (variant_ == "16s") {
        upscore16_ = register_module("upscore16", Upscore(k, 16, false));
      } else {
        upscore_pool4_ = register_module("upscore_pool4", Upscore(k, 2, learn));
        score_pool3_ = register_module("score_pool3", Conv2d(nn::Conv2dOptions(256, k, 1)));
        scores.push_back(score_pool3_.get());
        upscore8_ = register_module("upscore8", Upscore(k, 8, false));
      }
    }
    // Score layers start at zero (Caffe's default filler in the reference; the paper found random
    // initialisation no better).
    for (auto* conv : scores) {
      nn::init::zeros_(conv->weight);
      nn::init::zeros_(conv->bias);
    }
  }

  SegOutput forward(const torch::Tensor& x) override {
    auto feats = backbone_->forward(x);  // pool1..pool5
    auto h = Dropout(*drop6_, torch::relu(fc6_(feats[4])));
    h = Dropout(*drop7_, torch::relu(fc7_(h)));
    auto score = score_fr_(h);
    SegOutput out;
    if (variant_ == "32s") {
      out.out = upscore_(score);
    } else {
      score = upscore2_(score) + score_pool4_(feats[3]);
      if (variant_ == "16s") {
        out.out = upscore16_(score);
      } else {
        score = upscore_pool4_(score) + score_pool3_(feats[2]);
        out.out = upscore8_(score);
      }
    }
    return out;
  }
  int64_t input_multiple() const override { return 32; }

 private:
  std::string variant_;
  VGG backbone_{nullptr};
  Conv2d fc6_{nullptr}, fc7_{nullptr}, score_fr_{nullptr}, score_pool4_{nullptr}, score_pool3_{nullptr};
  torch::nn::Dropout drop6_{nullptr}, drop7_{nullptr};
  SubpixelConvTranspose2d upscore_{nullptr}, upscore2_{nullptr}, upscore16_{nullptr}, upscore_pool4_{nullptr},
      upscore8_{nullptr};
};

}  // namespace

ModelPtr CreateFCN(const ModelConfig& c) {
  CheckConfig(c, {ResNetsAnd({"vgg16", "vgg16_bn"})});
  if (IsResNet(c.backbone)) return std::make_shared<FCNResNet>(c);
  return std::make_shared<FCNVGG>(c);
}

}  // namespace segtorch
