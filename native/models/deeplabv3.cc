#include "models/deeplabv3.h"
#include "blocks/batch_norm.h"
#include "blocks/conv2d.h"

#include "backbones/backbone.h"
#include "backbones/mobilenet_v3.h"
#include "backbones/resnet.h"
#include "blocks/aspp.h"
#include "blocks/heads.h"
#include "blocks/resize.h"
#include "base/errors.h"

namespace segtorch {

namespace nn = torch::nn;

namespace {

class DeepLabV3 : public SegmentationModel {
 public:
  explicit DeepLabV3(const ModelConfig& c) : stride_(c.output_stride) {
    backbone_ = register_module("backbone", CreateBackbone(c.backbone, c.in_channels, c.output_stride));
    auto ch = backbone_->channels();
    // Rates 6, 12, 18 at output stride 16, doubled at 8 (torchvision's 12, 24, 36).
    int64_t m = 16 / c.output_stride;
    std::vector<int64_t> rates = {6 * m, 12 * m, 18 * m};
    mobilenet_ = std::dynamic_pointer_cast<MobileNetV3Impl>(backbone_);
    if (mobilenet_) {
      // torchvision's deeplabv3_mobilenet_v3_large: rates 12, 24, 36 at output stride 16 (doubled
      // here at 8); the head reads the last child (960 ch), the aux head torchvision's C2 block
      // (stage_indices[-4] = child 4, 40 ch, stride 8).
      rates = {12 * m, 24 * m, 36 * m};
      const auto& stages = mobilenet_->stage_indices();
      out_index_ = stages.back();
      aux_index_ = stages[stages.size() - 4];
      ch[3] = mobilenet_->block_channels()[out_index_];
      ch[2] = mobilenet_->block_channels()[aux_index_];
    }
    aspp_ = ASPP(ASPPOptions(ch[3], rates).dropout(0.5));
    // torchvision's DeepLabHead: the ASPP, then 3x3 conv + BN + ReLU and the 1x1 classifier.
    // Default (PyTorch) initialisation of the head, as torchvision.
    classifier_ = register_module(
        "classifier", nn::Sequential(aspp_, Conv2d(nn::Conv2dOptions(256, 256, 3).padding(1).bias(false)),
                                     BatchNorm2d(256), nn::ReLU(), Conv2d(nn::Conv2dOptions(256, c.num_classes, 1))));
    if (c.aux) aux_classifier_ = register_module("aux_classifier", FCNHead(ch[2], c.num_classes));
  }
  SegOutput forward(const torch::Tensor& x) override {
    std::vector<torch::Tensor> feats;
    if (mobilenet_) {
      auto all = mobilenet_->forward_all(x);
      feats = {torch::Tensor(), torch::Tensor(), all[aux_index_], all[out_index_]};
    } else {
      feats = backbone_->forward(x);
    }
    SegOutput out;
    SetLogits(out, ForwardSequential(classifier_, feats[3]), x);
    if (aux_classifier_ && is_training()) out.aux.emplace_back("aux", ResizeOutput(ForwardSequential(aux_classifier_, feats[2]), x));
    return out;
  }

 private:
  BackbonePtr backbone_;
  std::shared_ptr<MobileNetV3Impl> mobilenet_;
  int64_t out_index_ = 0, aux_index_ = 0;
  ASPP aspp_{nullptr};
  nn::Sequential classifier_{nullptr}, aux_classifier_{nullptr};
  int64_t stride_;
};

}  // namespace

ModelPtr CreateDeepLabV3(const ModelConfig& c) {
  CheckConfig(c, {ResNetsAnd({"mobilenetv3_large"}), {8, 16}});
  return std::make_shared<DeepLabV3>(c);
}

}  // namespace segtorch
