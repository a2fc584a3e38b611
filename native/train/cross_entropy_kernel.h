// The loops of train/losses.cc's fused softmax cross-entropy, on plain arrays (no libtorch header):
// [N, C, H, W] float32 or bfloat16 logits (their 16 bits), channels-last (each pixel's C scores
// contiguous) or NCHW, read as they come from the network, without the float32 copy, the contiguous
// copy for log_softmax and the separate NLL passes of F::cross_entropy. Channels-last blocks of 64
// pixels are transposed to class-major floats for the forward's per-pixel reductions (the backward
// writes its gradient in place, pixel terms read through an index). Compiled for AVX-512, AVX2 and
// baseline x86-64, chosen at load time (GCC's target_clones, as blocks/batch_norm_kernel.cc).
// Everything is computed in float; each gradient element is rounded once to the logits' type.
//
// With z the logits of one pixel, y its label, w the class weights (all 1 without), W = sum of w,
// e the label smoothing and lse = log sum exp z, PyTorch's sum-reduced cross_entropy is
//   loss = (1 - e) w_y (lse - z_y) + e / C (W lse - sum_j w_j z_j)
// and its gradient dloss / dz_j = ((1 - e) w_y + e W / C) p_j - e w_j / C - [j = y] (1 - e) w_y,
// p = softmax(z); pixels whose label is the ignore index add 0 and get a zero gradient.
#pragma once
#include <cstdint>

namespace segtorch {

struct CrossEntropyShape {
  int64_t classes{};      // C
  int64_t pixels{};       // H x W
  bool channels_last{};   // element (n, j, p) at (n P + p) C + j; else (n C + j) P + p
};

struct CrossEntropyTerms {
  const int64_t* labels{};     // [N, H, W], contiguous
  int64_t ignore_index{};
  const float* weights{};      // [C] or null (all 1)
  float weight_sum{};          // W (C without weights)
  float smoothing{};           // e, in [0, 1]
};

// Pixels [begin, end) of the N x H x W flattened: returns the sum of their losses (in double, pixel
// by pixel); writes lse for each pixel (NaN where a score is NaN, or lse is undefined: +inf and -inf
// everywhere); sets *bad_label to the first label outside [0, C) that is not the ignore index (and
// adds nothing for that pixel), leaving it unchanged where there is none.
double CrossEntropyForwardPixels(const float* z, const CrossEntropyShape& s, const CrossEntropyTerms& t, float* lse,
                                 int64_t begin, int64_t end, int64_t* bad_label);
double CrossEntropyForwardPixels(const uint16_t* z, const CrossEntropyShape& s, const CrossEntropyTerms& t, float* lse,
                                 int64_t begin, int64_t end, int64_t* bad_label);

// The gradient of `scale` x the summed loss for pixels [begin, end), written into dz (the logits'
// layout); lse from the forward pass.
void CrossEntropyBackwardPixels(const float* z, const CrossEntropyShape& s, const CrossEntropyTerms& t, const float* lse,
                                float scale, float* dz, int64_t begin, int64_t end);
void CrossEntropyBackwardPixels(const uint16_t* z, const CrossEntropyShape& s, const CrossEntropyTerms& t, const float* lse,
                                float scale, uint16_t* dz, int64_t begin, int64_t end);

}  // namespace segtorch
