// A dilated "same" convolution computed as an undilated one over the d x d phase-subsampled input
// (space-to-batch, as TensorFlow's atrous_conv2d): exact, same weights and gradients. On the CPU,
// libtorch's dilated kernels are very slow to differentiate for large kernels (fc6 of the dilated
// VGG front end, 7x7 dilation 4, 512 -> 4096: about 90 s for the weight gradient of a 2 x 8 x 8
// map on two cores, against a few seconds this way).
#pragma once
#include <ATen/ATen.h>

namespace segtorch {

// The same as at::conv2d(x, weight, bias, stride 1, padding d * (k - 1) / 2, dilation d) for a
// square odd kernel k (weight [out, in, k, k]): the output has the input's size. Any input size.
at::Tensor ConvSpaceToBatch(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, int64_t dilation);

}  // namespace segtorch
