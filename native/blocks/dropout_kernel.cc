#include "blocks/dropout_kernel.h"

#include "base/bf16_bits.h"

namespace segtorch {

#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && !defined(__clang__)
#define SEGTORCH_DROPOUT_CLONES __attribute__((target_clones("arch=x86-64-v4", "avx2", "default"), flatten))
#else
#define SEGTORCH_DROPOUT_CLONES
#endif

SEGTORCH_DROPOUT_CLONES
void DropoutApplyFloat(const float* in, float* out, int64_t first, int64_t n, uint64_t seed, uint64_t threshold, float scale) {
  for (int64_t i = 0; i < n; ++i) out[i] = DropoutKeeps(seed, static_cast<uint64_t>(first + i), threshold) ? in[i] * scale : 0.0f;
}

SEGTORCH_DROPOUT_CLONES
void DropoutApplyBFloat16(const uint16_t* in, uint16_t* out, int64_t first, int64_t n, uint64_t seed, uint64_t threshold, float scale) {
  for (int64_t i = 0; i < n; ++i) {
    out[i] = DropoutKeeps(seed, static_cast<uint64_t>(first + i), threshold) ? FloatToBFloat16Bits(BFloat16BitsToFloat(in[i]) * scale) : uint16_t{0};
  }
}

}  // namespace segtorch
