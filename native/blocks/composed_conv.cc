#include "blocks/composed_conv.h"

#include <torch/csrc/jit/frontend/tracer.h>

#include "base/env.h"
#include "blocks/resize.h"

namespace segtorch {

namespace nn = torch::nn;

namespace {

// Whether the composition is the inner-1x1 kind (a bias-free 1x1 inner: its output on the outer's zero padding is zero);
// otherwise the outer-1x1 kind.
bool InnerOneByOne(const Conv2dImpl& inner) { return inner.IsOneByOne() && !inner.bias.defined(); }

}  // namespace

bool ComposedConv::Composable(const Conv2dImpl& outer, const Conv2dImpl& inner) {
  int64_t ph = 0, pw = 0;
  const torch::Tensor &wo = outer.weight, &wi = inner.weight;
  if (!wo.defined() || !wi.defined() || wo.dim() != 4 || wi.dim() != 4 || outer.options.groups() != 1 || inner.options.groups() != 1 ||
      !outer.ZeroPaddingValues(&ph, &pw) || !inner.ZeroPaddingValues(&ph, &pw) || wo.size(1) != wi.size(0) ||
      wo.scalar_type() != wi.scalar_type() || wo.device() != wi.device()) {
    return false;
  }
  return InnerOneByOne(inner) || outer.IsOneByOne();
}

int64_t ComposedConv::MacsPerPixel(const Conv2dImpl& outer, const Conv2dImpl& inner) {
  const torch::Tensor& spatial = InnerOneByOne(inner) ? outer.weight : inner.weight;
  return outer.weight.size(0) * inner.weight.size(1) * spatial.size(2) * spatial.size(3);
}

void ComposedConv::Drop() {
  if (conv_) conv_->Prepack(false);
  conv_ = nullptr;
  for (auto& s : stamps_) s = WeightStamp();
}

Conv2dImpl& ComposedConv::Get(const Conv2dImpl& outer, const Conv2dImpl& inner, const Conv2dImpl& like, bool bias) {
  const torch::Tensor* parts[4] = {&outer.weight, &outer.bias, &inner.weight, &inner.bias};
  bool same = conv_ && bias_ == bias && prepacked_ == like.prepacked() && conv_->weight.scalar_type() == like.weight.scalar_type();
  for (int i = 0; same && i < 4; ++i) same = parts[i]->defined() ? stamps_[i].Matches(*parts[i]) : !stamps_[i].storage;
  if (same) return *conv_;
  // Normal tensors, not inference ones (no version counter: kernel transforms kept by conv_ are stamped with their
  // weight's version), without gradients; in float32 (autocast's bf16 would round the sums).
  c10::InferenceMode normal(false);
  torch::NoGradGuard no_grad;
  c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::DispatchKey::AutocastCPU);
  const bool inner_1x1 = InnerOneByOne(inner);
  const Conv2dImpl& spatial = inner_1x1 ? outer : inner;
  const torch::Tensor wo = outer.weight.detach().to(at::kFloat), wi = inner.weight.detach().to(at::kFloat);
  torch::Tensor w, b;
  if (inner_1x1) {
    // [K, M, kh, kw] x [M, C] -> [K, C, kh, kw]
    w = at::einsum("kmab,mc->kcab", {wo, wi.flatten(1)});
    if (outer.bias.defined()) b = outer.bias.detach().to(at::kFloat);
  } else {
    // [K, M] x [M, C, kh, kw] -> [K, C, kh, kw]
    const torch::Tensor wo2 = wo.flatten(1);
    w = at::einsum("km,mcab->kcab", {wo2, wi});
    if (inner.bias.defined()) b = at::mv(wo2, inner.bias.detach().to(at::kFloat));
    if (outer.bias.defined()) b = b.defined() ? b + outer.bias.detach().to(at::kFloat) : outer.bias.detach().to(at::kFloat);
  }
  if (!bias) b = torch::Tensor();
  int64_t ph = 0, pw = 0;
  spatial.ZeroPaddingValues(&ph, &pw);
  conv_ = Conv2d(nn::Conv2dOptions(w.size(1), w.size(0), {w.size(2), w.size(3)})
                     .stride(*spatial.options.stride())
                     .padding({ph, pw})
                     .dilation(*spatial.options.dilation())
                     .bias(b.defined()));
  conv_->eval();
  const at::ScalarType type = like.weight.scalar_type();
  conv_->to(like.weight.device());
  for (auto& p : conv_->parameters()) p.set_requires_grad(false);
  conv_->weight.set_data(w.to(type).contiguous(like.weight.suggest_memory_format()));
  if (b.defined()) conv_->bias.set_data(b.to(type));
  conv_->Prepack(like.prepacked());
  bias_ = bias;
  prepacked_ = like.prepacked();
  for (int i = 0; i < 4; ++i) {
    stamps_[i] = WeightStamp();
    if (parts[i]->defined()) stamps_[i].Set(*parts[i]);
  }
  return *conv_;
}

bool ComposeApplies(const torch::Tensor& x) {
  static const long mode = EnvInteger("SEGTORCH_COMPOSE", -1, 0, 1);
  // Inference mode: predict's inference copies, whose weights change only where PrepackConvolutions then drops what was
  // kept (DropWeightCopies). Not the trained network's forward without gradients: its one-pass optimizer writes the
  // weights in place without a version bump, which the stamps cannot see (a stale kernel, 0.3-0.9 % off the exported
  // graph's logits after the battery's training steps).
  return mode != 0 && c10::InferenceMode::is_enabled() && !at::GradMode::is_enabled() && !AsTracedActive() && !torch::jit::tracer::isTracing() &&
         x.is_cpu();
}

}  // namespace segtorch
