#include "train/cross_entropy_kernel.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "base/bf16_bits.h"

namespace segtorch {

namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();
// NCHW: pixels per block, each block's per-pixel state in arrays the inner loops run along.
constexpr int64_t kBlock = 64;

// exp(x) for x <= 0 (a little above 0 too), Cephes' expf (about 1 ulp): the range reduced by ln 2
// in two parts, a degree-6 polynomial, the power of 2 put into the exponent bits; plain arithmetic, so
// that the loops vectorise. Below -87 (and for NaN, which the callers track themselves) it gives
// exp(-87) = 1.6e-38: beside a sum of at least 1, as 0.
inline float ExpNonPositive(float x) {
  x = x > -87.0f ? x : -87.0f;
  const float n = std::floor(x * 1.44269504088896341f + 0.5f);
  const float r = x - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  const uint32_t bits = static_cast<uint32_t>(static_cast<int32_t>(n) + 127) << 23;
  float two_n;
  std::memcpy(&two_n, &bits, sizeof two_n);
  return p * two_n;
}

// A float's bits as an int32 whose order is the floats' (negative ones' magnitude bits flipped), and back:
// a maximum over channels as an integer reduction, which vectorises where a float one (with NaNs
// honoured) does not. NaNs are tracked separately.
inline int32_t OrderKey(float v) {
  int32_t i;
  std::memcpy(&i, &v, sizeof i);
  return i ^ ((i >> 31) & 0x7FFFFFFF);
}
inline float FromOrderKey(int32_t k) {
  const int32_t i = k ^ ((k >> 31) & 0x7FFFFFFF);
  float v;
  std::memcpy(&v, &i, sizeof v);
  return v;
}

inline float WeightOf(const CrossEntropyTerms& t, int64_t j) { return t.weights ? t.weights[j] : 1.0f; }

// lse from a pixel's maximum m, its sum of exp(z - m) and whether a score was NaN: NaN where PyTorch's
// log_softmax gives NaN (a NaN score, a +inf one, or every score -inf).
inline float Lse(float m, float s, bool nan) { return nan || !(m > -kInf && m < kInf) ? kNaN : m + std::log(s); }

// The pixel's label takes part: not the ignore index and in [0, C).
inline bool Counts(const CrossEntropyTerms& t, int64_t c, int64_t y) { return y != t.ignore_index && y >= 0 && y < c; }

// Counts (else the pixel adds nothing), noting the first label that is neither counted nor ignored.
inline bool Valid(const CrossEntropyTerms& t, int64_t c, int64_t y, int64_t* bad_label, bool* seen_bad) {
  if (Counts(t, c, y)) return true;
  if (y != t.ignore_index) {
    if (!*seen_bad) {
      *bad_label = y;
      *seen_bad = true;
    }
  }
  return false;
}

template <class T>
double ForwardChannelsLast(const T* __restrict z, const CrossEntropyShape& s, const CrossEntropyTerms& t, float* __restrict lse,
                           int64_t begin, int64_t end, int64_t* bad_label) {
  const int64_t c = s.classes;
  const float inv_c = 1.0f / static_cast<float>(c);
  double total = 0.0;
  bool seen_bad = false;
  for (int64_t i = begin; i < end; ++i) {
    const T* __restrict row = z + i * c;
    int32_t mk = OrderKey(-kInf);
    int nan = 0;
    for (int64_t j = 0; j < c; ++j) {
      const float v = LoadFloat(row[j]);
      const int32_t k = OrderKey(v);
      mk = k > mk ? k : mk;
      nan |= v != v;
    }
    const float m = FromOrderKey(mk);
    float sum = 0.0f;
    for (int64_t j = 0; j < c; ++j) sum += ExpNonPositive(LoadFloat(row[j]) - m);
    const float l = Lse(m, sum, nan != 0);
    lse[i] = l;
    const int64_t y = t.labels[i];
    if (!Valid(t, c, y, bad_label, &seen_bad)) continue;
    const float wy = WeightOf(t, y);
    float loss = (1.0f - t.smoothing) * wy * (l - LoadFloat(row[y]));
    if (t.smoothing > 0.0f) {
      float zw = 0.0f;
      if (t.weights) {
        for (int64_t j = 0; j < c; ++j) zw += t.weights[j] * LoadFloat(row[j]);
      } else {
        for (int64_t j = 0; j < c; ++j) zw += LoadFloat(row[j]);
      }
      loss += t.smoothing * inv_c * (t.weight_sum * l - zw);
    }
    total += loss;
  }
  return total;
}

template <class T>
void BackwardChannelsLast(const T* __restrict z, const CrossEntropyShape& s, const CrossEntropyTerms& t, const float* __restrict lse,
                          float scale, T* __restrict dz, int64_t begin, int64_t end) {
  const int64_t c = s.classes;
  const float e_c = t.smoothing / static_cast<float>(c);
  for (int64_t i = begin; i < end; ++i) {
    const T* __restrict row = z + i * c;
    T* __restrict drow = dz + i * c;
    const int64_t y = t.labels[i];
    if (!Counts(t, c, y)) {
      for (int64_t j = 0; j < c; ++j) StoreFloat(0.0f, drow + j);
      continue;
    }
    const float wy = WeightOf(t, y);
    const float l = lse[i];
    // a p_j - b w_j, and the target's extra - cy; a NaN where lse is NaN makes every element NaN.
    const float a = l == l ? scale * ((1.0f - t.smoothing) * wy + e_c * t.weight_sum) : kNaN;
    const float b = scale * e_c;
    const float cy = scale * (1.0f - t.smoothing) * wy;
    if (t.weights) {
      for (int64_t j = 0; j < c; ++j) StoreFloat(a * ExpNonPositive(LoadFloat(row[j]) - l) - b * t.weights[j], drow + j);
    } else {
      for (int64_t j = 0; j < c; ++j) StoreFloat(a * ExpNonPositive(LoadFloat(row[j]) - l) - b, drow + j);
    }
    StoreFloat(a * ExpNonPositive(LoadFloat(row[y]) - l) - b * wy - cy, drow + y);  // rounded once
  }
}

// NCHW: one image's pixels [p0, p1), in blocks; loops over classes outside, over the block's pixels inside.
template <class T>
double ForwardNchwImage(const T* __restrict zi, const int64_t* __restrict yi, const CrossEntropyShape& s, const CrossEntropyTerms& t,
                        float* __restrict lsei, int64_t p0, int64_t p1, int64_t* bad_label, bool* seen_bad) {
  const int64_t c = s.classes, P = s.pixels;
  const float inv_c = 1.0f / static_cast<float>(c);
  double total = 0.0;
  float m[kBlock], sum[kBlock], zw[kBlock];
  int nan[kBlock];
  for (int64_t q0 = p0; q0 < p1; q0 += kBlock) {
    const int64_t n = std::min<int64_t>(kBlock, p1 - q0);
    for (int64_t q = 0; q < n; ++q) {
      m[q] = -kInf;
      sum[q] = 0.0f;
      zw[q] = 0.0f;
      nan[q] = 0;
    }
    for (int64_t j = 0; j < c; ++j) {
      const T* __restrict row = zi + j * P + q0;
      for (int64_t q = 0; q < n; ++q) {
        const float v = LoadFloat(row[q]);
        m[q] = v > m[q] ? v : m[q];
        nan[q] |= v != v;
      }
    }
    const bool smooth = t.smoothing > 0.0f;
    for (int64_t j = 0; j < c; ++j) {
      const T* __restrict row = zi + j * P + q0;
      const float wj = WeightOf(t, j);
      for (int64_t q = 0; q < n; ++q) {
        const float v = LoadFloat(row[q]);
        sum[q] += ExpNonPositive(v - m[q]);
        if (smooth) zw[q] += wj * v;
      }
    }
    for (int64_t q = 0; q < n; ++q) {
      const float l = Lse(m[q], sum[q], nan[q] != 0);
      lsei[q0 + q] = l;
      const int64_t y = yi[q0 + q];
      if (!Valid(t, c, y, bad_label, seen_bad)) continue;
      const float wy = WeightOf(t, y);
      float loss = (1.0f - t.smoothing) * wy * (l - LoadFloat(zi[y * P + q0 + q]));
      if (smooth) loss += t.smoothing * inv_c * (t.weight_sum * l - zw[q]);
      total += loss;
    }
  }
  return total;
}

template <class T>
void BackwardNchwImage(const T* __restrict zi, const int64_t* __restrict yi, const CrossEntropyShape& s, const CrossEntropyTerms& t,
                       const float* __restrict lsei, float scale, T* __restrict dzi, int64_t p0, int64_t p1) {
  const int64_t c = s.classes, P = s.pixels;
  const float e_c = t.smoothing / static_cast<float>(c);
  float a[kBlock], b[kBlock], l[kBlock];
  for (int64_t q0 = p0; q0 < p1; q0 += kBlock) {
    const int64_t n = std::min<int64_t>(kBlock, p1 - q0);
    for (int64_t q = 0; q < n; ++q) {
      const int64_t y = yi[q0 + q];
      const float lq = lsei[q0 + q];
      l[q] = lq;
      if (!Counts(t, c, y)) {
        a[q] = 0.0f;  // exp of anything here is finite: a zero gradient
        b[q] = 0.0f;
      } else {
        a[q] = lq == lq ? scale * ((1.0f - t.smoothing) * WeightOf(t, y) + e_c * t.weight_sum) : kNaN;
        b[q] = scale * e_c;
      }
    }
    for (int64_t j = 0; j < c; ++j) {
      const T* __restrict row = zi + j * P + q0;
      T* __restrict drow = dzi + j * P + q0;
      const float wj = WeightOf(t, j);
      for (int64_t q = 0; q < n; ++q) StoreFloat(a[q] * ExpNonPositive(LoadFloat(row[q]) - l[q]) - b[q] * wj, drow + q);
    }
    for (int64_t q = 0; q < n; ++q) {  // the target's element, rounded once
      const int64_t y = yi[q0 + q];
      if (!Counts(t, c, y)) continue;
      const float wy = WeightOf(t, y);
      const int64_t o = y * P + q0 + q;
      StoreFloat(a[q] * ExpNonPositive(LoadFloat(zi[o]) - l[q]) - b[q] * wy - scale * (1.0f - t.smoothing) * wy, dzi + o);
    }
  }
}

template <class T>
double Forward(const T* z, const CrossEntropyShape& s, const CrossEntropyTerms& t, float* lse, int64_t begin, int64_t end,
               int64_t* bad_label) {
  if (s.channels_last) return ForwardChannelsLast(z, s, t, lse, begin, end, bad_label);
  double total = 0.0;
  bool seen_bad = false;
  for (int64_t i = begin; i < end;) {
    const int64_t img = i / s.pixels, p0 = i - img * s.pixels, p1 = std::min(s.pixels, p0 + (end - i));
    total += ForwardNchwImage(z + img * s.classes * s.pixels, t.labels + img * s.pixels, s, t, lse + img * s.pixels, p0, p1, bad_label,
                              &seen_bad);
    i += p1 - p0;
  }
  return total;
}

template <class T>
void Backward(const T* z, const CrossEntropyShape& s, const CrossEntropyTerms& t, const float* lse, float scale, T* dz, int64_t begin,
              int64_t end) {
  if (s.channels_last) return BackwardChannelsLast(z, s, t, lse, scale, dz, begin, end);
  for (int64_t i = begin; i < end;) {
    const int64_t img = i / s.pixels, p0 = i - img * s.pixels, p1 = std::min(s.pixels, p0 + (end - i));
    const int64_t o = img * s.classes * s.pixels;
    BackwardNchwImage(z + o, t.labels + img * s.pixels, s, t, lse + img * s.pixels, scale, dz + o, p0, p1);
    i += p1 - p0;
  }
}

}  // namespace

// float: AVX-512F suffices; bfloat16: x86-64-v4 (AVX-512BW) for the 16-bit lanes. `flatten`: every
// loop inlined into each clone, compiled for its instruction set (blocks/batch_norm_kernel.cc).
#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && !defined(__clang__)
#define SEGTORCH_CE_CLONES_F32 __attribute__((target_clones("avx512f", "avx2", "default"), flatten))
#define SEGTORCH_CE_CLONES_BF16 __attribute__((target_clones("arch=x86-64-v4", "avx2", "default"), flatten))
#else
#define SEGTORCH_CE_CLONES_F32
#define SEGTORCH_CE_CLONES_BF16
#endif

SEGTORCH_CE_CLONES_F32
double CrossEntropyForwardPixels(const float* z, const CrossEntropyShape& s, const CrossEntropyTerms& t, float* lse, int64_t begin,
                                 int64_t end, int64_t* bad_label) {
  return Forward(z, s, t, lse, begin, end, bad_label);
}

SEGTORCH_CE_CLONES_BF16
double CrossEntropyForwardPixels(const uint16_t* z, const CrossEntropyShape& s, const CrossEntropyTerms& t, float* lse, int64_t begin,
                                 int64_t end, int64_t* bad_label) {
  return Forward(z, s, t, lse, begin, end, bad_label);
}

SEGTORCH_CE_CLONES_F32
void CrossEntropyBackwardPixels(const float* z, const CrossEntropyShape& s, const CrossEntropyTerms& t, const float* lse, float scale,
                                float* dz, int64_t begin, int64_t end) {
  Backward(z, s, t, lse, scale, dz, begin, end);
}

SEGTORCH_CE_CLONES_BF16
void CrossEntropyBackwardPixels(const uint16_t* z, const CrossEntropyShape& s, const CrossEntropyTerms& t, const float* lse, float scale,
                                uint16_t* dz, int64_t begin, int64_t end) {
  Backward(z, s, t, lse, scale, dz, begin, end);
}

}  // namespace segtorch
