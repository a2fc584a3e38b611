// The network predict() runs when folding BatchNorms: a copy of the trained network in eval mode
// with every foldable BatchNorm folded into its convolution (infer/fold.h), rebuilt when the trained
// network's weights or buffers change. Training and saved weights never see folded values.
#pragma once
#include <torch/torch.h>

#include <vector>

#include "infer/fold.h"
#include "models/segmentation_model.h"

namespace segtorch {

class FoldedNet {
 public:
  // The folded copy of `source` (built from `config`, on `device`). version: changes whenever a
  // parameter or buffer of `source` changes (the copy is refreshed then). dtype: the autocast type
  // predict runs in (kFloat: none); convolution weights are kept in it so that autocast does not
  // cast them again on every call. prepack: on the CPU, convolutions run with their weights reordered
  // once for oneDNN (blocks/conv2d.h) where this libtorch can, unless SEGTORCH_PREPACK=0.
  SegmentationModel& Get(const ModelConfig& config, SegmentationModel& source, const torch::Device& device,
                         int64_t version, bool channels_last, at::ScalarType dtype, bool prepack = true);
  // Forgets the copy: the next Get builds a fresh one.
  void Reset();

 private:
  ModelPtr folded_;
  const SegmentationModel* source_ = nullptr;
  int64_t version_ = -1;
  std::vector<FoldPair> pairs_;
  bool channels_last_ = false;
  at::ScalarType dtype_ = at::kFloat;
  bool prepacked_ = false;
};

// Whether FoldedNet prepacks (SEGTORCH_PREPACK unset or not "0") and this libtorch can.
bool PrepackEnabled();

}  // namespace segtorch
