#include "infer/evaluation.h"

#include "base/errors.h"

namespace segtorch {

void Evaluation::Reset(int64_t num_classes, int64_t ignore_index, torch::Device device) {
  confusion_ = std::make_unique<ConfusionMatrix>(num_classes, ignore_index, device);
}

void Evaluation::Update(const torch::Tensor& images, const torch::Tensor& masks, const InferOptions& options, const PredictFn& predict) {
  if (!confusion_) ThrowError("evaluation was not started");
  if (masks.dim() != 3 || masks.size(0) != images.size(0) || masks.size(1) != images.size(2) || masks.size(2) != images.size(3)) {
    ThrowRange("Expected masks of shape [N, H, W] matching the images");
  }
  InferOptions o = options;
  o.output = "labels";
  torch::Tensor labels = predict(images, o);
  // ConfusionMatrix::Update moves the masks to the matrix's device and reads them as int64.
  confusion_->Update(labels, masks);
}

EvalResult Evaluation::Compute() const {
  if (!confusion_) ThrowError("evaluation was not started");
  EvalResult r;
  r.confusion = confusion_->matrix().to(torch::kCPU).clone();
  r.metrics = ComputeMetrics(r.confusion);
  return r;
}

}  // namespace segtorch
