// The output size of a convolution along one dimension, as PyTorch computes it: floor((in + 2 pad - dil (k - 1) - 1)
// / stride) + 1. A result below 1 means no output (the dilated kernel is larger than the padded input); it is then
// never rounded up to 1 by the integer division.
#pragma once
#include <cstdint>

namespace segtorch {

constexpr int64_t ConvOutputSize(int64_t in, int64_t k, int64_t pad, int64_t dil, int64_t stride = 1) {
  const int64_t span = in + 2 * pad - dil * (k - 1);  // the input positions the kernel's first tap can take
  return span <= 0 ? span : (span - 1) / stride + 1;
}

static_assert(ConvOutputSize(64, 3, 12, 12) == 64 && ConvOutputSize(7, 3, 1, 1, 2) == 4 && ConvOutputSize(1, 3, 0, 1, 2) < 1,
              "ConvOutputSize follows PyTorch's formula");

}  // namespace segtorch
