#include "infer/labels_kernel.h"

namespace segtorch {

namespace {

template <bool kOneRow>
inline void Row(const float* r0, const float* r1, float l0, float l1, int64_t K, int64_t W, float* best, int32_t* label) {
  for (int64_t x = 0; x < W; ++x) {
    best[x] = kOneRow ? r0[x] : l0 * r0[x] + l1 * r1[x];
    label[x] = 0;
  }
  for (int64_t k = 1; k < K; ++k) {
    const float* a0 = r0 + k * W;
    const float* a1 = r1 + k * W;
    const int32_t kk = static_cast<int32_t>(k);
    for (int64_t x = 0; x < W; ++x) {
      const float v = kOneRow ? a0[x] : l0 * a0[x] + l1 * a1[x];
      const float b = best[x];
      // Taken when larger, or a NaN, unless a NaN is already held (b == b is false for NaN).
      const bool take = b == b && !(v <= b);
      best[x] = take ? v : b;
      label[x] = take ? kk : label[x];
    }
  }
}

}  // namespace

#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && !defined(__clang__)
__attribute__((target_clones("avx512f", "avx2", "default"), flatten))
#endif
void ArgmaxRow(const float* r0, const float* r1, float l0, float l1, bool one_row, int64_t K, int64_t W, float* best,
               int32_t* label) {
  if (one_row) {
    Row<true>(r0, r1, l0, l1, K, W, best, label);
  } else {
    Row<false>(r0, r1, l0, l1, K, W, best, label);
  }
}

}  // namespace segtorch
