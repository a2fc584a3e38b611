// 2-D max pooling for the networks' forward passes: ATen's max_pool2d, except in inference (no
// gradient can be asked for, nothing records a trace) on contiguous (NCHW) float32 and bfloat16 CPU
// tensors, where a separable kernel (blocks/max_pool_kernel.h) gives the same values, exactly (a
// maximum is one of its inputs), 3-18x faster: ATen's NCHW CPU kernel walks every window and
// records the indices a backward pass would need even when none is (bench/pool.cc; RefineNet's
// 5x5 stride-1 chained residual pooling at 1/4 resolution, 256 channels: 80-90 ms against 5-7 ms).
// Channels-last tensors (predict's default layout) keep ATen's vectorised kernel, which the same
// separable scheme did not beat on an AVX-512 CPU, except "same" pooling with stride 1 (odd kernel,
// padding (kernel - 1) / 2: RefineNet's chained residual pooling, DeepLab v1's 3x3 poolings), run in
// one pass on the values' bits as ordered integers (blocks/max_pool_kernel.h; RefineNet's at 1/4, Zen 4:
// bfloat16 2.1-2.3 ms against 7.5-8 for ATen's and 3.7 for the running maxima of shifted views it
// replaces, float32 4.1-4.3 against 8.5; MTRefineNet predict 73-75 against 78-86 ms); and float32
// with other strides on CPUs without AVX-512, run by the separable kernel with the channels
// interleaved (1.6-3x ATen's on an AVX2 EPYC, where ATen's is memory-bound), as are strided
// channels-last poolings on CPUs with AMX (1.4-2.2x ATen's there, float32 and bfloat16: bench/pool.cc).
// SEGTORCH_POOL_KERNEL=0 runs ATen's everywhere.
#pragma once
#include <ATen/ATen.h>

namespace segtorch {

// max_pool2d(x, kernel, stride, padding) with square windows, dilation 1, floor mode.
at::Tensor MaxPool2d(const at::Tensor& x, int64_t kernel, int64_t stride, int64_t padding = 0);

// Whether MaxPool2d may run segtorch's kernel (SEGTORCH_POOL_KERNEL is not 0).
bool PoolKernelEnabled();

}  // namespace segtorch
