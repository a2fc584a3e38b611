// Training depthwise convolutions (one channel per group) by segtorch's own loops (blocks/depthwise_kernel.h):
// forward, input gradient and weight gradient, channels-last, float32 or bfloat16 maps, float sums, the weight
// read in float32. oneDNN's bf16 depthwise backward on a CPU with AMX (PyPI torch 2.15) ran 7-30x slower than its
// float32 one wherever the stride is 2, the kernel 5x5 or the dilation 2: 150 ms of LR-ASPP's 350 ms training
// step went to eight such layers (bench/README.md, "Depthwise convolutions").
#pragma once
#include <torch/torch.h>

namespace segtorch {

struct DepthwiseParams {
  int64_t sh, sw, ph, pw, dh, dw;  // stride, zero padding, dilation
};

// Whether DepthwiseConvolution takes these: a 4-D CPU input of C channels in float32 or bfloat16, a float32
// weight [C, 1, KH, KW], a float32 bias [C] or none, and an output at least one pixel high and wide.
bool DepthwiseTakes(const torch::Tensor& input, const torch::Tensor& weight, const torch::Tensor& bias, const DepthwiseParams& p);

// The depthwise convolution of `input` (float32 or bfloat16: the output's type) with a float32 weight and bias
// (undefined: none), recorded for autograd: the input's gradient in its type, the weight's and the bias's in
// float32. The output is channels-last.
torch::Tensor DepthwiseConvolution(const torch::Tensor& input, const torch::Tensor& weight, const torch::Tensor& bias,
                                   const DepthwiseParams& p);

}  // namespace segtorch
