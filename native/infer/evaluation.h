// Streaming evaluation, one implementation for our networks (Segmenter) and TorchScript models
// (ScriptSegmenter): a confusion matrix accumulated on the model's device over batches of images
// and masks, the images labelled by the model's predict with the caller's inference options.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <memory>

#include "infer/inference.h"
#include "train/metrics.h"

namespace segtorch {

struct EvalResult {
  torch::Tensor confusion;  // int64 [K,K] on the CPU
  Metrics metrics;
};

class Evaluation {
 public:
  using PredictFn = std::function<torch::Tensor(const torch::Tensor& images, const InferOptions& options)>;

  void Reset(int64_t num_classes, int64_t ignore_index, torch::Device device);
  // Checks that evaluation was started and that masks [N, H, W] match images [N, C, H, W], then
  // counts predict(images, options with output "labels") against the masks.
  void Update(const torch::Tensor& images, const torch::Tensor& masks, const InferOptions& options, const PredictFn& predict);
  EvalResult Compute() const;

 private:
  std::unique_ptr<ConfusionMatrix> confusion_;
};

}  // namespace segtorch
