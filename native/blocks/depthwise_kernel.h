// The loops of blocks/depthwise.cc's training depthwise convolution, on plain arrays (no libtorch header):
// compiled for AVX-512, AVX2 and baseline x86-64 and chosen at load time by the CPU (GCC's target_clones, as
// the other kernels). Maps are channels-last ([N, H, W, C] in memory, dense), float32 or bfloat16 (stored as
// its 16 bits, read into float, each result rounded once to nearest even); the weight is float, transposed to
// [KH KW, C] (tap-major), and every sum is made in float. One channel per group (a channel multiplier of 1).
#pragma once
#include <cstdint>

namespace segtorch {

struct DepthwiseShape {
  int64_t N, C, H, W;   // input
  int64_t OH, OW;       // output
  int64_t KH, KW;       // kernel
  int64_t sh, sw, ph, pw, dh, dw;  // stride, zero padding, dilation
};

// y rows [begin, end) of N OH (row n OH + oh): y = sum over taps of w x (+ bias; nullptr: none).
// `acc`: C floats of scratch.
void DepthwiseForwardFloat(const float* x, const float* wt, const float* bias, float* y, const DepthwiseShape& s, int64_t begin,
                           int64_t end, float* acc);
void DepthwiseForwardBFloat16(const uint16_t* x, const float* wt, const float* bias, uint16_t* y, const DepthwiseShape& s,
                              int64_t begin, int64_t end, float* acc);

// dx rows [begin, end) of N H: each input pixel gathers w dy from the output pixels whose taps reach it.
void DepthwiseInputGradFloat(const float* dy, const float* wt, float* dx, const DepthwiseShape& s, int64_t begin, int64_t end,
                             float* acc);
void DepthwiseInputGradBFloat16(const uint16_t* dy, const float* wt, uint16_t* dx, const DepthwiseShape& s, int64_t begin,
                                int64_t end, float* acc);

// Adds the weight gradient's share of output rows [begin, end) of N OH into part ([KH KW, C]: sum of dy x per tap)
// and, where part_bias is not nullptr, the bias gradient's (sum of dy) into part_bias. `g`: C floats of scratch.
void DepthwiseWeightGradFloat(const float* x, const float* dy, const DepthwiseShape& s, int64_t begin, int64_t end, float* part,
                              float* part_bias, float* g);
void DepthwiseWeightGradBFloat16(const uint16_t* x, const uint16_t* dy, const DepthwiseShape& s, int64_t begin, int64_t end,
                                 float* part, float* part_bias, float* g);

}  // namespace segtorch
