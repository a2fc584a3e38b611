#include "train/cross_entropy_kernel.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "base/bf16_bits.h"

namespace segtorch {

namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();
// Pixels per block, each block's per-pixel state in arrays the inner loops run along.
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

// One block of n <= kBlock pixels whose class-j scores are at z[j * cs + q] and labels at y[q] (NCHW: the
// logits themselves, cs = H x W; channels-last: a float copy transposed, cs = kBlock): loops over classes
// outside, over the block's pixels inside, so that those vectorise whatever the class count.
template <class T>
double ForwardBlock(const T* __restrict z, int64_t cs, const int64_t* __restrict y, int64_t n, const CrossEntropyShape& s,
                    const CrossEntropyTerms& t, float* __restrict lse, int64_t* bad_label, bool* seen_bad) {
  const int64_t c = s.classes;
  const float inv_c = 1.0f / static_cast<float>(c);
  const bool smooth = t.smoothing > 0.0f;
  float m[kBlock], sum[kBlock], zw[kBlock];
  int nan[kBlock];
  for (int64_t q = 0; q < n; ++q) {
    m[q] = -kInf;
    sum[q] = 0.0f;
    zw[q] = 0.0f;
    nan[q] = 0;
  }
  for (int64_t j = 0; j < c; ++j) {
    const T* __restrict row = z + j * cs;
    for (int64_t q = 0; q < n; ++q) {
      const float v = LoadFloat(row[q]);
      m[q] = v > m[q] ? v : m[q];
      nan[q] |= v != v;
    }
  }
  for (int64_t j = 0; j < c; ++j) {
    const T* __restrict row = z + j * cs;
    const float wj = WeightOf(t, j);
    for (int64_t q = 0; q < n; ++q) {
      const float v = LoadFloat(row[q]);
      sum[q] += ExpNonPositive(v - m[q]);
      if (smooth) zw[q] += wj * v;
    }
  }
  double total = 0.0;
  for (int64_t q = 0; q < n; ++q) {
    const float l = Lse(m[q], sum[q], nan[q] != 0);
    lse[q] = l;
    if (!Valid(t, c, y[q], bad_label, seen_bad)) continue;
    const float wy = WeightOf(t, y[q]);
    float loss = (1.0f - t.smoothing) * wy * (l - LoadFloat(z[y[q] * cs + q]));
    if (smooth) loss += t.smoothing * inv_c * (t.weight_sum * l - zw[q]);
    total += loss;
  }
  return total;
}

// The backward's terms for a block's pixels: the gradient is a_q p_j - b_q w_j, and at the target
// minus (1 - e) w_y scale too; a = b = 0 for pixels that do not count (exp is finite there: a zero
// gradient), a NaN where lse is.
inline void GradientTerms(const CrossEntropyTerms& t, int64_t c, const int64_t* __restrict y, const float* __restrict lse, int64_t n,
                          float scale, float* __restrict a, float* __restrict b, float* __restrict l) {
  const float e_c = t.smoothing / static_cast<float>(c);
  for (int64_t q = 0; q < n; ++q) {
    const float lq = lse[q];
    l[q] = lq;
    if (!Counts(t, c, y[q])) {
      a[q] = 0.0f;
      b[q] = 0.0f;
    } else {
      a[q] = lq == lq ? scale * ((1.0f - t.smoothing) * WeightOf(t, y[q]) + e_c * t.weight_sum) : kNaN;
      b[q] = scale * e_c;
    }
  }
}

// The target's element of a counted pixel with score zy, computed whole (rounded once when stored).
inline float TargetGradient(const CrossEntropyTerms& t, int64_t y, float a, float b, float l, float scale, float zy) {
  const float wy = WeightOf(t, y);
  return a * ExpNonPositive(zy - l) - b * wy - scale * (1.0f - t.smoothing) * wy;
}

// The block's gradient into dz[j * cs + q] (the logits' layout), each element rounded once.
template <class T>
void BackwardBlock(const T* __restrict z, int64_t cs, const int64_t* __restrict y, int64_t n, const CrossEntropyShape& s,
                   const CrossEntropyTerms& t, const float* __restrict lse, float scale, T* __restrict dz) {
  const int64_t c = s.classes;
  float a[kBlock], b[kBlock], l[kBlock];
  GradientTerms(t, c, y, lse, n, scale, a, b, l);
  for (int64_t j = 0; j < c; ++j) {
    const T* __restrict row = z + j * cs;
    T* __restrict drow = dz + j * cs;
    const float wj = WeightOf(t, j);
    for (int64_t q = 0; q < n; ++q) StoreFloat(a[q] * ExpNonPositive(LoadFloat(row[q]) - l[q]) - b[q] * wj, drow + q);
  }
  for (int64_t q = 0; q < n; ++q) {
    if (Counts(t, c, y[q])) StoreFloat(TargetGradient(t, y[q], a[q], b[q], l[q], scale, LoadFloat(z[y[q] * cs + q])), dz + y[q] * cs + q);
  }
}

// Channels-last: pixel i's C scores at z + i C. Each block's scores copied to float, transposed (class by
// class) by an indexed read (source[m] = the element that lands at m, tabulated once per call: a gather
// that vectorises, where strided reads or writes do not), then the block loop above.
template <class T>
double ForwardChannelsLast(const T* z, const CrossEntropyShape& s, const CrossEntropyTerms& t, float* lse, int64_t begin,
                           int64_t end, int64_t* bad_label, float* buf, int32_t* source) {
  const int64_t c = s.classes;
  for (int64_t m = 0; m < c * kBlock; ++m) source[m] = static_cast<int32_t>((m % kBlock) * c + m / kBlock);
  double total = 0.0;
  bool seen_bad = false;
  for (int64_t i = begin; i < end; i += kBlock) {
    const int64_t n = std::min<int64_t>(kBlock, end - i);
    const T* __restrict zb = z + i * c;
    float* __restrict out = buf;
    if (n == kBlock) {  // one flat loop over the table: measured faster than a loop per class
      const int32_t* __restrict src = source;
      for (int64_t m = 0; m < c * kBlock; ++m) out[m] = LoadFloat(zb[src[m]]);
    } else {  // the part's last, partial block (the table would read past its n pixels)
      for (int64_t q = 0; q < n; ++q)
        for (int64_t j = 0; j < c; ++j) out[j * kBlock + q] = LoadFloat(zb[q * c + j]);
    }
    total += ForwardBlock(buf, kBlock, t.labels + i, n, s, t, lse + i, bad_label, &seen_bad);
  }
  return total;
}

// The gradient straight into the channels-last layout: the block's per-pixel terms first, then one loop
// over its n x C contiguous elements, each reading its pixel's terms through an index (k / C, tabulated
// once per call) and its class weight from a table repeated per pixel; the targets' elements after.
template <class T>
void BackwardChannelsLast(const T* z, const CrossEntropyShape& s, const CrossEntropyTerms& t, const float* lse, float scale, T* dz,
                          int64_t begin, int64_t end, int32_t* pixel_of, float* weight_of) {
  const int64_t c = s.classes;
  for (int64_t k = 0; k < kBlock * c; ++k) {
    pixel_of[k] = static_cast<int32_t>(k / c);
    weight_of[k] = WeightOf(t, k % c);
  }
  float a[kBlock], b[kBlock], l[kBlock];
  for (int64_t i = begin; i < end; i += kBlock) {
    const int64_t n = std::min<int64_t>(kBlock, end - i);
    const int64_t* __restrict y = t.labels + i;
    GradientTerms(t, c, y, lse + i, n, scale, a, b, l);
    const T* __restrict zb = z + i * c;
    T* __restrict db = dz + i * c;
    const int32_t* __restrict pq = pixel_of;
    const float* __restrict wk = weight_of;
    for (int64_t k = 0; k < n * c; ++k) {
      const int32_t q = pq[k];
      StoreFloat(a[q] * ExpNonPositive(LoadFloat(zb[k]) - l[q]) - b[q] * wk[k], db + k);
    }
    for (int64_t q = 0; q < n; ++q) {
      if (Counts(t, c, y[q])) StoreFloat(TargetGradient(t, y[q], a[q], b[q], l[q], scale, LoadFloat(zb[q * c + y[q]])), db + q * c + y[q]);
    }
  }
}

// NCHW: one image's pixels [p0, p1), block by block, read in place.
template <class T>
double ForwardNchwImage(const T* zi, const int64_t* yi, const CrossEntropyShape& s, const CrossEntropyTerms& t, float* lsei, int64_t p0,
                        int64_t p1, int64_t* bad_label, bool* seen_bad) {
  double total = 0.0;
  for (int64_t q0 = p0; q0 < p1; q0 += kBlock) {
    const int64_t n = std::min<int64_t>(kBlock, p1 - q0);
    total += ForwardBlock(zi + q0, s.pixels, yi + q0, n, s, t, lsei + q0, bad_label, seen_bad);
  }
  return total;
}

template <class T>
void BackwardNchwImage(const T* zi, const int64_t* yi, const CrossEntropyShape& s, const CrossEntropyTerms& t, const float* lsei,
                       float scale, T* dzi, int64_t p0, int64_t p1) {
  for (int64_t q0 = p0; q0 < p1; q0 += kBlock) {
    const int64_t n = std::min<int64_t>(kBlock, p1 - q0);
    BackwardBlock(zi + q0, s.pixels, yi + q0, n, s, t, lsei + q0, scale, dzi + q0);
  }
}

template <class T>
double Forward(const T* z, const CrossEntropyShape& s, const CrossEntropyTerms& t, float* lse, int64_t begin, int64_t end,
               int64_t* bad_label) {
  if (s.channels_last) {
    std::vector<float> buf(static_cast<size_t>(s.classes * kBlock));
    std::vector<int32_t> source(static_cast<size_t>(s.classes * kBlock));
    return ForwardChannelsLast(z, s, t, lse, begin, end, bad_label, buf.data(), source.data());
  }
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
  if (s.channels_last) {
    std::vector<int32_t> pixel_of(static_cast<size_t>(s.classes * kBlock));
    std::vector<float> weight_of(static_cast<size_t>(s.classes * kBlock));
    return BackwardChannelsLast(z, s, t, lse, scale, dz, begin, end, pixel_of.data(), weight_of.data());
  }
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
