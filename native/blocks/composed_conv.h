// Two convolutions applied one after the other, with nothing between them, are one convolution. Where one of the two is
// 1x1, the composed kernel has the other's size and the channels of the outer's output and the inner's input:
//   outer(inner(x)) with inner 1x1 [M, C] (no bias, stride 1, no padding): kernel [K, C, kh, kw] = sum over m of
//     W_outer[k, m] W_inner[m, c], the outer's bias, stride, padding and dilation (exact at the borders: the inner's
//     output on the zero padding is zero, as it has no bias);
//   outer 1x1 [K, M] (stride 1, no padding) of any inner: kernel [K, C, kh, kw] = sum over m of W_outer[k, m]
//     W_inner[m, c], bias W_outer b_inner + b_outer, the inner's stride, padding and dilation.
// Cheaper than the two wherever the composed kernel has fewer multiplications than the convolution it replaces: DFN's
// first refinement block on layer1 (256 -> 512, then 3x3 512 -> 512 on it: 3x3 256 -> 512 on layer1 instead) and its
// head (3x3 189 -> 189, then 1x1 189 -> 21: 3x3 189 -> 21). Used in predictions only (models/dfn.cc).
#pragma once
#include <torch/torch.h>

#include "blocks/conv2d.h"

namespace segtorch {

class ComposedConv {
 public:
  // Whether outer(inner(x)) composes as above (both segtorch convolutions of groups 1 with zero padding given as
  // numbers, the same weight type, on the same device, channels that chain).
  static bool Composable(const Conv2dImpl& outer, const Conv2dImpl& inner);
  // Multiply-adds per output pixel of the composed convolution.
  static int64_t MacsPerPixel(const Conv2dImpl& outer, const Conv2dImpl& inner);
  // The composed convolution (Composable must hold), made again whenever a weight or bias of either changed (or after
  // Drop); `bias`: false leaves its bias out. Prepacked where `like` (the convolution it stands for) is. Not a
  // registered module: never saved, trained or copied.
  Conv2dImpl& Get(const Conv2dImpl& outer, const Conv2dImpl& inner, const Conv2dImpl& like, bool bias = true);
  // Forgets the composed convolution (PrepackConvolutions, through the owner's KeepsWeightCopies).
  void Drop();

 private:
  Conv2d conv_{nullptr};
  bool bias_ = true;
  bool prepacked_ = false;
  // outer's weight and bias, inner's weight and bias
  WeightStamp stamps_[4];
};

// Whether a prediction may use composed convolutions for x: inference mode (predict's inference copies), not tracing,
// not inside an AsTracedScope (an export's graph check), on the CPU (where it was measured). SEGTORCH_COMPOSE=0: never
// (measurements).
bool ComposeApplies(const torch::Tensor& x);

}  // namespace segtorch
