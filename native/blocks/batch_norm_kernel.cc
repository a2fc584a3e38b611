#include "blocks/batch_norm_kernel.h"

#include <algorithm>

#include "base/bf16_bits.h"

namespace segtorch {

namespace {
// Rows summed in float before the block's sums go into the double totals: short enough that float's
// rounding stays at the level of a few ulps of a block's sum, long enough that the double additions
// cost nothing.
constexpr int64_t kStatsBlockRows = 64;


// The loops over one row's channels, each a function of restrict pointers so that GCC vectorises them.
template <class T>
inline void StatsRow(const T* __restrict x, const float* __restrict shift, float* __restrict s, float* __restrict q, int64_t c) {
  for (int64_t j = 0; j < c; ++j) {
    const float v = LoadFloat(x[j]) - shift[j];
    s[j] += v;
    q[j] += v * v;
  }
}

template <bool Relu, bool Add, class T>
inline void ForwardRow(const T* __restrict x, const T* __restrict add, const float* __restrict scale,
                       const float* __restrict shift, T* __restrict y, int64_t c) {
  for (int64_t j = 0; j < c; ++j) {
    float v = LoadFloat(x[j]) * scale[j] + shift[j];
    if (Add) v += LoadFloat(add[j]);
    if (Relu) v = v < 0.0f ? 0.0f : v;
    StoreFloat(v, y + j);
  }
}

// ReLU's gradient: dy where y > 0, else 0 (threshold_backward's rule; NaN in y gives 0).
inline float Masked(float dy, float y) { return y > 0.0f ? dy : 0.0f; }

template <bool Relu, bool Out, class T>
inline void ReduceRow(const T* __restrict dy, const T* __restrict y, const T* __restrict x, const float* __restrict mean,
                      T* __restrict g_out, float* __restrict s, float* __restrict q, int64_t c) {
  for (int64_t j = 0; j < c; ++j) {
    const float d = LoadFloat(dy[j]);
    const float g = Relu ? Masked(d, LoadFloat(y[j])) : d;
    if (Out) StoreFloat(g, g_out + j);  // exact: g is dy or 0
    s[j] += g;
    q[j] += g * (LoadFloat(x[j]) - mean[j]);
  }
}

template <bool Relu, class T>
inline void InputRow(const T* __restrict dy, const T* __restrict y, const T* __restrict x, const float* __restrict mean,
                     const float* __restrict a, const float* __restrict b, const float* __restrict k, T* __restrict dx, int64_t c) {
  for (int64_t j = 0; j < c; ++j) {
    const float d = LoadFloat(dy[j]);
    const float g = Relu ? Masked(d, LoadFloat(y[j])) : d;
    StoreFloat(a[j] * g + b[j] * (LoadFloat(x[j]) - mean[j]) + k[j], dx + j);
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

template <class T>
inline void StatsRows(const T* x, const float* shift, float* scratch, double* sum, double* sumsq, int64_t c, int64_t begin, int64_t end) {
  BlockedSums(scratch, sum, sumsq, c, begin, end, [&](int64_t r, float* s, float* q) { StatsRow(x + r * c, shift, s, q, c); });
}

template <class T>
inline void ForwardRows(const T* x, const T* add, const float* scale, const float* shift, bool relu, T* y, int64_t c, int64_t begin,
                        int64_t end) {
  for (int64_t r = begin; r < end; ++r) {
    const T* xr = x + r * c;
    const T* ar = add == nullptr ? nullptr : add + r * c;
    T* yr = y + r * c;
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

template <class T>
inline void BackwardReduceRows(const T* dy, const T* y, const T* x, const float* mean, T* g_out, float* scratch, double* sum_g,
                               double* sum_gx, int64_t c, int64_t begin, int64_t end) {
  BlockedSums(scratch, sum_g, sum_gx, c, begin, end, [&](int64_t r, float* s, float* q) {
    const int64_t o = r * c;
    if (y == nullptr) {
      ReduceRow<false, false>(dy + o, static_cast<const T*>(nullptr), x + o, mean, static_cast<T*>(nullptr), s, q, c);
    } else if (g_out == nullptr) {
      ReduceRow<true, false>(dy + o, y + o, x + o, mean, static_cast<T*>(nullptr), s, q, c);
    } else {
      ReduceRow<true, true>(dy + o, y + o, x + o, mean, g_out + o, s, q, c);
    }
  });
}

template <class T>
inline void BackwardInputRows(const T* dy, const T* y, const T* x, const float* mean, const float* a, const float* b, const float* k,
                              T* dx, int64_t c, int64_t begin, int64_t end) {
  for (int64_t r = begin; r < end; ++r) {
    const int64_t o = r * c;
    if (y == nullptr) {
      InputRow<false>(dy + o, static_cast<const T*>(nullptr), x + o, mean, a, b, k, dx + o, c);
    } else {
      InputRow<true>(dy + o, y + o, x + o, mean, a, b, k, dx + o, c);
    }
  }
}
}  // namespace

// float: AVX-512F suffices; bfloat16: x86-64-v4 (AVX-512BW) for the 16-bit lanes' widening and rounding.
// `flatten`: the row loops must be inlined into each clone to be compiled for its instruction set; a
// helper the inliner leaves out of line (it did, for a fifth row variant of the backward's reduction)
// is compiled for the default target: scalar SSE, 2-5x slower.
#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && !defined(__clang__)
#define SEGTORCH_BN_CLONES_F32 __attribute__((target_clones("avx512f", "avx2", "default"), flatten))
#define SEGTORCH_BN_CLONES_BF16 __attribute__((target_clones("arch=x86-64-v4", "avx2", "default"), flatten))
#else
#define SEGTORCH_BN_CLONES_F32
#define SEGTORCH_BN_CLONES_BF16
#endif

SEGTORCH_BN_CLONES_F32
void BatchNormStatsRows(const float* x, const float* shift, float* scratch, double* sum, double* sumsq, int64_t c, int64_t begin,
                        int64_t end) {
  StatsRows(x, shift, scratch, sum, sumsq, c, begin, end);
}

SEGTORCH_BN_CLONES_BF16
void BatchNormStatsRows(const uint16_t* x, const float* shift, float* scratch, double* sum, double* sumsq, int64_t c,
                        int64_t begin, int64_t end) {
  StatsRows(x, shift, scratch, sum, sumsq, c, begin, end);
}

SEGTORCH_BN_CLONES_F32
void BatchNormForwardRows(const float* x, const float* add, const float* scale, const float* shift, bool relu, float* y,
                          int64_t c, int64_t begin, int64_t end) {
  ForwardRows(x, add, scale, shift, relu, y, c, begin, end);
}

SEGTORCH_BN_CLONES_BF16
void BatchNormForwardRows(const uint16_t* x, const uint16_t* add, const float* scale, const float* shift, bool relu, uint16_t* y,
                          int64_t c, int64_t begin, int64_t end) {
  ForwardRows(x, add, scale, shift, relu, y, c, begin, end);
}

SEGTORCH_BN_CLONES_F32
void BatchNormBackwardReduceRows(const float* dy, const float* y, const float* x, const float* mean, float* g_out,
                                 float* scratch, double* sum_g, double* sum_gx, int64_t c, int64_t begin, int64_t end) {
  BackwardReduceRows(dy, y, x, mean, g_out, scratch, sum_g, sum_gx, c, begin, end);
}

SEGTORCH_BN_CLONES_BF16
void BatchNormBackwardReduceRows(const uint16_t* dy, const uint16_t* y, const uint16_t* x, const float* mean, uint16_t* g_out,
                                 float* scratch, double* sum_g, double* sum_gx, int64_t c, int64_t begin, int64_t end) {
  BackwardReduceRows(dy, y, x, mean, g_out, scratch, sum_g, sum_gx, c, begin, end);
}

SEGTORCH_BN_CLONES_F32
void BatchNormBackwardInputRows(const float* dy, const float* y, const float* x, const float* mean, const float* a,
                                const float* b, const float* k, float* dx, int64_t c, int64_t begin, int64_t end) {
  BackwardInputRows(dy, y, x, mean, a, b, k, dx, c, begin, end);
}

SEGTORCH_BN_CLONES_BF16
void BatchNormBackwardInputRows(const uint16_t* dy, const uint16_t* y, const uint16_t* x, const float* mean, const float* a,
                                const float* b, const float* k, uint16_t* dx, int64_t c, int64_t begin, int64_t end) {
  BackwardInputRows(dy, y, x, mean, a, b, k, dx, c, begin, end);
}

}  // namespace segtorch
