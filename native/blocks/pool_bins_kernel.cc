#include "blocks/pool_bins_kernel.h"

#include "base/bf16_bits.h"

namespace segtorch {

namespace {

template <class T>
inline void CellRowSums(const T* __restrict in, float* __restrict out, int64_t w, int64_t pixel, int64_t c, int64_t y0, int64_t y1,
                        const int64_t* xs, int64_t ncx) {
  for (int64_t j = 0; j < ncx; ++j) {
    for (int64_t k = 0; k < c; ++k) out[j * pixel + k] = 0.f;
  }
  for (int64_t y = y0; y < y1; ++y) {
    const T* row = in + y * w * pixel;
    for (int64_t j = 0; j < ncx; ++j) {
      float* __restrict acc = out + j * pixel;
      for (int64_t x = xs[j]; x < xs[j + 1]; ++x) {
        const T* __restrict px = row + x * pixel;
        for (int64_t k = 0; k < c; ++k) acc[k] += LoadFloat(px[k]);
      }
    }
  }
}

template <class T>
inline void CellSumsPlane(const T* __restrict in, float* __restrict out, int64_t stride, int64_t w, const int64_t* ys, int64_t ncy,
                          const int64_t* xs, int64_t ncx) {
  // 16 partial sums a cell, so that the loop over a row vectorises (a float sum in one order would not).
  constexpr int64_t kLanes = 16;
  for (int64_t i = 0; i < ncy; ++i) {
    for (int64_t j = 0; j < ncx; ++j) {
      float part[kLanes] = {};
      const int64_t x0 = xs[j], n = xs[j + 1] - xs[j], whole = n / kLanes * kLanes;
      for (int64_t y = ys[i]; y < ys[i + 1]; ++y) {
        const T* __restrict row = in + y * w + x0;
        for (int64_t x = 0; x < whole; x += kLanes) {
          for (int64_t l = 0; l < kLanes; ++l) part[l] += LoadFloat(row[x + l]);
        }
        for (int64_t x = whole; x < n; ++x) part[x - whole] += LoadFloat(row[x]);
      }
      float acc = 0.f;
      for (int64_t l = 0; l < kLanes; ++l) acc += part[l];
      out[(i * ncx + j) * stride] = acc;
    }
  }
}

}  // namespace

#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && !defined(__clang__)
__attribute__((target_clones("avx512f", "avx2", "default"), flatten))
#endif
void CellSumsPlaneFloat(const float* in, float* out, int64_t stride, int64_t w, const int64_t* ys, int64_t ncy, const int64_t* xs, int64_t ncx) {
  CellSumsPlane(in, out, stride, w, ys, ncy, xs, ncx);
}

#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && !defined(__clang__)
__attribute__((target_clones("avx512f", "avx2", "default"), flatten))
#endif
void CellSumsPlaneBFloat16(const uint16_t* in, float* out, int64_t stride, int64_t w, const int64_t* ys, int64_t ncy, const int64_t* xs,
                           int64_t ncx) {
  CellSumsPlane(in, out, stride, w, ys, ncy, xs, ncx);
}

#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && !defined(__clang__)
__attribute__((target_clones("avx512f", "avx2", "default"), flatten))
#endif
void CellRowSumsFloat(const float* in, float* out, int64_t w, int64_t pixel, int64_t c, int64_t y0, int64_t y1, const int64_t* xs,
                      int64_t ncx) {
  CellRowSums(in, out, w, pixel, c, y0, y1, xs, ncx);
}

#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && !defined(__clang__)
__attribute__((target_clones("avx512f", "avx2", "default"), flatten))
#endif
void CellRowSumsBFloat16(const uint16_t* in, float* out, int64_t w, int64_t pixel, int64_t c, int64_t y0, int64_t y1, const int64_t* xs,
                         int64_t ncx) {
  CellRowSums(in, out, w, pixel, c, y0, y1, xs, ncx);
}

}  // namespace segtorch
