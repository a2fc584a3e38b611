// Stride-1 convolutions as a sum over the kernel's taps of matrix products, each on the rectangle of output pixels
// that its tap reaches in the input (not only its zero padding): out[rect] += in[rect shifted by the tap] x W[tap].
// Taps that reach only padding cost nothing, and no im2col is made. oneDNN 3.x's bf16 convolution on a CPU with AMX
// (PyPI torch 2.15) ran 5-30x slower than these products for dilated 3x3 convolutions with more than 1024 input
// channels (ASPP's 2048 -> 256 branches at rates 12-36: 122-283 ms against 13-23 ms on a 64 x 64 map), where a
// 1024-channel one or the same 2048 channels at dilation 1 or 2 ran at full speed (bench/README.md, "ASPP").
#pragma once
#include <torch/torch.h>

namespace segtorch {

struct TapConvParams {
  int64_t ph, pw, dh, dw;  // zero padding, dilation (the stride is 1)
};

// The kernel [K, C, kh, kw] as one [C, K] matrix per tap: [kh kw, C, K], contiguous, in `type`.
torch::Tensor TapKernel(const torch::Tensor& weight, at::ScalarType type);

// relu(conv(x) + bias + add) without gradients: x [N, C, H, W] in the taps' type (float32 or bfloat16, any layout),
// taps from TapKernel, bias [K] (undefined: none), add the output's shape (undefined: none). The sums in float32,
// rounded once to x's type at the end. Output channels-last.
torch::Tensor TapConvolution(const torch::Tensor& x, const torch::Tensor& taps, int64_t kh, int64_t kw, const TapConvParams& p,
                             const torch::Tensor& bias, const torch::Tensor& add, bool relu);

// conv(x) + bias recorded for autograd: x, weight [K, C, kh, kw] and bias [K] (undefined: none) in one type,
// float32 or bfloat16 (autocast's casts made before); the gradients in that type, the input's and the weight's
// as the same per-tap products (dx[rect shifted] += dy[rect] x W[tap]^T, dW[tap] = dy[rect]^T x in[rect shifted]).
// Output channels-last.
torch::Tensor TapConvolutionTrain(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias, const TapConvParams& p);

// Whether the convolution has an output: at least one pixel high and wide.
bool TapConvHasOutput(int64_t h, int64_t w, int64_t kh, int64_t kw, const TapConvParams& p);

}  // namespace segtorch
