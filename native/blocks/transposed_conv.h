// A ConvTranspose2d (same options, parameters, state-dict names; `as<nn::ConvTranspose2d>()` finds
// it) whose forward runs as a convolution followed by pixel_shuffle when the kernel is a multiple of
// the stride, which covers every transposed convolution in the zoo: U-Net's 2x2 stride 2, FCN's
// 2f x 2f stride f padding f/2, GCN's 4x4 stride 2 padding 1.
//
// Why: libtorch 1.13's CPU conv_transpose2d is the reference slow_conv_transpose2d (a GEMM on the
// reference BLAS; fp32 even under autocast; NCHW output). The convolution runs on oneDNN, in
// bf16/fp16 under autocast, and keeps channels-last. 5-40x faster on the zoo's shapes
// (bench/README.md); outputs equal conv_transpose2d's to fp32 rounding (test/models/unet.test.ts,
// test/models/fcn.test.ts).
//
// The identity: with stride s, kernel k = m*s and kernel index a = q*s + r (q < m, r < s), the
// un-padded output at s*t + r is sum_q x[t - q] * W[q*s + r]: for each phase r, an m x m
// convolution (flipped kernel, padding m - 1) of x. Stacking the s*s phases as output channels
// o*s*s + r1*s + r2 is exactly what pixel_shuffle(s) interleaves; the padding p is then a crop.
#pragma once
#include <torch/nn/modules/conv.h>

namespace segtorch {

class SubpixelConvTranspose2dImpl : public torch::nn::ConvTranspose2dImpl {
 public:
  explicit SubpixelConvTranspose2dImpl(const torch::nn::ConvTranspose2dOptions& options);
  // conv_transpose2d(x, weight, bias, stride, padding); other configurations use the base forward.
  // A channels-last x gets the phases as the convolution's outer output channels ((r1 * s + r2) *
  // out + o) and one copy puts them in place (a depth-to-space of whole pixels), instead of
  // pixel_shuffle, which gathers every channel on its own (U-Net: 10 of a 240 ms prediction).
  torch::Tensor forward(const torch::Tensor& x);
  // at::cat({skip, forward(x)}, 1); in predictions with channels-last inputs (not traced), the
  // phases are copied straight into their channels of the concatenation (U-Net's expanding path).
  torch::Tensor ForwardCat(const torch::Tensor& skip, const torch::Tensor& x);

 private:
  // Whether forward takes the sub-pixel path for x; then the convolution of its s * s phases,
  // stacked as output channels o * s * s + r1 * s + r2 (phases_last: (r1 * s + r2) * out + o).
  bool Subpixel(const torch::Tensor& x) const;
  torch::Tensor PhaseConv(const torch::Tensor& x, bool phases_last);

  int64_t stride_ = 1, padding_ = 0;
  bool subpixel_ = false;
};
TORCH_MODULE(SubpixelConvTranspose2d);

}  // namespace segtorch
