#include "models/dilated.h"

#include <cstdlib>

#include "backbones/vgg.h"
#include "base/cpu.h"
#include "base/errors.h"
#include "blocks/conv2d.h"
#include "blocks/dropout.h"
#include "blocks/space_to_batch.h"
#include "blocks/tracing.h"

namespace segtorch {

namespace nn = torch::nn;
namespace F = torch::nn::functional;

namespace {

class Dilated : public SegmentationModel {
 public:
  explicit Dilated(const ModelConfig& c) {
    if (c.aux) ThrowRange("Expected aux: false for dilated (it has no auxiliary head) but received true");
    if (!IsVGG(c.backbone)) ThrowRange("Expected backbone vgg16 or vgg16_bn for dilated but received " + c.backbone);
    std::string context = c.String("context", "basic");
    if (context != "basic" && context != "large" && context != "none") {
      ThrowRange("Expected context 'basic', 'large' or 'none' for dilated but received '" + context + "'");
    }
    bool identity = c.Number("identityInit", 1.0) != 0.0;
    // SEGTORCH_SPACE_TO_BATCH=1 / 0 when the model is made: fc6 always / never by space-to-batch on the
    // CPU (tests and measurements; read here once, not by every forward on the executor's threads).
    if (const char* v = std::getenv("SEGTORCH_SPACE_TO_BATCH"); v != nullptr && (v[0] == '0' || v[0] == '1')) force_s2b_ = v[0] - '0';
    int64_t k = c.num_classes;
    // Front end: pool4 and pool5 removed, conv5 dilated by 2, fc6 by 4.
    backbone_ = register_module(
        "backbone", VGG(VGGOptions(c.backbone == "vgg16_bn").in_channels(c.in_channels).output_stride(8)));
    int64_t d = backbone_->head_dilation();  // 4
    int64_t fc = ChannelOption(c, "fcChannels", 4096);
    fc6_ = register_module("fc6", Conv2d(nn::Conv2dOptions(512, fc, 7).dilation(d).padding(3 * d)));
    drop6_ = register_module("drop6", nn::Dropout(0.5));
    fc7_ = register_module("fc7", Conv2d(nn::Conv2dOptions(fc, fc, 1)));
    drop7_ = register_module("drop7", nn::Dropout(0.5));
    final_ = register_module("final", Conv2d(nn::Conv2dOptions(fc, k, 1)));
    // fc6/fc7 as torchvision initialises VGG's classifier (they replace its Linear layers);
    // `final` as the reference: Gaussian, std 0.001, bias 0.
    for (auto* conv : {fc6_.get(), fc7_.get()}) {
      nn::init::normal_(conv->weight, 0.0, 0.01);
      nn::init::zeros_(conv->bias);
    }
    nn::init::normal_(final_->weight, 0.0, 0.001);
    nn::init::zeros_(final_->bias);

    if (context == "none") return;
    // Context module: name, kernel, dilation, output channels (in multiples of C).
    const bool large = context == "large";
    struct Layer { const char* name; int64_t kernel, dilation, width; };
    const std::vector<Layer> layers = {
        {"ctx_conv1_1", 3, 1, large ? 2 : 1}, {"ctx_conv1_2", 3, 1, large ? 2 : 1}, {"ctx_conv2_1", 3, 2, large ? 4 : 1},
        {"ctx_conv3_1", 3, 4, large ? 8 : 1}, {"ctx_conv4_1", 3, 8, large ? 16 : 1}, {"ctx_conv5_1", 3, 16, large ? 32 : 1},
        {"ctx_fc1", 3, 1, large ? 32 : 1},    {"ctx_final", 1, 1, 1}};
    int64_t in = k;
    for (const auto& l : layers) {
      int64_t out = l.width * k;
      auto conv = register_module(
          l.name, Conv2d(nn::Conv2dOptions(in, out, l.kernel).dilation(l.dilation).padding(l.dilation * (l.kernel / 2))));
      if (identity) {
        IdentityInit(conv, l.kernel, k);
      } else {
        nn::init::kaiming_normal_(conv->weight, 0.0, torch::kFanIn, torch::kReLU);
        nn::init::zeros_(conv->bias);
      }
      context_.push_back(conv);
      in = out;
    }
  }

  SegOutput forward(const torch::Tensor& x) override {
    auto h = backbone_->forward(x).back();  // stride 8
    // fc6 on the CPU by space-to-batch where that is faster, i.e. only without AVX-512. On AVX2
    // (bench/README.md, "dilated on the AVX2 CPU") oneDNN's weight gradient of this 7x7 dilation-4
    // kernel (103 M weights) falls back to its reference loops (minutes per step), so space-to-batch
    // whenever a gradient may be asked for, and for NCHW inputs (1x512x64x64, 2 cores: 5.2 against
    // 6.4 s); channels-last inference runs the dilated kernel (4.4 against 5.4 s). With AVX-512 oneDNN
    // has JIT kernels for all three passes and skips the taps that fall in the padding, which
    // space-to-batch computes on explicit zeros (at 32 x 32 those are 38 % of fc6's multiply-adds):
    // measured on Zen 4 (batch 4 x 512 x 32 x 32, forward + backward) bf16 channels-last 6-7 s direct
    // against 9-10 s, fp32 12 against 19 s, Debian's 1.13 bf16 8-9 against 16-17 s; NCHW fp32 inference
    // of 1x512x64x64 3.3 against 4.1 s. SEGTORCH_SPACE_TO_BATCH (force_s2b_) overrides the rule.
    const bool grad = at::GradMode::is_enabled() && fc6_->weight.requires_grad();
    const bool channels_last = h.dim() == 4 && !h.is_contiguous() && h.is_contiguous(at::MemoryFormat::ChannelsLast);
    const bool wanted = force_s2b_ >= 0 ? force_s2b_ == 1 : !CpuHasAvx512() && (grad || !channels_last);
    const bool s2b = h.is_cpu() && !Tracing() && wanted;
    // conv + ReLU as one call where the convolution runs prepacked (conv, then ReLU, otherwise).
    h = s2b ? torch::relu(ConvSpaceToBatch(h, fc6_->weight, fc6_->bias, fc6_->options.dilation()->at(0)))
            : fc6_->ForwardAct(h, Activation::kReLU);
    h = Dropout(*drop6_, h);
    h = Dropout(*drop7_, fc7_->ForwardAct(h, Activation::kReLU));
    h = final_(h);
    for (size_t i = 0; i < context_.size(); ++i) {
      // every layer but ctx_final is truncated
      h = context_[i]->ForwardAct(h, i + 1 < context_.size() ? Activation::kReLU : Activation::kNone);
    }
    SegOutput out;
    SetLogits(out, h, x);
    return out;
  }

 private:
  int force_s2b_ = -1;  // -1: the rule in forward; 0 / 1: SEGTORCH_SPACE_TO_BATCH
  // The paper's identity initialisation, for c_in -> c_out channels with C classes:
  // k(t, a) = (C / c_out) [t = 0 and floor(a C / c_in) = floor(b C / c_out)] + eps, eps ~ N(0, s^2)
  // with s << C / c_out (here 1e-3 C / c_out) where the width changes, no noise where it does not
  // (the basic module's C -> C layers are then exactly the identity, k(t, a) = [t = 0][a = b]).
  // Biases 0.
  static void IdentityInit(const Conv2d& conv, int64_t kernel, int64_t classes) {
    torch::NoGradGuard no_grad;
    auto w = conv->weight;  // [out, in, k, k]
    int64_t out = w.size(0), in = w.size(1), center = kernel / 2;
    w.zero_();
    double scale = static_cast<double>(classes) / out;
    auto acc = w.accessor<float, 4>();
    for (int64_t b = 0; b < out; ++b) {
      for (int64_t a = 0; a < in; ++a) {
        if ((a * classes) / in == (b * classes) / out) acc[b][a][center][center] = static_cast<float>(scale);
      }
    }
    if (in != out) w.add_(torch::randn_like(w) * (1e-3 * scale));
    conv->bias.zero_();
  }

  VGG backbone_{nullptr};
  Conv2d fc6_{nullptr}, fc7_{nullptr}, final_{nullptr};
  nn::Dropout drop6_{nullptr}, drop7_{nullptr};
  std::vector<Conv2d> context_;
};

}  // namespace

ModelPtr CreateDilated(const ModelConfig& c) { return std::make_shared<Dilated>(c); }

}  // namespace segtorch
