#include "infer/folded_net.h"
#include "base/env.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "blocks/conv2d.h"

namespace segtorch {

namespace {
// Convolution weights and biases (Conv2d, ConvTranspose2d) of `net` to `dtype`, layout kept.
void CastConvolutions(torch::nn::Module& net, at::ScalarType dtype) {
  auto cast = [dtype](torch::Tensor& t) {
    if (t.defined() && t.scalar_type() != dtype) t.set_data(t.data().to(dtype));
  };
  for (auto& m : net.modules(/*include_self=*/false)) {
    if (auto* conv = m->as<torch::nn::Conv2d>()) {
      cast(conv->weight);
      cast(conv->bias);
    } else if (auto* up = m->as<torch::nn::ConvTranspose2d>()) {
      cast(up->weight);
      cast(up->bias);
    }
  }
}
}  // namespace

bool PrepackEnabled() {
  static const bool enabled = EnvSwitch("SEGTORCH_PREPACK", true) && PrepackedConvolutionAvailable();
  return enabled;
}

SegmentationModel& FoldedNet::Get(const ModelConfig& config, SegmentationModel& source, const torch::Device& device,
                                  int64_t version, bool channels_last, at::ScalarType dtype, bool prepack) {
  torch::NoGradGuard no_grad;
  const bool pack = prepack && device.is_cpu() && PrepackEnabled();
  bool changed = false;
  if (!folded_ || source_ != &source) {
    changed = true;
    // A fresh copy of the architecture; which BNs fold is found once, by tracing it.
    folded_.reset();
    pairs_.clear();
    ModelPtr copy = CreateNetwork(config);
    copy->to(device);
    copy->eval();
    int64_t k = copy->input_multiple(), s = std::max<int64_t>(64, 2 * k);
    s = (s + k - 1) / k * k;
    torch::Tensor example = torch::randn({1, config.in_channels, s, s}, torch::TensorOptions().device(device));
    pairs_ = FindFoldPairs(*copy, [&]() {
      SegOutput out = copy->forward(example);
      std::vector<torch::Tensor> all{out.out};
      for (auto& a : out.aux) all.push_back(a.second);
      return all;
    });
    folded_ = copy;
    source_ = &source;
    version_ = -1;
    channels_last_ = false;
    dtype_ = at::kFloat;
    prepacked_ = false;
  }
  if (version_ != version || dtype_ != dtype) {
    changed = true;
    // Copied and folded in fp32 (the scale in double), then cast once to the inference type.
    if (dtype_ != at::kFloat) CastConvolutions(*folded_, at::kFloat);
    dtype_ = at::kFloat;
    UnfoldBatchNorm(pairs_);
    auto src_p = source.named_parameters(), dst_p = folded_->named_parameters();
    for (const auto& kv : src_p) dst_p[kv.key()].copy_(kv.value());
    auto src_b = source.named_buffers(), dst_b = folded_->named_buffers();
    for (const auto& kv : src_b) dst_b[kv.key()].copy_(kv.value());
    FoldBatchNorm(pairs_);
    if (dtype != at::kFloat) CastConvolutions(*folded_, dtype);
    dtype_ = dtype;
    version_ = version;
  }
  if (channels_last_ != channels_last) {
    changed = true;
    auto format = channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
    for (auto& p : folded_->parameters()) {
      if (p.dim() == 4) p.set_data(p.data().contiguous(format));
    }
    for (const auto& pair : pairs_) pair.conv->weight.set_data(pair.conv->weight.data().contiguous(format));
    channels_last_ = channels_last;
  }
  // The reordered weights are copies: made again after any change of the weights, type or layout. Prepack(false) also
  // drops the kernel transforms the convolutions keep between calls (the fp32 Winograd's, the taps'): the weights are
  // written here in place, and under inference mode that leaves their version number as it was (a prediction after a
  // training step ran the fp32 Winograd with the step's old weights: 2.6 % off the logits).
  if (changed || pack != prepacked_) {
    PrepackConvolutions(*folded_, pack);
    prepacked_ = pack;
  }
  return *folded_;
}

void FoldedNet::Reset() {
  folded_.reset();
  source_ = nullptr;
}

}  // namespace segtorch
