#include "models/unet.h"
#include "blocks/batch_norm.h"
#include "blocks/conv2d.h"
#include "blocks/dropout.h"
#include "blocks/max_pool.h"
#include "blocks/transposed_conv.h"

#include "base/errors.h"

namespace segtorch {

namespace nn = torch::nn;
namespace F = torch::nn::functional;

namespace {

// Two 3x3 convs (padding 1), each followed by [BN +] ReLU. Children 0..3 (0..5 with BN).
nn::Sequential DoubleConv(int64_t in, int64_t out, bool bn) {
  nn::Sequential s;
  for (int64_t c : {in, out}) {
    s->push_back(Conv2d(nn::Conv2dOptions(c, out, 3).padding(1).bias(!bn)));
    if (bn) s->push_back(BatchNorm2d(out));
    s->push_back(nn::ReLU(nn::ReLUOptions().inplace(true)));
  }
  return s;
}

// One expanding level: upsample `in` channels to in/2, concatenate the skip (in/2 channels), double conv to `out`.
class UpImpl : public nn::Module {
 public:
  UpImpl(int64_t in, int64_t out, bool bilinear, bool bn) : bilinear_(bilinear) {
    if (bilinear) {
      up_conv_ = register_module("up", Conv2d(nn::Conv2dOptions(in, in / 2, 1)));
    } else {
      up_transposed_ = register_module("up", SubpixelConvTranspose2d(nn::ConvTranspose2dOptions(in, in / 2, 2).stride(2)));
    }
    conv_ = register_module("conv", DoubleConv(in, out, bn));
  }
  torch::Tensor forward(torch::Tensor x, const torch::Tensor& skip) {
    if (!bilinear_) return ForwardSequential(conv_, up_transposed_->ForwardCat(skip, x));
    x = F::interpolate(x, F::InterpolateFuncOptions()
                              .size(std::vector<int64_t>{skip.size(2), skip.size(3)})
                              .mode(torch::kBilinear)
                              .align_corners(false));
    x = up_conv_(x);
    return ForwardSequential(conv_, torch::cat({skip, x}, 1));
  }

 private:
  bool bilinear_;
  Conv2d up_conv_{nullptr};
  SubpixelConvTranspose2d up_transposed_{nullptr};
  nn::Sequential conv_{nullptr};
};
TORCH_MODULE(Up);

class UNet : public SegmentationModel {
 public:
  explicit UNet(const ModelConfig& c) {
    if (c.aux) ThrowRange("Expected aux: false for unet (it has no auxiliary head) but received true");
    if (c.backbone != "none") ThrowRange("Expected backbone 'none' for unet (it has no pretrained backbone) but received " + c.backbone);
    auto b = static_cast<int64_t>(c.Number("baseChannels", 64));
    if (b < 1) ThrowRange("Expected baseChannels >= 1 for unet but received " + std::to_string(b));
    std::string upsampling = c.String("upsampling", "transposed");
    if (upsampling != "transposed" && upsampling != "bilinear") {
      ThrowRange("Expected upsampling 'transposed' or 'bilinear' for unet but received '" + upsampling + "'");
    }
    double p = c.Number("dropout", 0.5);
    if (!(p >= 0 && p < 1)) ThrowRange("Expected dropout in [0, 1) for unet but received " + std::to_string(p));
    bool bn = c.Number("batchNorm", 0.0) != 0.0;
    bool bilinear = upsampling == "bilinear";
    inc_ = register_module("inc", DoubleConv(c.in_channels, b, bn));
    down1_ = register_module("down1", DoubleConv(b, 2 * b, bn));
    down2_ = register_module("down2", DoubleConv(2 * b, 4 * b, bn));
    down3_ = register_module("down3", DoubleConv(4 * b, 8 * b, bn));
    down4_ = register_module("down4", DoubleConv(8 * b, 16 * b, bn));
    up1_ = register_module("up1", Up(16 * b, 8 * b, bilinear, bn));
    up2_ = register_module("up2", Up(8 * b, 4 * b, bilinear, bn));
    up3_ = register_module("up3", Up(4 * b, 2 * b, bilinear, bn));
    up4_ = register_module("up4", Up(2 * b, b, bilinear, bn));
    outc_ = register_module("outc", Conv2d(nn::Conv2dOptions(b, c.num_classes, 1)));
    // "Drop-out layers at the end of the contracting path": after the two deepest levels, as the
    // Keras U-Net (zhixuhao/unet) that the membrane data comes from.
    drop_ = register_module("drop", nn::Dropout(p));
    // The paper: Gaussian weights with standard deviation sqrt(2 / N), N the incoming nodes of a
    // neuron (kaiming normal, fan in); biases 0; BN weight 1, bias 0.
    for (auto& m : modules(/*include_self=*/false)) {
      if (auto* conv = m->as<torch::nn::Conv2d>()) {
        nn::init::kaiming_normal_(conv->weight, 0.0, torch::kFanIn, torch::kReLU);
        if (conv->bias.defined()) nn::init::zeros_(conv->bias);
      } else if (auto* up = m->as<nn::ConvTranspose2d>()) {
        // weight [in, out, 2, 2]: each output sees in * 1 inputs per position (fan in = in).
        nn::init::normal_(up->weight, 0.0, std::sqrt(2.0 / up->weight.size(0)));
        nn::init::zeros_(up->bias);
      } else if (auto* bnm = m->as<BatchNorm2d>()) {
        nn::init::ones_(bnm->weight);
        nn::init::zeros_(bnm->bias);
      }
    }
  }

  SegOutput forward(const torch::Tensor& x) override {
    auto x1 = ForwardSequential(inc_, x);
    auto x2 = ForwardSequential(down1_, MaxPool2d(x1, 2, 2));
    auto x3 = ForwardSequential(down2_, MaxPool2d(x2, 2, 2));
    auto x4 = Dropout(*drop_, ForwardSequential(down3_, MaxPool2d(x3, 2, 2)));
    auto x5 = Dropout(*drop_, ForwardSequential(down4_, MaxPool2d(x4, 2, 2)));
    auto y = up1_->forward(x5, x4);
    y = up2_->forward(y, x3);
    y = up3_->forward(y, x2);
    y = up4_->forward(y, x1);
    SegOutput out;
    out.out = outc_(y);
    return out;
  }
  int64_t input_multiple() const override { return 16; }

 private:
  nn::Sequential inc_{nullptr}, down1_{nullptr}, down2_{nullptr}, down3_{nullptr}, down4_{nullptr};
  Up up1_{nullptr}, up2_{nullptr}, up3_{nullptr}, up4_{nullptr};
  Conv2d outc_{nullptr};
  nn::Dropout drop_{nullptr};
};

}  // namespace

ModelPtr CreateUNet(const ModelConfig& c) { return std::make_shared<UNet>(c); }

}  // namespace segtorch
