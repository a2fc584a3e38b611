// Transposed convolutions whose kernel equals their stride (U-Net's 2x2, stride 2: the output
// windows do not overlap), computed as a 1x1 convolution to out*s*s channels followed by
// pixel_shuffle(s). Same function, same parameters and state dict (the module stays a
// ConvTranspose2d), but the work runs on the oneDNN convolution: libtorch 1.13's CPU
// conv_transpose2d is the reference slow_conv_transpose2d (GEMM on the reference BLAS, fp32 even
// under autocast, output NCHW), 10-40x slower than this on the U-Net shapes (bench/README.md).
// Under autocast the 1x1 convolution runs in bf16/fp16, and channels-last input stays channels-last.
#pragma once
#include <ATen/ATen.h>

namespace segtorch {

// conv_transpose2d(x, weight, bias, stride=s) for weight [in, out, s, s] (kernel = stride, no
// padding, output padding, dilation or groups: the caller builds the module that way).
inline at::Tensor ConvTransposeKernelIsStride(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  const int64_t s = weight.size(2);
  TORCH_CHECK(weight.dim() == 4 && weight.size(3) == s, "expected a square transposed-convolution kernel");
  // weight [in, out, s, s] -> [out * s * s, in, 1, 1]: output channel o*s*s + a*s + b of the 1x1
  // convolution is what pixel_shuffle places at (s*i + a, s*j + b) of channel o.
  at::Tensor v = weight.permute({1, 2, 3, 0}).reshape({weight.size(1) * s * s, weight.size(0), 1, 1});
  at::Tensor b = bias.defined() ? bias.repeat_interleave(s * s) : at::Tensor();
  return at::pixel_shuffle(at::conv2d(x, v, b), s);
}

}  // namespace segtorch
