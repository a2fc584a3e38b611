#include "models/deeplabv1.h"

#include "backbones/vgg.h"
#include "base/errors.h"
#include "blocks/conv2d.h"
#include "blocks/dropout.h"

namespace segtorch {

namespace nn = torch::nn;
namespace F = torch::nn::functional;

namespace {

class DeepLabV1 : public SegmentationModel {
 public:
  explicit DeepLabV1(const ModelConfig& c) {
    if (c.aux) ThrowRange("Expected aux: false for deeplabv1 (it has no auxiliary head) but received true");
    if (!IsVGG(c.backbone)) ThrowRange("Expected backbone vgg16 or vgg16_bn for deeplabv1 but received " + c.backbone);
    backbone_ = register_module("backbone", VGG(VGGOptions(c.backbone == "vgg16_bn")
                                                    .in_channels(c.in_channels)
                                                    .output_stride(8)
                                                    .pool_kernel(3)));
    int64_t fc = ChannelOption(c, "fcChannels", 1024);
    fc6_ = register_module("fc6", Conv2d(nn::Conv2dOptions(512, fc, 3).dilation(12).padding(12)));
    drop6_ = register_module("drop6", nn::Dropout(0.5));
    fc7_ = register_module("fc7", Conv2d(nn::Conv2dOptions(fc, fc, 1)));
    drop7_ = register_module("drop7", nn::Dropout(0.5));
    fc8_ = register_module("fc8", Conv2d(nn::Conv2dOptions(fc, c.num_classes, 1)));
    // fc6/fc7 replace VGG's (subsampled) fully connected layers: torchvision's Linear init;
    // fc8 as the prototxt: Gaussian, std 0.01, bias 0.
    for (auto* conv : {fc6_.get(), fc7_.get(), fc8_.get()}) {
      nn::init::normal_(conv->weight, 0.0, 0.01);
      nn::init::zeros_(conv->bias);
    }
  }

  SegOutput forward(const torch::Tensor& x) override {
    auto h = backbone_->forward(x).back();  // pool5, stride 8
    h = torch::avg_pool2d(h, 3, 1, 1);       // pool5a
    // conv + ReLU as one call where the convolution runs prepacked (conv, then ReLU, otherwise).
    h = Dropout(*drop6_, fc6_->ForwardAct(h, Activation::kReLU));
    h = Dropout(*drop7_, fc7_->ForwardAct(h, Activation::kReLU));
    SegOutput out;
    SetLogits(out, fc8_(h), x);
    return out;
  }

 private:
  VGG backbone_{nullptr};
  Conv2d fc6_{nullptr}, fc7_{nullptr}, fc8_{nullptr};
  nn::Dropout drop6_{nullptr}, drop7_{nullptr};
};

}  // namespace

ModelPtr CreateDeepLabV1(const ModelConfig& c) { return std::make_shared<DeepLabV1>(c); }

}  // namespace segtorch
