#include "blocks/resize_kernel.h"

#include "base/bf16_bits.h"

namespace segtorch {

namespace {


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
      float v = w00 * LoadFloat(a[k]) + w01 * LoadFloat(b[k]) + w10 * LoadFloat(d[k]) + w11 * LoadFloat(e[k]);
      if (kAccumulate) v += LoadFloat(o[k]);
      StoreFloat(v, o + k);
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

namespace segtorch {

namespace {

template <typename T>
inline void Plane(const T* __restrict in, T* __restrict out, const PlaneShape& s, const PlaneTaps& ty, const PlaneTaps& tx, float* __restrict tmp) {
  for (int64_t y = 0; y < s.h; ++y) {
    const T* r = in + y * s.w;
    float* t = tmp + y * s.W;
    for (int64_t j = 0; j < s.W; ++j) t[j] = tx.l0[j] * LoadFloat(r[tx.i0[j]]) + tx.l1[j] * LoadFloat(r[tx.i1[j]]);
  }
  for (int64_t i = 0; i < s.H; ++i) {
    const float* a = tmp + ty.i0[i] * s.W;
    const float* b = tmp + ty.i1[i] * s.W;
    const float h0 = ty.l0[i], h1 = ty.l1[i];
    T* o = out + i * s.W;
    for (int64_t j = 0; j < s.W; ++j) StoreFloat(h0 * a[j] + h1 * b[j], o + j);
  }
}

template <typename T>
inline void PlaneBackward(const T* __restrict g, T* __restrict dx, const PlaneShape& s, const PlaneTaps& ty, const PlaneTaps& tx,
                          const int64_t* __restrict ranges, float* __restrict tmp) {
  for (int64_t k = 0; k < s.h * s.W; ++k) tmp[k] = 0.0f;
  for (int64_t i = 0; i < s.H; ++i) {
    float* a = tmp + ty.i0[i] * s.W;
    float* b = tmp + ty.i1[i] * s.W;
    const float h0 = ty.l0[i], h1 = ty.l1[i];
    const T* r = g + i * s.W;
    for (int64_t j = 0; j < s.W; ++j) a[j] += h0 * LoadFloat(r[j]);
    for (int64_t j = 0; j < s.W; ++j) b[j] += h1 * LoadFloat(r[j]);
  }
  for (int64_t y = 0; y < s.h; ++y) {
    const float* t = tmp + y * s.W;
    T* o = dx + y * s.w;
    for (int64_t x = 0; x < s.w; ++x) {
      const int64_t* q = ranges + 4 * x;
      float v = 0.0f;
      for (int64_t j = q[0]; j < q[1]; ++j) v += tx.l0[j] * t[j];
      for (int64_t j = q[2]; j < q[3]; ++j) v += tx.l1[j] * t[j];
      StoreFloat(v, o + x);
    }
  }
}

}  // namespace

#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && !defined(__clang__)
#define SEGTORCH_PLANE_CLONES __attribute__((target_clones("arch=x86-64-v4", "avx2", "default"), flatten))
#else
#define SEGTORCH_PLANE_CLONES
#endif

SEGTORCH_PLANE_CLONES
void ResizePlaneFloat(const float* in, float* out, const PlaneShape& s, const PlaneTaps& ty, const PlaneTaps& tx, float* tmp) {
  Plane(in, out, s, ty, tx, tmp);
}

SEGTORCH_PLANE_CLONES
void ResizePlaneBFloat16(const uint16_t* in, uint16_t* out, const PlaneShape& s, const PlaneTaps& ty, const PlaneTaps& tx, float* tmp) {
  Plane(in, out, s, ty, tx, tmp);
}

SEGTORCH_PLANE_CLONES
void ResizePlaneBackwardFloat(const float* g, float* dx, const PlaneShape& s, const PlaneTaps& ty, const PlaneTaps& tx,
                              const int64_t* ranges, float* tmp) {
  PlaneBackward(g, dx, s, ty, tx, ranges, tmp);
}

SEGTORCH_PLANE_CLONES
void ResizePlaneBackwardBFloat16(const uint16_t* g, uint16_t* dx, const PlaneShape& s, const PlaneTaps& ty, const PlaneTaps& tx,
                                 const int64_t* ranges, float* tmp) {
  PlaneBackward(g, dx, s, ty, tx, ranges, tmp);
}

}  // namespace segtorch
