// Inference as the papers evaluate: whole image or sliding window, multi-scale and flipped inputs
// with probabilities averaged. Works on any network through a callable giving logits at its input
// size. Plain libtorch.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <string>
#include <vector>

#include "base/precision.h"
#include "infer/crf.h"

namespace segtorch {

// Every field is given by the caller (defaults: lib/predict.ts; read by node/options.cc).
struct InferOptions {
  std::string mode;                // whole | slide
  int64_t crop_h{}, crop_w{};      // slide: window size
  int64_t stride_h{}, stride_w{};  // slide: window stride
  std::vector<double> scales;
  bool flip{};
  std::string output;              // labels | probs | logits
  Precision precision{Precision::kFp32};  // fp16: CUDA only
  bool channels_last{};            // channels-last activations and weights
  bool fold_batch_norm{};          // run a copy with BatchNorms folded into their convolutions
  bool compile{};                  // run the network through infer/compiled_net.h
  bool winograd{};                 // NNPACK's Winograd 3x3 convolutions (blocks/conv2d.h WinogradGuard; eager only)
  CrfOptions crf;  // enabled: dense CRF on the probabilities, at the images' colours (InferWithCrf)
};

using LogitsFn = std::function<torch::Tensor(const torch::Tensor&)>;

// x: normalised float images [N,C,H,W]. Returns, at H x W: int32 labels [N,H,W], or float32
// probabilities / logits [N,K,H,W] (averaged over scales and flips; logits are averaged as logits).
// Sliding windows overlap; overlapping logits are averaged. Images smaller than the window are
// padded with zeros, i.e. the mean colour after normalisation, and the padding is cropped away.
torch::Tensor Infer(const LogitsFn& logits, const torch::Tensor& x, const InferOptions& o);

// Infer, then (when o.crf.enabled) the fully connected CRF on the averaged probabilities, with
// `colours` [N,C,H,W] on a 0..255 scale as the appearance kernel's features. One spelling for every
// model kind (ours and TorchScript ones).
torch::Tensor InferWithCrf(const LogitsFn& logits, const torch::Tensor& x, const torch::Tensor& colours, const InferOptions& o);

}  // namespace segtorch
