#include "models/segmentation_model.h"

#include <algorithm>

#include "base/errors.h"
#include "blocks/resize.h"
#include "train/losses.h"

namespace segtorch {

namespace F = torch::nn::functional;

torch::Tensor SegmentationCrossEntropy(const torch::Tensor& logits, const torch::Tensor& labels, int64_t ignore_index) {
  LossOptions o;
  o.ignore_index = ignore_index;
  return CrossEntropyLoss(logits, labels, o);
}

namespace {
thread_local bool defer_final_resize = false;

// x in NCHW (contiguous); its gradient back in x's own layout (contiguous() would pass an NCHW
// gradient to a channels-last network).
struct ToNchw : public torch::autograd::Function<ToNchw> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x) {
    ctx->saved_data["format"] = static_cast<int64_t>(x.suggest_memory_format());
    return x.contiguous();
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grads) {
    const auto format = static_cast<at::MemoryFormat>(ctx->saved_data["format"].toInt());
    return {grads[0].defined() ? grads[0].contiguous(format) : grads[0]};
  }
};
}  // namespace

torch::Tensor ResizeOutput(const torch::Tensor& x, const torch::Tensor& like, bool align_corners) {
  if (at::GradMode::is_enabled() && !torch::jit::tracer::isTracing() && (x.size(2) != like.size(2) || x.size(3) != like.size(3))) {
    return ResizeBilinearTrain(x.is_contiguous() ? x : ToNchw::apply(x), like.size(2), like.size(3), align_corners);
  }
  return ResizeLike(x, like, align_corners);
}

DeferFinalResize::DeferFinalResize() : ThreadFlagScope(defer_final_resize, true) {}

void SetLogits(SegOutput& out, const torch::Tensor& logits, const torch::Tensor& x, bool align_corners) {
  if (defer_final_resize && (logits.size(2) != x.size(2) || logits.size(3) != x.size(3))) {
    out.out = logits;
    out.resize_to = {x.size(2), x.size(3)};
    out.resize_align_corners = align_corners;
    return;
  }
  out.out = ResizeOutput(logits, x, align_corners);
}

void ApplyDeferredResize(SegOutput& out) {
  if (out.resize_to.empty()) return;
  out.out = ResizeBilinear(out.out, out.resize_to[0], out.resize_to[1], out.resize_align_corners);
  out.resize_to.clear();
}

torch::Tensor ResizeLabels(const torch::Tensor& labels, int64_t h, int64_t w) {
  if (labels.size(1) == h && labels.size(2) == w) return labels;
  auto f = labels.unsqueeze(1).to(torch::kFloat);
  f = F::interpolate(f, F::InterpolateFuncOptions().size(std::vector<int64_t>{h, w}).mode(torch::kNearest));
  return f.squeeze(1).to(torch::kLong);
}

namespace {
// "a, b or c"
template <typename T, typename Str>
std::string OneOf(const std::vector<T>& v, Str str) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i == 0 ? "" : i + 1 == v.size() ? " or " : ", ") + str(v[i]);
  return s;
}
}  // namespace

int64_t ChannelOption(const ModelConfig& c, const std::string& key, int64_t def) {
  double v = c.Number(key, static_cast<double>(def));
  if (!(v >= 1 && v <= 65536) || v != static_cast<double>(static_cast<int64_t>(v))) {
    ThrowRange("Expected " + key + " an integer from 1 to 65536 for " + c.arch + " but received " + std::to_string(v));
  }
  return static_cast<int64_t>(v);
}

void CheckConfig(const ModelConfig& c, const Accepts& a) {
  if (std::find(a.backbones.begin(), a.backbones.end(), c.backbone) == a.backbones.end()) {
    ThrowRange("Expected backbone " + OneOf(a.backbones, [](const std::string& b) { return b; }) + " for " + c.arch +
               " but received " + c.backbone);
  }
  if (!a.strides.empty() && std::find(a.strides.begin(), a.strides.end(), c.output_stride) == a.strides.end()) {
    ThrowRange("Expected outputStride " + OneOf(a.strides, [](int64_t s) { return std::to_string(s); }) + " for " + c.arch +
               " but received " + std::to_string(c.output_stride));
  }
  if (!a.aux && c.aux) ThrowRange("Expected aux: false for " + c.arch + " (it has no auxiliary head) but received true");
}

torch::Tensor SegmentationModel::AuxLoss(const std::string&, const torch::Tensor& output, const torch::Tensor& labels,
                                         int64_t ignore_index) {
  return SegmentationCrossEntropy(output, ResizeLabels(labels, output.size(2), output.size(3)), ignore_index);
}

}  // namespace segtorch
