#include "train/losses.h"

#include <ATen/Parallel.h>
#include <torch/csrc/jit/frontend/tracer.h>

#include <algorithm>
#include <vector>

#include "base/env.h"
#include "base/errors.h"
#include "train/cross_entropy_kernel.h"

namespace segtorch {

namespace F = torch::nn::functional;

namespace {

// Valid-pixel mask and labels with ignored pixels replaced by 0 (safe for gather / one_hot).
std::pair<torch::Tensor, torch::Tensor> Valid(const torch::Tensor& labels, const LossOptions& o) {
  torch::Tensor valid = labels != o.ignore_index;
  return {valid, labels.masked_fill(~valid, 0)};
}

torch::Tensor PixelWeights(const torch::Tensor& safe_labels, const LossOptions& o) {
  if (!o.class_weights.defined()) return torch::Tensor();
  return o.class_weights.to(safe_labels.device(), torch::kFloat).index_select(0, safe_labels.flatten()).view_as(safe_labels);
}

// Pixels per part of the fused cross-entropy's parallel loops. The forward's partial sums are added
// part by part in order, so the loss does not depend on the number of threads.
constexpr int64_t kCrossEntropyPart = 4096;

int64_t Parts(int64_t total) { return (total + kCrossEntropyPart - 1) / kCrossEntropyPart; }

// f(part, first pixel, end pixel) for each of the Parts(total), in parallel.
template <class F>
void ForParts(int64_t total, const F& f) {
  at::parallel_for(0, Parts(total), 1, [&](int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p) f(p, p * kCrossEntropyPart, std::min(total, (p + 1) * kCrossEntropyPart));
  });
}

CrossEntropyTerms Terms(const torch::Tensor& labels, const torch::Tensor& weights, int64_t ignore_index, double smoothing,
                        int64_t classes) {
  CrossEntropyTerms t;
  t.labels = labels.data_ptr<int64_t>();
  t.ignore_index = ignore_index;
  t.weights = weights.numel() > 0 ? weights.data_ptr<float>() : nullptr;
  t.weight_sum = weights.numel() > 0 ? weights.sum().item<float>() : static_cast<float>(classes);
  t.smoothing = static_cast<float>(smoothing);
  return t;
}

// F::cross_entropy(logits, labels, weight, ignore_index, label_smoothing, reduction sum) for [N, C, H, W]
// float32 or bfloat16 logits on the CPU, channels-last or NCHW (others copied to one of them): one
// pass over the logits forward (lse per pixel kept), one backward writing the gradient in the logits'
// type and layout (train/cross_entropy_kernel.h). F::cross_entropy on a channels-last network's
// bf16 output needs a float32 copy, a contiguous copy (log_softmax), the NLL, the zero-filled NLL
// gradient, log_softmax's backward and a bf16 copy of an NCHW gradient that the network's channels-last
// layers then copy again: GCN's training step spent 40-50 ms of 976 there (bench/README.md).
struct FusedCrossEntropy : public torch::autograd::Function<FusedCrossEntropy> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& logits, const torch::Tensor& labels,
                               const torch::Tensor& weights, int64_t ignore_index, double smoothing) {
    torch::Tensor z = logits;
    if (!z.is_contiguous() && !z.is_contiguous(at::MemoryFormat::ChannelsLast)) z = z.contiguous(z.suggest_memory_format());
    if (!z.is_contiguous() && !z.is_contiguous(at::MemoryFormat::ChannelsLast)) z = z.contiguous();
    const bool cl = !z.is_contiguous();
    const torch::Tensor y = labels.contiguous();
    const torch::Tensor w = weights.to(at::kCPU, at::kFloat).contiguous();
    const int64_t n = z.size(0), c = z.size(1), pixels = z.size(2) * z.size(3), total = n * pixels;
    const CrossEntropyShape s{c, pixels, cl};
    const CrossEntropyTerms t = Terms(y, w, ignore_index, smoothing, c);
    torch::Tensor lse = at::empty({n, z.size(2), z.size(3)}, z.options().dtype(at::kFloat));
    const int64_t parts = Parts(total);
    std::vector<double> sums(static_cast<size_t>(parts), 0.0);
    std::vector<int64_t> bad(static_cast<size_t>(parts), ignore_index);  // the ignore index is never a bad label
    float* lp = lse.data_ptr<float>();
    ForParts(total, [&](int64_t p, int64_t i0, int64_t i1) {
      sums[p] = z.scalar_type() == at::kFloat
                    ? CrossEntropyForwardPixels(z.data_ptr<float>(), s, t, lp, i0, i1, &bad[p])
                    : CrossEntropyForwardPixels(static_cast<const uint16_t*>(z.data_ptr()), s, t, lp, i0, i1, &bad[p]);
    });
    double sum = 0.0;
    for (int64_t p = 0; p < parts; ++p) {
      if (bad[p] != ignore_index) {
        ThrowRange("Expected labels in [0, " + std::to_string(c) + ") or the ignore index " + std::to_string(ignore_index) +
                   " but received " + std::to_string(bad[p]));
      }
      sum += sums[p];
    }
    ctx->save_for_backward({z, y, w, lse});
    ctx->saved_data["ignore_index"] = ignore_index;
    ctx->saved_data["smoothing"] = smoothing;
    return at::scalar_tensor(sum, z.options().dtype(at::kFloat));
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &z = saved[0], &y = saved[1], &w = saved[2], &lse = saved[3];
    torch::Tensor dz;
    if (grads[0].defined()) {
      const int64_t ignore_index = ctx->saved_data["ignore_index"].toInt();
      const int64_t c = z.size(1), pixels = z.size(2) * z.size(3), total = z.size(0) * pixels;
      const CrossEntropyShape s{c, pixels, !z.is_contiguous()};
      const CrossEntropyTerms t = Terms(y, w, ignore_index, ctx->saved_data["smoothing"].toDouble(), c);
      const float scale = grads[0].item<float>();
      dz = at::empty_like(z, at::MemoryFormat::Preserve);
      const float* lp = lse.data_ptr<float>();
      ForParts(total, [&](int64_t, int64_t i0, int64_t i1) {
        if (z.scalar_type() == at::kFloat) {
          CrossEntropyBackwardPixels(z.data_ptr<float>(), s, t, lp, scale, dz.data_ptr<float>(), i0, i1);
        } else {
          CrossEntropyBackwardPixels(static_cast<const uint16_t*>(z.data_ptr()), s, t, lp, scale, static_cast<uint16_t*>(dz.data_ptr()),
                                     i0, i1);
        }
      });
    }
    return {dz, torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

bool FusedCrossEntropyApplies(const torch::Tensor& logits, const torch::Tensor& labels) {
  static const bool enabled = EnvSwitch("SEGTORCH_FUSED_CE", true);
  if (!enabled || !logits.is_cpu() || !labels.is_cpu() || logits.dim() != 4 || labels.dim() != 3 || torch::jit::tracer::isTracing()) {
    return false;
  }
  if ((logits.scalar_type() != at::kFloat && logits.scalar_type() != at::kBFloat16) || labels.scalar_type() != at::kLong) return false;
  // At most 65535 classes (a model's limit; loss() on wider logits takes F::cross_entropy): the channels-last
  // loops' per-call tables (classes x 64 pixels, int32 indices) stay small.
  return logits.size(1) > 0 && logits.size(1) <= 65535 && labels.size(0) == logits.size(0) && labels.size(1) == logits.size(2) && labels.size(2) == logits.size(3);
}

torch::Tensor SoftmaxCrossEntropySum(const torch::Tensor& logits, const torch::Tensor& labels, const torch::Tensor& weights,
                                     int64_t ignore_index, double smoothing) {
  if (weights.defined() && (weights.dim() != 1 || weights.size(0) != logits.size(1))) {
    ThrowRange("Expected " + std::to_string(logits.size(1)) + " class weights but received " + std::to_string(weights.numel()));
  }
  // An undefined tensor cannot be a Function's input: no weights are an empty one.
  return FusedCrossEntropy::apply(logits, labels, weights.defined() ? weights : at::empty({0}, logits.options().dtype(at::kFloat)),
                                  ignore_index, smoothing);
}

torch::Tensor CrossEntropyLoss(const torch::Tensor& logits, const torch::Tensor& labels, const LossOptions& o) {
  torch::Tensor denom;
  if (o.class_weights.defined()) {
    auto [valid, safe] = Valid(labels, o);
    denom = (PixelWeights(safe, o) * valid).sum();
  } else {
    denom = (labels != o.ignore_index).sum();
  }
  torch::Tensor sum;
  if (FusedCrossEntropyApplies(logits, labels)) {
    sum = SoftmaxCrossEntropySum(logits, labels, o.class_weights, o.ignore_index, o.label_smoothing);
  } else {
    // In float32 (bf16 / fp16 logits of autocast), as PyTorch's autocast runs its losses.
    const torch::Tensor z = logits.scalar_type() == at::kDouble ? logits : logits.to(at::kFloat);
    auto opts = F::CrossEntropyFuncOptions().ignore_index(o.ignore_index).reduction(torch::kSum).label_smoothing(o.label_smoothing);
    if (o.class_weights.defined()) opts.weight(o.class_weights.to(z.device(), z.scalar_type()));
    sum = F::cross_entropy(z, labels, opts);
  }
  return sum / denom.to(sum.dtype()).clamp_min(1e-12).where(denom > 0, torch::ones({}, sum.options()));
}

torch::Tensor OhemCrossEntropyLoss(const torch::Tensor& logits, const torch::Tensor& labels, const LossOptions& o) {
  auto [valid, safe] = Valid(labels, o);
  torch::Tensor hard_labels = labels;
  {
    torch::NoGradGuard no_grad;
    torch::Tensor prob = torch::softmax(logits.to(torch::kFloat), 1).gather(1, safe.unsqueeze(1)).squeeze(1);
    prob = prob.masked_fill(~valid, 1.0);  // ignored pixels are never "hard"
    int64_t n_valid = valid.sum().item<int64_t>();
    double threshold = o.ohem_threshold;
    if (n_valid > 0 && o.ohem_min_kept > 0) {
      int64_t k = std::min(o.ohem_min_kept, n_valid);
      double kth = std::get<0>(prob.flatten().kthvalue(k)).item<double>();
      threshold = std::max(threshold, kth);
    }
    torch::Tensor keep = valid & (prob <= threshold);
    hard_labels = labels.masked_fill(~keep, o.ignore_index);
  }
  return CrossEntropyLoss(logits, hard_labels, o);
}

torch::Tensor DiceLoss(const torch::Tensor& logits, const torch::Tensor& labels, const LossOptions& o) {
  int64_t k = logits.size(1);
  auto [valid, safe] = Valid(labels, o);
  torch::Tensor prob = torch::softmax(logits.to(torch::kFloat), 1);
  torch::Tensor mask = valid.unsqueeze(1).to(prob.dtype());
  torch::Tensor target = F::one_hot(safe, k).permute({0, 3, 1, 2}).to(prob.dtype()) * mask;
  prob = prob * mask;
  torch::Tensor inter = (prob * target).sum({0, 2, 3});
  torch::Tensor card = prob.sum({0, 2, 3}) + target.sum({0, 2, 3});
  torch::Tensor dice = (2 * inter + o.dice_smooth) / (card + o.dice_smooth);
  torch::Tensor loss = 1 - dice;
  if (o.class_weights.defined()) {
    torch::Tensor w = o.class_weights.to(loss.device(), loss.scalar_type());
    return (loss * w).sum() / w.sum();
  }
  return loss.mean();
}

torch::Tensor FocalLoss(const torch::Tensor& logits, const torch::Tensor& labels, const LossOptions& o) {
  auto [valid, safe] = Valid(labels, o);
  torch::Tensor logp = torch::log_softmax(logits.to(torch::kFloat), 1).gather(1, safe.unsqueeze(1)).squeeze(1);
  torch::Tensor p = logp.exp();
  // (1 - p)^gamma has an infinite derivative at p = 1 for gamma < 1 (a pixel predicted with
  // certainty); its product with log p = 0 does not, but autograd's inf x 0 made NaN gradients.
  // Clamped, the derivative there is 0, as the limit; the value changes by less than 1e-12^gamma x |log p|.
  torch::Tensor loss = -torch::pow((1 - p).clamp_min(1e-12), o.focal_gamma) * logp;
  torch::Tensor w = valid.to(loss.dtype());
  if (o.class_weights.defined()) w = w * PixelWeights(safe, o);
  torch::Tensor denom = w.sum();
  return (loss * w).sum() / denom.clamp_min(1e-12).where(denom > 0, torch::ones({}, denom.options()));
}

torch::Tensor LovaszSoftmaxLoss(const torch::Tensor& logits, const torch::Tensor& labels, const LossOptions& o) {
  int64_t k = logits.size(1);
  torch::Tensor prob = torch::softmax(logits.to(torch::kFloat), 1).permute({0, 2, 3, 1}).reshape({-1, k});
  torch::Tensor lab = labels.reshape({-1});
  torch::Tensor valid = lab != o.ignore_index;
  prob = prob.index({valid});
  lab = lab.index({valid});
  if (lab.numel() == 0) return logits.sum() * 0.0;
  std::vector<torch::Tensor> losses;
  std::vector<double> weights;
  for (int64_t c = 0; c < k; ++c) {
    torch::Tensor fg = (lab == c).to(prob.dtype());
    if (fg.sum().item<double>() == 0) continue;  // classes present in the labels only
    torch::Tensor errors = (fg - prob.select(1, c)).abs();
    auto sorted = errors.sort(0, /*descending=*/true);
    torch::Tensor errors_sorted = std::get<0>(sorted);
    torch::Tensor fg_sorted = fg.index_select(0, std::get<1>(sorted));
    // Gradient of the Lovasz extension of the Jaccard loss (Berman et al., Alg. 1).
    torch::Tensor gts = fg_sorted.sum();
    torch::Tensor intersection = gts - fg_sorted.cumsum(0);
    torch::Tensor unions = gts + (1 - fg_sorted).cumsum(0);
    torch::Tensor jaccard = 1 - intersection / unions;
    if (jaccard.numel() > 1) {
      jaccard = torch::cat({jaccard.slice(0, 0, 1), jaccard.slice(0, 1) - jaccard.slice(0, 0, -1)});
    }
    losses.push_back(torch::dot(errors_sorted, jaccard));
    weights.push_back(o.class_weights.defined() ? o.class_weights[c].item<double>() : 1.0);
  }
  torch::Tensor total = torch::zeros({}, prob.options());
  double wsum = 0;
  for (size_t i = 0; i < losses.size(); ++i) {
    total = total + losses[i] * weights[i];
    wsum += weights[i];
  }
  return wsum > 0 ? total / wsum : total;
}

torch::Tensor DepthLoss(const torch::Tensor& pred, const torch::Tensor& target, const std::string& type) {
  torch::Tensor p = pred.dim() == 4 ? pred.squeeze(1) : pred;
  torch::Tensor t = target.dim() == 4 ? target.squeeze(1) : target;
  if (p.sizes() != t.sizes()) ThrowRange("Expected depth targets of the prediction's size");
  torch::Tensor t32 = t.to(p.scalar_type());
  torch::Tensor valid = (t32 > 0) & torch::isfinite(t32);
  torch::Tensor diff = (p - t32.masked_fill(~valid, 0)).masked_fill(~valid, 0).abs();
  torch::Tensor n = valid.sum().to(p.scalar_type());
  if (n.item<double>() == 0) return p.sum() * 0.0;
  if (type == "l1") return diff.sum() / n;
  if (type == "berhu") {
    torch::Tensor c = (0.2 * diff.max().detach()).clamp_min(1e-6);
    torch::Tensor l2 = (diff * diff + c * c) / (2 * c);
    torch::Tensor loss = torch::where(diff <= c, diff, l2).masked_fill(~valid, 0);
    return loss.sum() / n;
  }
  ThrowRange("Expected depth loss 'l1' or 'berhu' but received '" + type + "'");
}

torch::Tensor SegmentationLoss(const std::string& name, const torch::Tensor& logits, const torch::Tensor& labels,
                               const LossOptions& o) {
  if (name == "ce") return CrossEntropyLoss(logits, labels, o);
  if (name == "ohem") return OhemCrossEntropyLoss(logits, labels, o);
  if (name == "dice") return DiceLoss(logits, labels, o);
  if (name == "focal") return FocalLoss(logits, labels, o);
  if (name == "lovasz") return LovaszSoftmaxLoss(logits, labels, o);
  ThrowRange("Expected loss 'ce', 'ohem', 'dice', 'focal' or 'lovasz' but received '" + name + "'");
}

}  // namespace segtorch
