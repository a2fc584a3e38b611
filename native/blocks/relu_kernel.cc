#include "blocks/relu_kernel.h"

namespace segtorch {

namespace {
// Negative and not NaN: sign bit set, magnitude at most infinity's (0x7F80).
inline uint16_t Relu(uint16_t b) { return b >= 0x8000u && b <= 0xFF80u ? static_cast<uint16_t>(0) : b; }
}  // namespace

#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && !defined(__clang__)
#define SEGTORCH_RELU_CLONES __attribute__((target_clones("arch=x86-64-v4", "avx2", "default"), flatten))
#else
#define SEGTORCH_RELU_CLONES
#endif

SEGTORCH_RELU_CLONES
void ReluBFloat16(const uint16_t* __restrict x, uint16_t* __restrict y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = Relu(x[i]);
}

SEGTORCH_RELU_CLONES
void ReluBFloat16InPlace(uint16_t* __restrict x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = Relu(x[i]);
}

}  // namespace segtorch
