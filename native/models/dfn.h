// DFN (Yu, Wang, Peng, Gao, Yu, Sang: Learning a Discriminative Feature Network for Semantic
// Segmentation, CVPR 2018): smooth network and border network.
#pragma once
#include "models/segmentation_model.h"

namespace segtorch {
ModelPtr CreateDFN(const ModelConfig& config);
// Boundary targets for labels [N,H,W] (int64): 1 where any label in the pixel's 3x3 neighbourhood
// differs from another (pixels equal to ignore_index take no part), 0 elsewhere, -1 on
// ignore_index pixels. Float [N,1,H,W].
torch::Tensor BoundaryTargets(const torch::Tensor& labels, int64_t ignore_index);
// Binary focal loss (Lin et al. 2017), FL(p_t) = -(1 - p_t)^gamma log(p_t), of logits [N,1,H,W]
// against targets in {0, 1} (-1: ignored), mean over the pixels that count (0 when none does).
torch::Tensor BinaryFocalLoss(const torch::Tensor& logits, const torch::Tensor& targets, double gamma);
}  // namespace segtorch
