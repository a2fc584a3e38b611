// Smooth network: global average pooling of layer4 (1x1 conv + BN + ReLU to 512) is the top
// "higher stage"; from layer4 down to layer1 each stage goes through a refinement residual block
// (RRB: 1x1 conv to 512, then x + conv3x3(ConvBNReLU3x3(x)), ReLU), a channel attention block (CAB:
// global pooling of [low, high], 1x1 conv, ReLU, 1x1 conv, sigmoid; low * weights + high) and
// another RRB; the result, upsampled x2, is the next stage's "higher" input. Each stage has a head
// (RRB to 9K channels without ReLU, 1x1 conv to K) upsampled to the input size: layer1's is `out`,
// the three others are deep supervision outputs "smooth32", "smooth16", "smooth8" (training only,
// weight 1 each as the paper; option deepSupervision).
// Border network: RRBs (to 21 channels, the reference's width) on layer1..layer4, bottom-up: each
// deeper one upsampled to 1/4, added, and refined by another RRB; a head (RRB to 9, 1x1 conv to 1)
// upsampled to the input size gives "border" (training only): one channel of boundary logits,
// supervised by the focal loss (gamma 2) against boundaries derived from the labels, weight
// lambda = borderWeight (0.1, the paper's).
// Names follow the authors' TorchSeg (global_context, smooth_pre_rrbs, cabs, smooth_aft_rrbs,
// smooth_heads, border_pre_rrbs, border_aft_rrbs, border_heads); upsampling with align_corners=true
// as there.
#include "models/dfn.h"
#include "blocks/batch_norm.h"
#include "blocks/composed_conv.h"
#include "blocks/conv2d.h"
#include "blocks/pool_bins.h"

#include "backbones/resnet.h"
#include "blocks/resize.h"
#include "base/errors.h"

#include <torch/csrc/jit/frontend/tracer.h>

namespace segtorch {

namespace nn = torch::nn;

namespace {

constexpr int64_t kSmoothWidth = 512;
constexpr int64_t kBorderWidth = 21;
constexpr double kFocalGamma = 2.0;

// conv (optionally BN, ReLU), children named conv / bn as TorchSeg's ConvBnRelu.
class ConvBnReluImpl : public nn::Module {
 public:
  ConvBnReluImpl(int64_t in, int64_t out, int64_t kernel, bool has_bn, bool has_relu) : has_relu_(has_relu) {
    conv = register_module("conv", Conv2d(nn::Conv2dOptions(in, out, kernel).padding(kernel / 2).bias(false)));
    if (has_bn) bn = register_module("bn", BatchNorm2d(out));
  }
  torch::Tensor forward(torch::Tensor x) {
    // Predictions: one call (the ReLU a post-op where the convolution runs prepacked); training as before.
    if (!at::GradMode::is_enabled()) return Predict(*conv, x);
    x = conv(x);
    if (bn) x = bn(x);
    return has_relu_ ? x.relu_() : x;
  }
  // A prediction with `c` in place of conv (a composed convolution standing for it), then the BN and the ReLU.
  torch::Tensor Predict(Conv2dImpl& c, const torch::Tensor& x) {
    const segtorch::Activation act = has_relu_ ? segtorch::Activation::kReLU : segtorch::Activation::kNone;
    return bn ? ConvBnAct(c, *bn, x, act) : c.ForwardAct(x, act);
  }
  Conv2d conv{nullptr};
  BatchNorm2d bn{nullptr};

 private:
  bool has_relu_;
};
TORCH_MODULE(ConvBnRelu);

// Refinement residual block: 1x1 conv, then x + conv3x3(ConvBnRelu3x3(x)) [, ReLU].
class RefineResidualImpl : public nn::Module, public KeepsWeightCopies {
 public:
  RefineResidualImpl(int64_t in, int64_t out, bool has_relu) : has_relu_(has_relu) {
    conv_1x1 = register_module("conv_1x1", Conv2d(nn::Conv2dOptions(in, out, 1).bias(false)));
    cbr = register_module("cbr", ConvBnRelu(out, out, 3, true, true));
    conv_refine = register_module("conv_refine", Conv2d(nn::Conv2dOptions(out, out, 3).padding(1).bias(false)));
  }
  torch::Tensor forward(torch::Tensor x) {
    if (!at::GradMode::is_enabled()) {
      // Predictions: where the block widens (layer1's 256 -> 512), the 3x3 convolution of the 1x1's output is one 3x3
      // convolution of the block's input (blocks/composed_conv.h: 256 -> 512 instead of 512 -> 512); then
      // act(conv_refine(.) + x) as one call, written into x where it runs prepacked.
      torch::Tensor h = ComposeFirst(x) ? cbr->Predict(composed_.Get(*cbr->conv, *conv_1x1, *cbr->conv), x) : torch::Tensor();
      x = conv_1x1(x);
      if (!h.defined()) h = cbr(x);
      return conv_refine->ForwardAct(h, has_relu_ ? segtorch::Activation::kReLU : segtorch::Activation::kNone, std::move(x));
    }
    x = conv_1x1(x);
    auto y = x + conv_refine(cbr(x));
    return has_relu_ ? y.relu_() : y;
  }
  void DropWeightCopies() override { composed_.Drop(); }
  bool has_relu() const { return has_relu_; }
  Conv2d conv_1x1{nullptr}, conv_refine{nullptr};
  ConvBnRelu cbr{nullptr};

 private:
  // Whether cbr's convolution of conv_1x1(x) runs as one composed convolution of x: fewer multiplications.
  bool ComposeFirst(const torch::Tensor& x) const {
    return ComposeApplies(x) && ComposedConv::Composable(*cbr->conv, *conv_1x1) &&
           ComposedConv::MacsPerPixel(*cbr->conv, *conv_1x1) < cbr->conv->weight.numel();
  }
  bool has_relu_;
  ComposedConv composed_;
};
TORCH_MODULE(RefineResidual);

// Channel attention block: weights from [low, high] select the low stage's channels, plus high.
class ChannelAttentionImpl : public nn::Module {
 public:
  ChannelAttentionImpl(int64_t in, int64_t out) {
    channel_attention = register_module(
        "channel_attention", nn::Sequential(nn::AdaptiveAvgPool2d(nn::AdaptiveAvgPool2dOptions(1)), ConvBnRelu(in, out, 1, false, true),
                                            ConvBnRelu(out, out, 1, false, false), nn::Sigmoid()));
  }
  // The global pooling of [low, high] is the pooling of each, concatenated: the 1024-channel map at
  // the stage's resolution is never made (exact: the same mean of each channel).
  torch::Tensor forward(const torch::Tensor& low, torch::Tensor high) {
    auto pooled = torch::cat({AdaptiveAvgPool(low, 1), AdaptiveAvgPool(high, 1)}, 1);
    torch::Tensor w = ForwardSequential(channel_attention, pooled, /*begin=*/1);
    // Predictions: high + low * w in one pass (addcmul), into high where nothing else holds it (the stage's upsampled
    // map), instead of a product and a sum written out. Not as traced (an export's check compares the graph's two
    // roundings in bf16: 2 % apart).
    if (!at::GradMode::is_enabled() && !AsTracedActive() && !torch::jit::tracer::isTracing() && high.scalar_type() == low.scalar_type() &&
        w.scalar_type() == low.scalar_type()) {
      if (HeldOnlyHere(high) && high.is_non_overlapping_and_dense() && high.sizes() == low.sizes()) return high.addcmul_(low, w);
      return at::addcmul(high, low, w);
    }
    return low * w + high;
  }
  nn::Sequential channel_attention{nullptr};
};
TORCH_MODULE(ChannelAttention);

// Prediction head: RRB (no ReLU) to 9 * out channels, 1x1 conv (with bias) to out.
class DFNHeadImpl : public nn::Module, public KeepsWeightCopies {
 public:
  DFNHeadImpl(int64_t in, int64_t out) {
    rrb = register_module("rrb", RefineResidual(in, out * 9, false));
    conv = register_module("conv", Conv2d(nn::Conv2dOptions(out * 9, out, 1)));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    // Predictions: conv(m + conv_refine(h)) with m = rrb's 1x1 output and h = its cbr's, as conv(m) + one 3x3
    // convolution of h to the classes (blocks/composed_conv.h: 9K -> K instead of 9K -> 9K, then 9K -> K), added
    // inside it; exact as nothing non-linear follows conv_refine.
    if (ComposeApplies(x) && !rrb->has_relu() && ComposedConv::Composable(*conv, *rrb->conv_refine) &&
        ComposedConv::MacsPerPixel(*conv, *rrb->conv_refine) < rrb->conv_refine->weight.numel()) {
      torch::Tensor m = rrb->conv_1x1(x);
      torch::Tensor h = rrb->cbr(m);
      torch::Tensor t = conv(m);
      return composed_.Get(*conv, *rrb->conv_refine, *rrb->conv_refine, /*bias=*/false).ForwardAct(h, Activation::kNone, std::move(t));
    }
    return conv(rrb(x));
  }
  void DropWeightCopies() override { composed_.Drop(); }
  RefineResidual rrb{nullptr};
  Conv2d conv{nullptr};

 private:
  ComposedConv composed_;
};
TORCH_MODULE(DFNHead);

// A container module whose children are named by index, for lists with gaps (names as TorchSeg's
// nn.ModuleList, where some of its entries are never used).
std::shared_ptr<nn::Module> IndexedList() { return std::make_shared<nn::Module>(); }

class DFN : public SegmentationModel {
 public:
  explicit DFN(const ModelConfig& c) {
    if (c.output_stride != 32) ThrowRange("Expected outputStride 32 for dfn but received " + std::to_string(c.output_stride));
    deep_supervision_ = c.Number("deepSupervision", 1) != 0;
    border_weight_ = c.Number("borderWeight", 0.1);
    if (!(border_weight_ >= 0)) ThrowRange("Expected borderWeight >= 0 for dfn but received " + std::to_string(border_weight_));
    backbone_ = register_module("backbone", ResNet(ResNetOptions(ResNetDepth(c.backbone)).in_channels(c.in_channels)));
    auto ch = backbone_->channels();
    global_context = register_module(
        "global_context", nn::Sequential(nn::AdaptiveAvgPool2d(nn::AdaptiveAvgPool2dOptions(1)), ConvBnRelu(ch[3], kSmoothWidth, 1, true, true)));
    auto smooth_pre_rrbs = register_module("smooth_pre_rrbs", IndexedList());
    auto cabs = register_module("cabs", IndexedList());
    auto smooth_aft_rrbs = register_module("smooth_aft_rrbs", IndexedList());
    auto smooth_heads = register_module("smooth_heads", IndexedList());
    auto border_pre_rrbs = register_module("border_pre_rrbs", IndexedList());
    auto border_aft_rrbs = register_module("border_aft_rrbs", IndexedList());
    for (int i = 0; i < 4; ++i) {
      auto n = std::to_string(i);
      // Smooth network stage i: layer(4 - i).
      smooth_pre_.push_back(smooth_pre_rrbs->register_module(n, RefineResidual(ch[3 - i], kSmoothWidth, true)));
      cabs_.push_back(cabs->register_module(n, ChannelAttention(2 * kSmoothWidth, kSmoothWidth)));
      smooth_aft_.push_back(smooth_aft_rrbs->register_module(n, RefineResidual(kSmoothWidth, kSmoothWidth, true)));
      // Heads of layer4..layer2 exist for deep supervision only; smooth_heads.3 (layer1) gives `out`.
      smooth_heads_.push_back(deep_supervision_ || i == 3 ? DFNHead(smooth_heads->register_module(n, DFNHead(kSmoothWidth, c.num_classes)))
                                                          : DFNHead(nullptr));
      // Border network stage i: layer(i + 1). The reference's border_aft_rrbs.0 is never used: not here.
      border_pre_.push_back(border_pre_rrbs->register_module(n, RefineResidual(ch[i], kBorderWidth, true)));
      border_aft_.push_back(i == 0 ? RefineResidual(nullptr)
                                   : RefineResidual(border_aft_rrbs->register_module(n, RefineResidual(kBorderWidth, kBorderWidth, true))));
    }
    // One border output, from the last (deepest) fusion: the reference's border_heads.3.
    border_head = register_module("border_head", DFNHead(kBorderWidth, 1));

    // TorchSeg's initialisation of the layers outside the backbone: Kaiming normal (fan in, ReLU),
    // BN weight 1, bias 0.
    for (auto& m : named_modules("", /*include_self=*/false)) {
      if (m.key().rfind("backbone", 0) == 0) continue;
      if (auto* conv = m.value()->as<torch::nn::Conv2d>()) {
        nn::init::kaiming_normal_(conv->weight, 0.0, torch::kFanIn, torch::kReLU);
      } else if (auto* bn = m.value()->as<BatchNorm2d>()) {
        nn::init::ones_(bn->weight);
        nn::init::zeros_(bn->bias);
      }
    }
  }

  SegOutput forward(const torch::Tensor& x) override {
    auto f = backbone_->forward(x);
    auto up = [](const torch::Tensor& t, int64_t h, int64_t w) { return ResizeBilinear(t, h, w, /*align_corners=*/true); };
    SegOutput out;
    // Smooth network, layer4 -> layer1; the pooled global context is the first "higher" stage.
    auto higher = global_context->forward(f[3]).expand({-1, -1, f[3].size(2), f[3].size(3)});
    static const char* kNames[3] = {"smooth32", "smooth16", "smooth8"};
    for (int i = 0; i < 4; ++i) {
      auto fm = smooth_aft_[i](cabs_[i](smooth_pre_[i](f[3 - i]), std::move(higher)));
      if (i == 3) {
        SetLogits(out, smooth_heads_[3](fm), x, /*align_corners=*/true);
      } else {
        if (deep_supervision_ && is_training()) out.aux.emplace_back(kNames[i], ResizeOutput(smooth_heads_[i](fm), x, /*align_corners=*/true));
        higher = up(fm, f[2 - i].size(2), f[2 - i].size(3));
      }
    }
    if (is_training()) {
      // Border network, layer1 -> layer4, at layer1's resolution.
      int64_t h = f[0].size(2), w = f[0].size(3);
      auto b = border_pre_[0](f[0]);
      for (int i = 1; i < 4; ++i) b = border_aft_[i](b + up(border_pre_[i](f[i]), h, w));
      out.aux.emplace_back("border", ResizeOutput(border_head(b), x, /*align_corners=*/true));
    }
    return out;
  }

  torch::Tensor AuxLoss(const std::string& name, const torch::Tensor& output, const torch::Tensor& labels,
                        int64_t ignore_index) override {
    if (name == "border") return BinaryFocalLoss(output, BoundaryTargets(labels, ignore_index), kFocalGamma);
    return SegmentationModel::AuxLoss(name, output, labels, ignore_index);
  }
  // The paper: every smooth-network stage's loss with weight 1, the border loss with lambda.
  double AuxWeight(const std::string& name, double requested) const override { return name == "border" ? border_weight_ : 1.0; }

 private:
  ResNet backbone_{nullptr};
  bool deep_supervision_ = true;
  double border_weight_ = 0.1;
  std::vector<RefineResidual> smooth_pre_, smooth_aft_, border_pre_, border_aft_;
  std::vector<ChannelAttention> cabs_;
  std::vector<DFNHead> smooth_heads_;

 public:
  nn::Sequential global_context{nullptr};
  DFNHead border_head{nullptr};
};

}  // namespace

torch::Tensor BoundaryTargets(const torch::Tensor& labels, int64_t ignore_index) {
  torch::NoGradGuard no_grad;
  auto valid = (labels != ignore_index).unsqueeze(1);
  auto l = labels.unsqueeze(1).to(torch::kFloat);
  constexpr double kBig = 1e9;
  // Largest and smallest valid label in each 3x3 window (ignored pixels and the outside excluded).
  auto hi = torch::max_pool2d(torch::where(valid, l, torch::full_like(l, -kBig)), 3, 1, 1);
  auto lo = -torch::max_pool2d(torch::where(valid, -l, torch::full_like(l, -kBig)), 3, 1, 1);
  auto boundary = (hi != lo).to(torch::kFloat);
  return torch::where(valid, boundary, torch::full_like(boundary, -1));
}

torch::Tensor BinaryFocalLoss(const torch::Tensor& logits, const torch::Tensor& targets, double gamma) {
  auto z = logits.to(torch::kFloat);
  auto counts = targets >= 0;
  auto t = targets.clamp_min(0);
  // log p_t and p_t for p = sigmoid(z): log sigmoid(z) where t = 1, log sigmoid(-z) where t = 0.
  auto log_pt = torch::log_sigmoid(torch::where(t > 0.5, z, -z));
  auto loss = -(1 - log_pt.exp()).pow(gamma) * log_pt;
  loss = torch::where(counts, loss, torch::zeros_like(loss));
  return loss.sum() / counts.sum().clamp_min(1).to(loss.dtype());
}

ModelPtr CreateDFN(const ModelConfig& c) {
  CheckConfig(c, {kResNets});
  return std::make_shared<DFN>(c);
}

}  // namespace segtorch
