// bfloat16 ReLU on its 16 bits (plain C++, no libtorch header): every negative number, -0 and -inf
// included, becomes +0; NaNs (of either sign) and non-negative values are kept. Compiled for AVX-512,
// AVX2 and baseline x86-64, chosen at load time (GCC's target_clones, as blocks/batch_norm_kernel.cc):
// at copy speed, where ATen's bf16 relu widens to float and back (0.55 against 0.32 ms for
// 256 x 128 x 128 on 2 threads, AMX VM; bench/README.md).
#pragma once
#include <cstdint>

namespace segtorch {

// y[i] = relu(x[i]) for i in [0, n); x and y do not overlap.
void ReluBFloat16(const uint16_t* x, uint16_t* y, int64_t n);
// x[i] = relu(x[i]) for i in [0, n).
void ReluBFloat16InPlace(uint16_t* x, int64_t n);

}  // namespace segtorch
