#include "models/upernet.h"

#include "backbones/backbone.h"
#include "backbones/resnet.h"
#include "base/errors.h"
#include "blocks/conv2d.h"
#include "blocks/conv_bn_relu.h"
#include "blocks/heads.h"
#include "blocks/ppm.h"
#include "blocks/resize.h"

namespace segtorch {

namespace nn = torch::nn;

namespace {

class UPerNet : public SegmentationModel {
 public:
  explicit UPerNet(const ModelConfig& c) {
    int64_t channels = static_cast<int64_t>(c.Number("channels", 512));
    if (channels < 1) ThrowRange("Expected channels >= 1 for upernet but received " + std::to_string(channels));
    backbone_ = register_module("backbone", CreateBackbone(c.backbone, c.in_channels, 32));
    auto ch = backbone_->channels();
    ppm_ = register_module("ppm", PPM(PPMOptions(ch[3], channels)));
    bottleneck_ = register_module("bottleneck", ConvBNReLUSeq(ppm_->out_channels(), channels, 3));
    lateral_convs_ = register_module("lateral_convs", nn::ModuleList());
    fpn_convs_ = register_module("fpn_convs", nn::ModuleList());
    for (int i = 0; i < 3; ++i) {
      laterals_.push_back(ConvBNReLUSeq(ch[i], channels, 1));
      lateral_convs_->push_back(laterals_.back());
      fpns_.push_back(ConvBNReLUSeq(channels, channels, 3));
      fpn_convs_->push_back(fpns_.back());
    }
    fpn_bottleneck_ = register_module("fpn_bottleneck", ConvBNReLUSeq(4 * channels, channels, 3));
    dropout_ = register_module("dropout", nn::Dropout2d(0.1));
    conv_seg_ = register_module("conv_seg", Conv2d(nn::Conv2dOptions(channels, c.num_classes, 1)));
    // mmseg: ConvModules He-initialised (fan_out), conv_seg normal with std 0.01.
    for (nn::Module* m : std::vector<nn::Module*>{ppm_.get(), bottleneck_.get(), lateral_convs_.get(), fpn_convs_.get(),
                                                  fpn_bottleneck_.get()}) {
      InitKaimingFanOut(*m);
    }
    nn::init::normal_(conv_seg_->weight, 0.0, 0.01);
    nn::init::constant_(conv_seg_->bias, 0.0);
    if (c.aux) aux_ = register_module("auxiliary_head", FCNHead(ch[2], c.num_classes));
  }
  SegOutput forward(const torch::Tensor& x) override {
    auto feats = backbone_->forward(x);
    std::vector<torch::Tensor> lat(4);
    for (int i = 0; i < 3; ++i) lat[i] = ForwardSequential(laterals_[i], feats[i]);
    lat[3] = ppm_->ForwardHead(feats[3], *bottleneck_);
    // Top-down: each level plus the coarser one upsampled.
    for (int i = 3; i > 0; --i) lat[i - 1] = AddResized(std::move(lat[i - 1]), lat[i]);
    std::vector<torch::Tensor> outs(4);
    for (int i = 0; i < 3; ++i) outs[i] = ForwardSequential(fpns_[i], lat[i]);
    outs[3] = lat[3];
    auto fused = ForwardSequential(fpn_bottleneck_, CatResized(outs, outs[0]));
    SegOutput out;
    SetLogits(out, conv_seg_(dropout_(fused)), x);
    if (aux_ && is_training()) out.aux.emplace_back("aux", ResizeOutput(aux_->forward(feats[2]), x));
    return out;
  }

 private:
  BackbonePtr backbone_;
  PPM ppm_{nullptr};
  nn::Sequential bottleneck_{nullptr}, fpn_bottleneck_{nullptr}, aux_{nullptr};
  nn::ModuleList lateral_convs_{nullptr}, fpn_convs_{nullptr};
  std::vector<nn::Sequential> laterals_, fpns_;
  nn::Dropout2d dropout_{nullptr};
  Conv2d conv_seg_{nullptr};
};

}  // namespace

ModelPtr CreateUPerNet(const ModelConfig& c) {
  CheckConfig(c, {kResNets, {32}});
  return std::make_shared<UPerNet>(c);
}

}  // namespace segtorch
