// Conv + BatchNorm folding for inference: each BatchNorm2d (blocks/batch_norm.h) whose input is
// the output of a Conv2d, and nothing else's, is folded into that convolution (weight scaled per
// output channel, bias shifted) and becomes the identity. Plain libtorch; used by Segmenter on a
// copy of the network, so training and saved weights never see folded values.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <vector>

#include "blocks/batch_norm.h"

namespace segtorch {

struct FoldPair {
  torch::nn::Conv2dImpl* conv;
  BatchNorm2dImpl* bn;
  bool conv_had_bias;
};

// Finds the foldable pairs by running `forward` once (eval mode, gradients on) on a network whose
// BatchNorms are not folded, and following the autograd graph of its outputs: a BN is paired with
// a Conv2d when every call's input came straight from that convolution, the convolution feeds no
// other operation, and the BN uses running statistics. `forward` returns the network's outputs.
std::vector<FoldPair> FindFoldPairs(torch::nn::Module& net, const std::function<std::vector<torch::Tensor>()>& forward);

// Folds the pairs in place: conv.weight *= gamma / sqrt(var + eps) per output channel,
// conv.bias = (bias - mean) * that + beta; the BN then passes its input through. The network must
// hold unfolded values (e.g. just copied from the trained one).
void FoldBatchNorm(const std::vector<FoldPair>& pairs);

// Undoes the module state FoldBatchNorm changed apart from the values (BNs active again, convs
// without a bias of their own lose the folded one), ready for fresh weights and a new fold.
void UnfoldBatchNorm(const std::vector<FoldPair>& pairs);

}  // namespace segtorch
