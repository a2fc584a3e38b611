#include "models/segnet.h"
#include "blocks/batch_norm.h"
#include "blocks/conv2d.h"

#include "backbones/vgg.h"
#include "base/errors.h"

namespace segtorch {

namespace nn = torch::nn;

namespace {

// Decoder stage: for each (in, out) a 3x3 conv + BN + ReLU, children indexed 0, 1, 2, 3, ...
nn::Sequential DecoderStage(const std::vector<std::pair<int64_t, int64_t>>& convs) {
  nn::Sequential s;
  for (auto& io : convs) {
    s->push_back(Conv2d(nn::Conv2dOptions(io.first, io.second, 3).padding(1)));
    s->push_back(BatchNorm2d(io.second));
    s->push_back(nn::ReLU(nn::ReLUOptions().inplace(true)));
  }
  return s;
}

class SegNet : public SegmentationModel {
 public:
  explicit SegNet(const ModelConfig& c) {
    if (c.aux) ThrowRange("Expected aux: false for segnet (it has no auxiliary head) but received true");
    if (!IsVGG(c.backbone)) ThrowRange("Expected backbone vgg16_bn or vgg16 for segnet but received " + c.backbone);
    backbone_ = register_module("backbone", VGG(VGGOptions(c.backbone == "vgg16_bn").in_channels(c.in_channels)));
    // The decoder mirrors the encoder: conv5_3_D .. conv1_2_D in the reference, deep to shallow.
    // dec_[i] undoes encoder block i (registered deep to shallow, in the order they run).
    dec_.resize(5, nn::Sequential{nullptr});
    dec_[4] = register_module("dec5", DecoderStage({{512, 512}, {512, 512}, {512, 512}}));
    dec_[3] = register_module("dec4", DecoderStage({{512, 512}, {512, 512}, {512, 256}}));
    dec_[2] = register_module("dec3", DecoderStage({{256, 256}, {256, 256}, {256, 128}}));
    dec_[1] = register_module("dec2", DecoderStage({{128, 128}, {128, 64}}));
    dec_[0] = register_module("dec1", DecoderStage({{64, 64}}));
    // conv1_1_D of the reference: 3x3 to the classes, no BN, no ReLU.
    classifier_ = register_module("classifier", Conv2d(nn::Conv2dOptions(64, c.num_classes, 3).padding(1)));
    // He initialisation (the reference's "msra" filler: fan in), biases 0; BN weight 1, bias 0.
    for (auto& stage : dec_) {
      for (auto& m : stage->modules(/*include_self=*/false)) {
        if (auto* conv = m->as<torch::nn::Conv2d>()) {
          nn::init::kaiming_normal_(conv->weight, 0.0, torch::kFanIn, torch::kReLU);
          nn::init::zeros_(conv->bias);
        } else if (auto* bn = m->as<BatchNorm2d>()) {
          nn::init::ones_(bn->weight);
          nn::init::zeros_(bn->bias);
        }
      }
    }
    nn::init::kaiming_normal_(classifier_->weight, 0.0, torch::kFanIn, torch::kReLU);
    nn::init::zeros_(classifier_->bias);
  }

  SegOutput forward(const torch::Tensor& input) override {
    torch::Tensor x = input;
    std::vector<torch::Tensor> indices;
    std::vector<std::vector<int64_t>> sizes;
    for (int64_t i = 0; i < 5; ++i) {
      x = backbone_->block(i, x);
      sizes.push_back({x.size(2), x.size(3)});
      auto pooled = torch::max_pool2d_with_indices(x, {2, 2}, {2, 2});
      x = std::get<0>(pooled);
      indices.push_back(std::get<1>(pooled));
    }
    for (int64_t i = 4; i >= 0; --i) {
      // libtorch 1.13's CPU max_unpool2d has no bfloat16 / float16 kernel: unpooling only moves
      // values, so it runs in float32 and casts back exactly.
      x = x.scalar_type() == torch::kFloat || x.is_cuda() ? torch::max_unpool2d(x, indices[i], sizes[i])
                                                          : torch::max_unpool2d(x.to(torch::kFloat), indices[i], sizes[i]).to(x.scalar_type());
      x = ForwardSequential(dec_[i], x);
    }
    SegOutput out;
    out.out = classifier_(x);
    return out;
  }

 private:
  VGG backbone_{nullptr};
  std::vector<nn::Sequential> dec_;
  Conv2d classifier_{nullptr};
};

}  // namespace

ModelPtr CreateSegNet(const ModelConfig& c) { return std::make_shared<SegNet>(c); }

}  // namespace segtorch
