#include "train/losses.h"

#include "base/errors.h"

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

}  // namespace

torch::Tensor CrossEntropyLoss(const torch::Tensor& logits, const torch::Tensor& labels, const LossOptions& o) {
  auto opts = F::CrossEntropyFuncOptions().ignore_index(o.ignore_index).reduction(torch::kSum).label_smoothing(o.label_smoothing);
  torch::Tensor denom;
  if (o.class_weights.defined()) {
    opts.weight(o.class_weights.to(logits.device(), logits.scalar_type()));
    auto [valid, safe] = Valid(labels, o);
    denom = (PixelWeights(safe, o) * valid).sum();
  } else {
    denom = (labels != o.ignore_index).sum();
  }
  auto sum = F::cross_entropy(logits, labels, opts);
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
