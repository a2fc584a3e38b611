#include "models/deeplabv2.h"

#include "backbones/backbone.h"
#include "backbones/resnet.h"
#include "blocks/aspp.h"
#include "blocks/resize.h"
#include "base/errors.h"

namespace segtorch {

namespace {

class DeepLabV2 : public SegmentationModel {
 public:
  explicit DeepLabV2(const ModelConfig& c) : stride_(c.output_stride) {
    backbone_ = register_module("backbone", CreateBackbone(c.backbone, c.in_channels, c.output_stride));
    // The paper's rates are for output stride 8; at 16 they are halved (same field of view).
    std::vector<int64_t> rates;
    for (int64_t r : {6, 12, 18, 24}) rates.push_back(r * 8 / c.output_stride);
    aspp_ = register_module("aspp", ASPPSum(backbone_->channels()[3], c.num_classes, rates));
  }
  SegOutput forward(const torch::Tensor& x) override {
    auto feats = backbone_->forward(x);
    SegOutput out;
    SetLogits(out, aspp_->forward(feats[3]), x);
    return out;
  }

 private:
  BackbonePtr backbone_;
  ASPPSum aspp_{nullptr};
  int64_t stride_;
};

}  // namespace

ModelPtr CreateDeepLabV2(const ModelConfig& c) {
  CheckConfig(c, {kResNets, {8, 16}});
  return std::make_shared<DeepLabV2>(c);
}

}  // namespace segtorch
