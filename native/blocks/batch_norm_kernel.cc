#include "blocks/batch_norm_kernel.h"

#include <algorithm>

namespace segtorch {

namespace {
// Rows summed in float before the block's sums go into the double totals: short enough that float's
// rounding stays at the level of a few ulps of a block's sum, long enough that the double additions
// cost nothing.
constexpr int64_t kStatsBlockRows = 64;

// The loops over one row's channels, each a function of restrict pointers so that GCC vectorises them.
inline void StatsRow(const float* __restrict x, const float* __restrict shift, float* __restrict s, float* __restrict q, int64_t c) {
  for (int64_t j = 0; j < c; ++j) {
    const float v = x[j] - shift[j];
    s[j] += v;
    q[j] += v * v;
  }
}

template <bool Relu, bool Add>
inline void ForwardRow(const float* __restrict x, const float* __restrict add, const float* __restrict scale,
                       const float* __restrict shift, float* __restrict y, int64_t c) {
  for (int64_t j = 0; j < c; ++j) {
    float v = x[j] * scale[j] + shift[j];
    if (Add) v += add[j];
    if (Relu) v = v < 0.0f ? 0.0f : v;
    y[j] = v;
  }
}

// ReLU's gradient: dy where y > 0, else 0 (threshold_backward's rule; NaN in y gives 0).
inline float Masked(float dy, float y) { return y > 0.0f ? dy : 0.0f; }

template <bool Relu, bool Out>
inline void ReduceRow(const float* __restrict dy, const float* __restrict y, const float* __restrict x, const float* __restrict mean,
                      float* __restrict g_out, float* __restrict s, float* __restrict q, int64_t c) {
  for (int64_t j = 0; j < c; ++j) {
    const float d = dy[j];
    const float g = Relu ? Masked(d, y[j]) : d;
    if (Out) g_out[j] = g;
    s[j] += g;
    q[j] += g * (x[j] - mean[j]);
  }
}

template <bool Relu>
inline void InputRow(const float* __restrict dy, const float* __restrict y, const float* __restrict x, const float* __restrict mean,
                     const float* __restrict a, const float* __restrict b, const float* __restrict k, float* __restrict dx, int64_t c) {
  for (int64_t j = 0; j < c; ++j) {
    const float d = dy[j];
    const float g = Relu ? Masked(d, y[j]) : d;
    dx[j] = a[j] * g + b[j] * (x[j] - mean[j]) + k[j];
  }
}

// Per block of rows: zero the float partials, run `row(r, s, q)` for each row, add the partials to the
// double totals.
template <class Row>
inline void BlockedSums(float* scratch, double* sum, double* sumsq, int64_t c, int64_t begin, int64_t end, const Row& row) {
  float* s = scratch;
  float* q = scratch + c;
  for (int64_t r0 = begin; r0 < end; r0 += kStatsBlockRows) {
    const int64_t r1 = std::min(end, r0 + kStatsBlockRows);
    std::fill(s, s + 2 * c, 0.0f);
    for (int64_t r = r0; r < r1; ++r) row(r, s, q);
    for (int64_t j = 0; j < c; ++j) {
      sum[j] += s[j];
      sumsq[j] += q[j];
    }
  }
}
}  // namespace

#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && !defined(__clang__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
void BatchNormStatsRows(const float* x, const float* shift, float* scratch, double* sum, double* sumsq, int64_t c,
                        int64_t begin, int64_t end) {
  BlockedSums(scratch, sum, sumsq, c, begin, end, [&](int64_t r, float* s, float* q) { StatsRow(x + r * c, shift, s, q, c); });
}

#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && !defined(__clang__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
void BatchNormForwardRows(const float* x, const float* add, const float* scale, const float* shift, bool relu, float* y,
                          int64_t c, int64_t begin, int64_t end) {
  for (int64_t r = begin; r < end; ++r) {
    const float* xr = x + r * c;
    const float* ar = add == nullptr ? nullptr : add + r * c;
    float* yr = y + r * c;
    if (relu) {
      if (ar != nullptr) {
        ForwardRow<true, true>(xr, ar, scale, shift, yr, c);
      } else {
        ForwardRow<true, false>(xr, ar, scale, shift, yr, c);
      }
    } else if (ar != nullptr) {
      ForwardRow<false, true>(xr, ar, scale, shift, yr, c);
    } else {
      ForwardRow<false, false>(xr, ar, scale, shift, yr, c);
    }
  }
}

#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && !defined(__clang__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
void BatchNormBackwardReduceRows(const float* dy, const float* y, const float* x, const float* mean, float* g_out,
                                 float* scratch, double* sum_g, double* sum_gx, int64_t c, int64_t begin, int64_t end) {
  BlockedSums(scratch, sum_g, sum_gx, c, begin, end, [&](int64_t r, float* s, float* q) {
    const int64_t o = r * c;
    if (y == nullptr) {
      ReduceRow<false, false>(dy + o, nullptr, x + o, mean, nullptr, s, q, c);
    } else if (g_out == nullptr) {
      ReduceRow<true, false>(dy + o, y + o, x + o, mean, nullptr, s, q, c);
    } else {
      ReduceRow<true, true>(dy + o, y + o, x + o, mean, g_out + o, s, q, c);
    }
  });
}

#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && !defined(__clang__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
void BatchNormBackwardInputRows(const float* dy, const float* y, const float* x, const float* mean, const float* a,
                                const float* b, const float* k, float* dx, int64_t c, int64_t begin, int64_t end) {
  for (int64_t r = begin; r < end; ++r) {
    const int64_t o = r * c;
    if (y == nullptr) {
      InputRow<false>(dy + o, nullptr, x + o, mean, a, b, k, dx + o, c);
    } else {
      InputRow<true>(dy + o, y + o, x + o, mean, a, b, k, dx + o, c);
    }
  }
}

}  // namespace segtorch
