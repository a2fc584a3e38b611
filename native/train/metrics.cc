#include "train/metrics.h"

#include <cmath>
#include <limits>

#include "base/errors.h"

namespace segtorch {

ConfusionMatrix::ConfusionMatrix(int64_t num_classes, int64_t ignore_index, torch::Device device)
    : k_(num_classes), ignore_(ignore_index) {
  if (num_classes < 1) ThrowRange("Expected numClasses >= 1 for the confusion matrix");
  matrix_ = torch::zeros({k_, k_}, torch::TensorOptions().dtype(torch::kLong).device(device));
}

void ConfusionMatrix::Reset() { matrix_.zero_(); }

void ConfusionMatrix::Update(const torch::Tensor& predictions, const torch::Tensor& labels) {
  if (predictions.sizes() != labels.sizes()) ThrowRange("Expected predictions and labels of the same shape");
  torch::NoGradGuard no_grad;
  torch::Tensor t = labels.to(matrix_.device()).to(torch::kLong).flatten();
  torch::Tensor p = predictions.to(matrix_.device()).to(torch::kLong).flatten();
  torch::Tensor keep = (t != ignore_) & (t >= 0) & (t < k_) & (p >= 0) & (p < k_);
  torch::Tensor idx = t.index({keep}) * k_ + p.index({keep});
  matrix_ += torch::bincount(idx, {}, k_ * k_).view({k_, k_});
}

Metrics ComputeMetrics(const torch::Tensor& confusion) {
  torch::Tensor c = confusion.to(torch::kCPU).to(torch::kDouble);
  int64_t k = c.size(0);
  auto cm = c.accessor<double, 2>();
  const double nan = std::numeric_limits<double>::quiet_NaN();
  Metrics m;
  double total = 0, diag = 0;
  std::vector<double> rows(k, 0), cols(k, 0);
  for (int64_t i = 0; i < k; ++i) {
    for (int64_t j = 0; j < k; ++j) {
      rows[i] += cm[i][j];
      cols[j] += cm[i][j];
      total += cm[i][j];
    }
    diag += cm[i][i];
  }
  double iou_sum = 0, acc_sum = 0, dice_sum = 0, fw = 0;
  int64_t iou_n = 0, acc_n = 0;
  for (int64_t i = 0; i < k; ++i) {
    double tp = cm[i][i], fn = rows[i] - tp, fp = cols[i] - tp;
    double denom = tp + fp + fn;
    double iou = denom > 0 ? tp / denom : nan;
    double dice = denom > 0 ? 2 * tp / (2 * tp + fp + fn) : nan;
    double acc = rows[i] > 0 ? tp / rows[i] : nan;
    m.iou.push_back(iou);
    m.dice.push_back(dice);
    m.accuracy.push_back(acc);
    if (denom > 0) {
      iou_sum += iou;
      dice_sum += dice;
      ++iou_n;
    }
    if (rows[i] > 0) {
      acc_sum += acc;
      ++acc_n;
      fw += rows[i] / total * iou;
    }
  }
  m.miou = iou_n ? iou_sum / iou_n : nan;
  m.mean_dice = iou_n ? dice_sum / iou_n : nan;
  m.mean_accuracy = acc_n ? acc_sum / acc_n : nan;
  m.pixel_accuracy = total > 0 ? diag / total : nan;
  m.fw_iou = total > 0 ? fw : nan;
  return m;
}

}  // namespace segtorch
