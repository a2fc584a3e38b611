#include "models/fcn.h"

#include "backbones/resnet.h"
#include "blocks/heads.h"
#include "common/errors.h"

namespace segtorch {

namespace F = torch::nn::functional;

namespace {

torch::Tensor UpsampleTo(const torch::Tensor& x, const torch::Tensor& like) {
  return F::interpolate(x, F::InterpolateFuncOptions()
                               .size(std::vector<int64_t>{like.size(2), like.size(3)})
                               .mode(torch::kBilinear)
                               .align_corners(false));
}

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
    out.out = UpsampleTo(classifier_->forward(feats[3]), x);
    if (aux_classifier_ && is_training()) out.aux.emplace_back("aux", UpsampleTo(aux_classifier_->forward(feats[2]), x));
    return out;
  }
  int64_t input_multiple() const override { return stride_; }

 private:
  ResNet backbone_{nullptr};
  torch::nn::Sequential classifier_{nullptr}, aux_classifier_{nullptr};
  int64_t stride_ = 8;
};

}  // namespace

ModelPtr CreateFCN(const ModelConfig& c) {
  if (IsResNet(c.backbone)) return std::make_shared<FCNResNet>(c);
  ThrowRange("Expected backbone resnet18, resnet34, resnet50, resnet101 or resnet152 for fcn but received " + c.backbone);
}

}  // namespace segtorch
