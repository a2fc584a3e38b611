// Streaming confusion matrix and the metrics derived from it.
#pragma once
#include <torch/torch.h>

#include <vector>

namespace segtorch {

// confusion[t][p] += number of pixels with label t predicted as p; ignore_index (and labels out
// of range) never count. Accumulates on the tensors' device.
class ConfusionMatrix {
 public:
  ConfusionMatrix(int64_t num_classes, int64_t ignore_index, torch::Device device = torch::kCPU);
  void Update(const torch::Tensor& predictions, const torch::Tensor& labels);
  void Reset();
  torch::Tensor matrix() const { return matrix_; }  // int64 [K,K]
  int64_t num_classes() const { return k_; }

 private:
  int64_t k_, ignore_;
  torch::Tensor matrix_;
};

struct Metrics {
  double miou = 0, pixel_accuracy = 0, mean_accuracy = 0, fw_iou = 0, mean_dice = 0;
  std::vector<double> iou, accuracy, dice;  // per class; NaN where the class is absent from both
};

// Classes absent from both predictions and labels are excluded from the means (NaN per class).
Metrics ComputeMetrics(const torch::Tensor& confusion);

}  // namespace segtorch
