// Segmentation losses. Every loss honours ignore_index and optional per-class weights.
// logits [N,K,H,W] (float32; bf16 / fp16 taken and computed in float32), labels [N,H,W] (int64). Plain libtorch.
#pragma once
#include <torch/torch.h>

#include <string>

namespace segtorch {

// Every field is given by the caller (defaults: lib/train.ts; read by node/options.cc).
struct LossOptions {
  int64_t ignore_index{};
  torch::Tensor class_weights;  // [K] or undefined
  double label_smoothing{};     // cross-entropy
  double ohem_threshold{};      // keep pixels whose true-class probability is below this ...
  int64_t ohem_min_kept{};      // ... but at least this many (the hardest ones)
  double focal_gamma{};
  double dice_smooth{};
};

// Whether SoftmaxCrossEntropySum takes these (CPU, [N, C, H, W] float32 / bfloat16 logits, [N, H, W]
// int64 labels, not tracing; SEGTORCH_FUSED_CE=0 turns it off for measurements).
bool FusedCrossEntropyApplies(const torch::Tensor& logits, const torch::Tensor& labels);
// F::cross_entropy(logits, labels, weight, ignore_index, label_smoothing, reduction sum) in one pass each
// way (train/cross_entropy_kernel.h), differentiable; the gradient in the logits' type and layout. A label
// outside [0, C) other than the ignore index is a RangeError.
torch::Tensor SoftmaxCrossEntropySum(const torch::Tensor& logits, const torch::Tensor& labels, const torch::Tensor& weights,
                                     int64_t ignore_index, double smoothing);
// Mean cross-entropy over valid pixels (weighted mean when class weights are given, as PyTorch);
// 0 when no pixel is valid.
torch::Tensor CrossEntropyLoss(const torch::Tensor& logits, const torch::Tensor& labels, const LossOptions& o);
// Online hard example mining cross-entropy (Wu et al.; as in PSPNet/mmseg OHEM).
torch::Tensor OhemCrossEntropyLoss(const torch::Tensor& logits, const torch::Tensor& labels, const LossOptions& o);
// 1 - mean over classes of the soft Dice coefficient (Milletari et al.), valid pixels only.
torch::Tensor DiceLoss(const torch::Tensor& logits, const torch::Tensor& labels, const LossOptions& o);
// Focal loss (Lin et al. 2017): -w_y (1 - p_y)^gamma log p_y, mean over valid pixels.
torch::Tensor FocalLoss(const torch::Tensor& logits, const torch::Tensor& labels, const LossOptions& o);
// Lovasz-softmax (Berman et al. 2018) over the batch, classes present in the labels.
torch::Tensor LovaszSoftmaxLoss(const torch::Tensor& logits, const torch::Tensor& labels, const LossOptions& o);
// Depth regression on valid pixels (target > 0 and finite): "l1" or "berhu" (reverse Huber,
// c = 0.2 max |error|, Laina et al. 2016). pred/target [N,1,H,W] or [N,H,W].
torch::Tensor DepthLoss(const torch::Tensor& pred, const torch::Tensor& target, const std::string& type);

// By name: "ce", "ohem", "dice", "focal", "lovasz".
torch::Tensor SegmentationLoss(const std::string& name, const torch::Tensor& logits, const torch::Tensor& labels,
                               const LossOptions& o);

}  // namespace segtorch
