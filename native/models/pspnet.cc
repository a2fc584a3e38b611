#include "models/pspnet.h"
#include "blocks/batch_norm.h"
#include "blocks/conv2d.h"

#include "backbones/backbone.h"
#include "backbones/resnet.h"
#include "blocks/conv_bn_relu.h"
#include "blocks/ppm.h"
#include "blocks/resize.h"
#include "base/errors.h"

namespace segtorch {

namespace nn = torch::nn;

namespace {

// 3x3 conv (no bias) + BN + ReLU + Dropout2d(0.1) + 1x1 conv: the reference's cls and aux heads.
nn::Sequential Head(int64_t in, int64_t mid, int64_t classes) {
  return nn::Sequential(Conv2d(nn::Conv2dOptions(in, mid, 3).padding(1).bias(false)), BatchNorm2d(mid),
                        nn::ReLU(), nn::Dropout2d(0.1), Conv2d(nn::Conv2dOptions(mid, classes, 1)));
}

class PSPNet : public SegmentationModel {
 public:
  explicit PSPNet(const ModelConfig& c) : stride_(c.output_stride) {
    backbone_ = register_module("backbone", CreateBackbone(c.backbone, c.in_channels, c.output_stride));
    auto ch = backbone_->channels();
    ppm_ = register_module("ppm", PPM(PPMOptions(ch[3], ch[3] / 4)));
    cls_ = register_module("cls", Head(ppm_->out_channels(), 512, c.num_classes));
    if (c.aux) aux_ = register_module("aux", Head(ch[2], 256, c.num_classes));
    InitKaimingFanOut(*ppm_);
    InitKaimingFanOut(*cls_);
    if (aux_) InitKaimingFanOut(*aux_);
  }
  SegOutput forward(const torch::Tensor& x) override {
    auto feats = backbone_->forward(x);
    SegOutput out;
    SetLogits(out, ppm_->ForwardHead(feats[3], *cls_), x);
    if (aux_ && is_training()) out.aux.emplace_back("aux", ResizeOutput(aux_->forward(feats[2]), x));
    return out;
  }

 private:
  BackbonePtr backbone_;
  PPM ppm_{nullptr};
  nn::Sequential cls_{nullptr}, aux_{nullptr};
  int64_t stride_;
};

}  // namespace

ModelPtr CreatePSPNet(const ModelConfig& c) {
  CheckConfig(c, {kResNets, {8, 16}});
  return std::make_shared<PSPNet>(c);
}

}  // namespace segtorch
