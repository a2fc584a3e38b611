#include "models/lraspp.h"
#include "blocks/batch_norm.h"
#include "blocks/conv2d.h"

#include "backbones/mobilenet_v3.h"
#include "blocks/resize.h"
#include "base/errors.h"

namespace segtorch {

namespace nn = torch::nn;

namespace {

// torchvision's LRASPPHead; default (PyTorch) initialisation, as torchvision.
class LRASPPHeadImpl : public nn::Module {
 public:
  LRASPPHeadImpl(int64_t low_channels, int64_t high_channels, int64_t num_classes, int64_t inter_channels) {
    cbr = register_module("cbr", nn::Sequential(Conv2d(nn::Conv2dOptions(high_channels, inter_channels, 1).bias(false)),
                                                BatchNorm2d(inter_channels), nn::ReLU()));
    scale = register_module("scale", nn::Sequential(nn::AdaptiveAvgPool2d(nn::AdaptiveAvgPool2dOptions(1)),
                                                    Conv2d(nn::Conv2dOptions(high_channels, inter_channels, 1).bias(false)),
                                                    nn::Sigmoid()));
    low_classifier = register_module("low_classifier", Conv2d(nn::Conv2dOptions(low_channels, num_classes, 1)));
    high_classifier = register_module("high_classifier", Conv2d(nn::Conv2dOptions(inter_channels, num_classes, 1)));
  }
  torch::Tensor forward(const torch::Tensor& low, const torch::Tensor& high) {
    auto x = cbr->forward(high) * scale->forward(high);
    x = ResizeLike(x, low);
    return low_classifier->forward(low) + high_classifier->forward(x);
  }
  nn::Sequential cbr{nullptr}, scale{nullptr};
  Conv2d low_classifier{nullptr}, high_classifier{nullptr};
};
TORCH_MODULE(LRASPPHead);

class LRASPP : public SegmentationModel {
 public:
  explicit LRASPP(const ModelConfig& c) {
    backbone_ = register_module(
        "backbone", std::make_shared<MobileNetV3Impl>(
                        MobileNetV3Options().in_channels(c.in_channels).output_stride(c.output_stride)));
    // torchvision's choice: low = stage_indices[-4] (child 4, 40 ch, stride 8), high = the last child.
    const auto& stages = backbone_->stage_indices();
    low_index_ = stages[stages.size() - 4];
    high_index_ = stages.back();
    classifier_ = register_module(
        "classifier", LRASPPHead(backbone_->block_channels()[low_index_], backbone_->block_channels()[high_index_],
                                 c.num_classes, static_cast<int64_t>(c.Number("interChannels", 128))));
  }
  SegOutput forward(const torch::Tensor& x) override {
    auto all = backbone_->forward_all(x);
    SegOutput out;
    SetLogits(out, classifier_->forward(all[low_index_], all[high_index_]), x);
    return out;
  }
  // Any size without padding, as torchvision.
  int64_t input_multiple() const override { return 1; }

 private:
  std::shared_ptr<MobileNetV3Impl> backbone_;
  LRASPPHead classifier_{nullptr};
  int64_t low_index_ = 0, high_index_ = 0;
};

}  // namespace

ModelPtr CreateLRASPP(const ModelConfig& c) {
  CheckConfig(c, {{"mobilenetv3_large"}, {8, 16, 32}, false});
  int64_t inter = static_cast<int64_t>(c.Number("interChannels", 128));
  if (inter < 1) ThrowRange("Expected interChannels >= 1 but received " + std::to_string(inter));
  return std::make_shared<LRASPP>(c);
}

}  // namespace segtorch
