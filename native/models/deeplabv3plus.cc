#include "models/deeplabv3plus.h"

#include "backbones/backbone.h"
#include "backbones/resnet.h"
#include "backbones/xception.h"
#include "base/errors.h"
#include "blocks/aspp.h"
#include "blocks/conv2d.h"
#include "blocks/conv_bn_relu.h"
#include "blocks/resize.h"

namespace segtorch {

namespace nn = torch::nn;

namespace {

class DecoderImpl : public nn::Module {
 public:
  DecoderImpl(int64_t low_level_channels, int64_t aspp_channels, bool separable) {
    feature_projection = register_module("feature_projection", ConvBNReLUSeq(low_level_channels, 48, 1));
    auto conv3x3 = [&](int64_t in) { return separable ? SeparableConvBNReLUSeq(in, 256, 3) : ConvBNReLUSeq(in, 256, 3); };
    decoder_conv0 = register_module("decoder_conv0", conv3x3(aspp_channels + 48));
    decoder_conv1 = register_module("decoder_conv1", conv3x3(256));
  }
  torch::Tensor forward(const torch::Tensor& encoded, const torch::Tensor& low_level) {
    auto low = feature_projection->forward(low_level);
    auto x = CatResized({encoded, low}, low);
    return decoder_conv1->forward(decoder_conv0->forward(x));
  }
  nn::Sequential feature_projection{nullptr}, decoder_conv0{nullptr}, decoder_conv1{nullptr};
};
TORCH_MODULE(Decoder);

class DeepLabV3Plus : public SegmentationModel {
 public:
  explicit DeepLabV3Plus(const ModelConfig& c) : stride_(c.output_stride) {
    bool separable = c.Number("separable", 0.0) != 0.0;
    backbone_ = register_module("backbone", CreateBackbone(c.backbone, c.in_channels, c.output_stride));
    auto ch = backbone_->channels();
    int64_t m = 16 / c.output_stride;
    // Dropout 0.1 after the projection, as the reference (keep_prob 0.9).
    aspp_ = register_module("aspp", ASPP(ASPPOptions(ch[3], {6 * m, 12 * m, 18 * m}).separable(separable).dropout(0.1)));
    decoder_ = register_module("decoder", Decoder(ch[0], aspp_->out_channels(), separable));
    classifier_ = register_module("classifier", Conv2d(nn::Conv2dOptions(256, c.num_classes, 1)));
    InitKaimingFanOut(*aspp_);
    InitKaimingFanOut(*decoder_);
  }
  SegOutput forward(const torch::Tensor& x) override {
    auto feats = backbone_->forward(x);
    SegOutput out;
    SetLogits(out, classifier_(decoder_(aspp_(feats[3]), feats[0])), x);
    return out;
  }

 private:
  BackbonePtr backbone_;
  ASPP aspp_{nullptr};
  Decoder decoder_{nullptr};
  Conv2d classifier_{nullptr};
  int64_t stride_;
};

}  // namespace

ModelPtr CreateDeepLabV3Plus(const ModelConfig& c) {
  CheckConfig(c, {ResNetsAnd({"xception65"}), {8, 16}});
  return std::make_shared<DeepLabV3Plus>(c);
}

}  // namespace segtorch
