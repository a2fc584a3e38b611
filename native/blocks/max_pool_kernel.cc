#include "blocks/max_pool_kernel.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "base/bf16_bits.h"

namespace segtorch {

namespace {

inline float Load(float v) { return v; }
inline float Load(uint16_t v) { return BFloat16BitsToFloat(v); }
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

// Stride-1 "same" pooling (kh = kw = k = 2 p + 1, ph = pw = p) of channels-last images on the values'
// bits as ordered integers: a float's bits I (sign and magnitude) map to the signed integer
// I ^ ((I >> (bits - 1)) & MaxPos), which orders as the floats do (-0 just below +0), so that the maxima
// are integer maxima the compiler vectorises without a NaN test in every one; NaN (exponent all ones,
// mantissa not 0) maps to the largest key MaxPos, so that it wins as ATen's max_pool2d makes it win,
// and comes out as the NaN of bits MaxPos.
template <class I>
struct Keys {
  static constexpr int kBits = 8 * sizeof(I);
  static constexpr I kMaxPos = std::numeric_limits<I>::max();                  // 0x7fff / 0x7fffffff
  static constexpr I kInf = sizeof(I) == 2 ? I(0x7f80) : I(0x7f800000);        // +infinity's bits
  static constexpr I kLowest = std::numeric_limits<I>::min();                   // below every key
  static I Key(I v) {  // without a branch, so that loops over several rows still vectorise
    const I k = static_cast<I>(v ^ ((v >> (kBits - 1)) & kMaxPos));
    const I nan = static_cast<I>(-static_cast<I>(static_cast<I>(v & kMaxPos) > kInf));  // all ones for NaN
    return static_cast<I>((k & ~nan) | (kMaxPos & nan));
  }
  static I Bits(I k) { return static_cast<I>(k ^ ((k >> (kBits - 1)) & kMaxPos)); }  // Key's inverse off NaN
};

// Output rows [r0, r1) of one image. Each input row the window reaches is turned into keys once, into
// a ring of k key rows (input row r in slot r % k); an output row is the maximum of its window's key
// rows into a row padded by p columns of the smallest key on each side (which stand for the padding),
// then, for every output, the maximum of that row's k columns around it, turned back into bits.
template <class I>
inline void SameRowsChannelsLast(const I* __restrict in, I* __restrict out, I* __restrict scratch, int64_t r0, int64_t r1,
                                 const MaxPoolShape& s) {
  using K = Keys<I>;
  const int64_t c = s.c, w = s.w, k = s.kw, p = s.pw, wc = w * c;
  I* __restrict keys = scratch;             // k rows of W x c keys
  I* __restrict vmax = scratch + k * wc;    // (W + 2p) x c
  for (int64_t i = 0; i < p * c; ++i) vmax[i] = vmax[(p + w) * c + i] = K::kLowest;
  I* __restrict vrow = vmax + p * c;
  int64_t next = r0 - p < 0 ? 0 : r0 - p;  // the next input row to turn into keys
  for (int64_t y = r0; y < r1; ++y) {
    const int64_t h0 = y - p < 0 ? 0 : y - p;
    const int64_t h1 = y + p + 1 > s.h ? s.h : y + p + 1;
    for (; next < h1; ++next) {
      const I* src = in + next * wc;
      I* dst = keys + (next % k) * wc;
      for (int64_t i = 0; i < wc; ++i) dst[i] = K::Key(src[i]);
    }
    if (h1 - h0 == 5) {  // RefineNet's 5 x 5 away from the top and bottom: one loop
      const I *a = keys + (h0 % k) * wc, *b = keys + ((h0 + 1) % k) * wc, *d = keys + ((h0 + 2) % k) * wc,
              *e = keys + ((h0 + 3) % k) * wc, *f = keys + ((h0 + 4) % k) * wc;
      for (int64_t i = 0; i < wc; ++i) vrow[i] = std::max(std::max(std::max(a[i], b[i]), std::max(d[i], e[i])), f[i]);
    } else {
      const I* first = keys + (h0 % k) * wc;
      for (int64_t i = 0; i < wc; ++i) vrow[i] = first[i];
      for (int64_t r = h0 + 1; r < h1; ++r) {
        const I* src = keys + (r % k) * wc;
        for (int64_t i = 0; i < wc; ++i) vrow[i] = std::max(vrow[i], src[i]);
      }
    }
    I* __restrict o = out + y * wc;
    if (k == 5) {
      const I *a = vmax, *b = vmax + c, *d = vmax + 2 * c, *e = vmax + 3 * c, *f = vmax + 4 * c;
      for (int64_t i = 0; i < wc; ++i) o[i] = K::Bits(std::max(std::max(std::max(a[i], b[i]), std::max(d[i], e[i])), f[i]));
    } else {
      for (int64_t i = 0; i < wc; ++i) {
        I m = vmax[i];
        for (int64_t j = 1; j < k; ++j) m = std::max(m, vmax[j * c + i]);
        o[i] = K::Bits(m);
      }
    }
  }
}

}  // namespace

#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && !defined(__clang__)
__attribute__((target_clones("avx512f", "avx2", "default"), flatten))
#endif
void MaxPoolRowFloat(const float* in, float* out, float* scratch, int64_t row, const MaxPoolShape& s) {
  Row(in, out, scratch, row, s);
}

#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && !defined(__clang__)
__attribute__((target_clones("avx512f", "avx2", "default"), flatten))
#endif
void MaxPoolRowBFloat16(const uint16_t* in, uint16_t* out, float* scratch, int64_t row, const MaxPoolShape& s) {
  Row(in, out, scratch, row, s);
}

#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && !defined(__clang__)
__attribute__((target_clones("arch=x86-64-v4", "avx2", "default"), flatten))
#endif
void MaxPoolSameRowsChannelsLastFloat(const float* in, float* out, int32_t* scratch, int64_t r0, int64_t r1, const MaxPoolShape& s) {
  SameRowsChannelsLast(reinterpret_cast<const int32_t*>(in), reinterpret_cast<int32_t*>(out), scratch, r0, r1, s);
}

#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && !defined(__clang__)
__attribute__((target_clones("arch=x86-64-v4", "avx2", "default"), flatten))
#endif
void MaxPoolSameRowsChannelsLastBFloat16(const uint16_t* in, uint16_t* out, int32_t* scratch, int64_t r0, int64_t r1, const MaxPoolShape& s) {
  SameRowsChannelsLast(reinterpret_cast<const int16_t*>(in), reinterpret_cast<int16_t*>(out), reinterpret_cast<int16_t*>(scratch), r0, r1, s);
}

}  // namespace segtorch
