#include "models/segmentation_model.h"

namespace segtorch {

namespace F = torch::nn::functional;

torch::Tensor SegmentationCrossEntropy(const torch::Tensor& logits, const torch::Tensor& labels, int64_t ignore_index) {
  auto sum = F::cross_entropy(logits, labels, F::CrossEntropyFuncOptions().ignore_index(ignore_index).reduction(torch::kSum));
  auto count = (labels != ignore_index).sum().clamp_min(1).to(sum.dtype());
  return sum / count;
}

torch::Tensor ResizeLabels(const torch::Tensor& labels, int64_t h, int64_t w) {
  if (labels.size(1) == h && labels.size(2) == w) return labels;
  auto f = labels.unsqueeze(1).to(torch::kFloat);
  f = F::interpolate(f, F::InterpolateFuncOptions().size(std::vector<int64_t>{h, w}).mode(torch::kNearest));
  return f.squeeze(1).to(torch::kLong);
}

torch::Tensor SegmentationModel::AuxLoss(const std::string&, const torch::Tensor& output, const torch::Tensor& labels,
                                         int64_t ignore_index) {
  return SegmentationCrossEntropy(output, ResizeLabels(labels, output.size(2), output.size(3)), ignore_index);
}

}  // namespace segtorch
