#include "blocks/max_pool_kernel.h"

#include <cstring>
#include <limits>

namespace segtorch {

namespace {

inline float Load(float v) { return v; }
inline float Load(uint16_t v) {
  uint32_t bits = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}
inline void Store(float v, float* out) { *out = v; }
inline void Store(float v, uint16_t* out) {
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  *out = static_cast<uint16_t>(bits >> 16);  // v is a widened bfloat16: no rounding to do
}
// ATen's rule: a NaN wins over anything, and stays.
inline float Max(float m, float v) { return (v > m || v != v) ? v : m; }

// Separable: the maximum over the window's rows for every input column first, into a scratch row
// padded with -infinity by pw columns on each side, then over the window's columns for every output
// (kh x W + kw x OW values instead of kh x kw x OW); no bounds inside the loops, so that they
// vectorise over the row (with c interleaved channels a row is W x c values, and the window's
// columns are c values apart).
template <class T>
inline void Row(const T* __restrict in, T* __restrict out, float* __restrict scratch, int64_t row, const MaxPoolShape& s) {
  const int64_t c = s.c;
  int64_t h0 = row * s.sh - s.ph;
  int64_t h1 = h0 + s.kh;
  if (h0 < 0) h0 = 0;
  if (h1 > s.h) h1 = s.h;
  const float inf = std::numeric_limits<float>::infinity();
  const int64_t wc = s.w * c;
  const int64_t padded = (s.w + 2 * s.pw) * c;
  float* cols = scratch + s.pw * c;
  for (int64_t i = 0; i < s.pw * c; ++i) scratch[i] = -inf;
  for (int64_t i = (s.pw + s.w) * c; i < padded; ++i) scratch[i] = -inf;
  const T* first = in + h0 * wc;
  for (int64_t i = 0; i < wc; ++i) cols[i] = Load(first[i]);
  for (int64_t r = h0 + 1; r < h1; ++r) {
    const T* src = in + r * wc;
    for (int64_t i = 0; i < wc; ++i) cols[i] = Max(cols[i], Load(src[i]));
  }
  float* acc = scratch + padded;  // OW x c
  const int64_t owc = s.ow * c;
  if (s.sw == 1) {  // the window's columns are whole shifted rows
    for (int64_t i = 0; i < owc; ++i) acc[i] = scratch[i];
    for (int64_t j = 1; j < s.kw; ++j) {
      const float* src = scratch + j * c;
      for (int64_t i = 0; i < owc; ++i) acc[i] = Max(acc[i], src[i]);
    }
  } else if (c == 1) {
    for (int64_t o = 0; o < s.ow; ++o) acc[o] = scratch[o * s.sw];
    for (int64_t j = 1; j < s.kw; ++j) {
      const float* src = scratch + j;
      for (int64_t o = 0; o < s.ow; ++o) acc[o] = Max(acc[o], src[o * s.sw]);
    }
  } else {
    for (int64_t o = 0; o < s.ow; ++o) {
      float* a = acc + o * c;
      const float* base = scratch + o * s.sw * c;
      for (int64_t ch = 0; ch < c; ++ch) a[ch] = base[ch];
      for (int64_t j = 1; j < s.kw; ++j) {
        const float* src = base + j * c;
        for (int64_t ch = 0; ch < c; ++ch) a[ch] = Max(a[ch], src[ch]);
      }
    }
  }
  for (int64_t i = 0; i < owc; ++i) Store(acc[i], out + i);
}

}  // namespace

#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && !defined(__clang__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
void MaxPoolRowFloat(const float* in, float* out, float* scratch, int64_t row, const MaxPoolShape& s) {
  Row(in, out, scratch, row, s);
}

#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && !defined(__clang__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
void MaxPoolRowBFloat16(const uint16_t* in, uint16_t* out, float* scratch, int64_t row, const MaxPoolShape& s) {
  Row(in, out, scratch, row, s);
}

}  // namespace segtorch
