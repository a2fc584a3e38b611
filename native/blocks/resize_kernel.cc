#include "blocks/resize_kernel.h"

#include "base/bf16_bits.h"

namespace segtorch {

namespace {

inline float Load(float v) { return v; }
inline float Load(uint16_t b) { return BFloat16BitsToFloat(b); }
inline void Store(float f, float* out) { *out = f; }
inline void Store(float f, uint16_t* out) { *out = FloatToBFloat16Bits(f); }

template <bool kAccumulate, typename T>
inline void Row(const T* __restrict r0, const T* __restrict r1, float h0, float h1, const ResizeRow& row, T* __restrict out) {
  const int64_t c = row.c;
  for (int64_t j = 0; j < row.ow; ++j) {
    const float w00 = h0 * row.l0[j], w01 = h0 * row.l1[j], w10 = h1 * row.l0[j], w11 = h1 * row.l1[j];
    const T* a = r0 + row.x0[j];
    const T* b = r0 + row.x1[j];
    const T* d = r1 + row.x0[j];
    const T* e = r1 + row.x1[j];
    T* o = out + j * row.out_stride;
    for (int64_t k = 0; k < c; ++k) {
      float v = w00 * Load(a[k]) + w01 * Load(b[k]) + w10 * Load(d[k]) + w11 * Load(e[k]);
      if (kAccumulate) v += Load(o[k]);
      Store(v, o + k);
    }
  }
}

}  // namespace

#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && !defined(__clang__)
__attribute__((target_clones("avx512f", "avx2", "default"), flatten))
#endif
void ResizeRowFloat(const float* r0, const float* r1, float h0, float h1, const ResizeRow& row, float* out, bool accumulate) {
  if (accumulate) {
    Row<true>(r0, r1, h0, h1, row, out);
  } else {
    Row<false>(r0, r1, h0, h1, row, out);
  }
}

#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && !defined(__clang__)
__attribute__((target_clones("arch=x86-64-v4", "avx2", "default"), flatten))
#endif
void ResizeRowBFloat16(const uint16_t* r0, const uint16_t* r1, float h0, float h1, const ResizeRow& row, uint16_t* out, bool accumulate) {
  if (accumulate) {
    Row<true>(r0, r1, h0, h1, row, out);
  } else {
    Row<false>(r0, r1, h0, h1, row, out);
  }
}

}  // namespace segtorch
