#include "blocks/dropout_kernel.h"

#include <cstring>

namespace segtorch {
namespace {

inline float Bf16ToFloat(uint16_t v) {
  const uint32_t bits = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// Round to nearest even, NaN kept quiet (as c10::BFloat16's round_to_nearest_even).
inline uint16_t FloatToBf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  if (f != f) return 0x7FC0;
  return static_cast<uint16_t>((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);
}

}  // namespace

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
    out[i] = DropoutKeeps(seed, static_cast<uint64_t>(first + i), threshold) ? FloatToBf16(Bf16ToFloat(in[i]) * scale) : uint16_t{0};
  }
}

}  // namespace segtorch
