// Adaptive average pooling of one map to several bin counts in one pass over it (PSPNet's and UPerNet's pyramid
// pooling: 1, 2, 3 and 6 bins): the map's pixels are summed over the cells that all the bins' windows cut it into
// (blocks/pool_bins_kernel.h), then each bin is the mean of its cells. ATen's adaptive_avg_pool2d reads the map once
// per bin count, and for bf16 channels-last maps twice for the 1 x 1 mean (PSPNet-ResNet101 at 512 x 512: 12-16 ms of
// a 285 ms prediction on 2048-channel 64 x 64 maps, on the AMX Xeon).
#pragma once
#include <torch/torch.h>

#include <vector>

namespace segtorch {

// Whether AdaptiveAvgPoolBins takes x: no gradients, not traced, outside an AsTracedScope, a 4-D CPU map in float32 or bfloat16, contiguous
// channels-last or NCHW
// (SEGTORCH_POOL_BINS=0: never, for measurements).
bool PoolBinsApply(const torch::Tensor& x);

// adaptive_avg_pool2d(x, b) for each b of `bins`, in x's type and layout (sums in float32, one rounding); x as
// PoolBinsApply takes it.
std::vector<torch::Tensor> AdaptiveAvgPoolBins(const torch::Tensor& x, const std::vector<int64_t>& bins);

// adaptive_avg_pool2d(x, bins) by AdaptiveAvgPoolBins where PoolBinsApply takes x, else ATen's (DeepLab v3's image
// pooling, DFN's and LR-ASPP's global poolings through ForwardSequential: ATen's bf16 1 x 1 mean reads the map twice).
torch::Tensor AdaptiveAvgPool(const torch::Tensor& x, int64_t bins);

}  // namespace segtorch
