#include "blocks/winograd_kernel.h"

#include <cstring>

#include "base/bf16_bits.h"

namespace segtorch {

namespace {

inline float Load(uint16_t b) { return BFloat16BitsToFloat(b); }
inline uint16_t Store(float f) { return FloatToBFloat16Bits(f); }

// The tile positions of rows [begin, end) of a chunk (row r = (n * th + ty) * d + py, tile p numbered from the
// chunk's first row), F(kM x kM, 3x3): fn(p, n, y0, x0) with (y0, x0) the tile's first output pixel in image n;
// its kM x kM outputs and (kM + 2) x (kM + 2) input taps lie d apart from there.
template <int kM, typename Fn>
void ForEachTilePosition(const WinogradShape& s, int64_t first, int64_t begin, int64_t end, Fn&& fn) {
  const int64_t d = s.d;
  for (int64_t r = begin; r < end; ++r) {
    const int64_t py = r % d, ty = (r / d) % s.th, n = r / (d * s.th);
    for (int64_t tx = 0; tx < s.tw; ++tx) {
      for (int64_t px = 0; px < d; ++px) fn(((r - first) * s.tw + tx) * d + px, n, ty * kM * d + py, tx * kM * d + px);
    }
  }
}

// Those tiles' inputs: fn(p, tap) with tap[i][j] the input pixel (C values) of each of the tile's
// (kM + 2) x (kM + 2) taps, `zeros` outside the image. x: channels-last with strides sN, sH, sW.
template <int kM, typename T, typename Fn>
void ForEachInputTile(const T* x, int64_t sN, int64_t sH, int64_t sW, const T* zeros, const WinogradShape& s, int64_t first, int64_t begin,
                      int64_t end, Fn&& fn) {
  constexpr int kT = kM + 2;
  const int64_t d = s.d;
  const T* tap[kT][kT];
  ForEachTilePosition<kM>(s, first, begin, end, [&](int64_t p, int64_t n, int64_t y0, int64_t x0) {
    for (int i = 0; i < kT; ++i) {
      const int64_t yy = y0 + (i - 1) * d;
      for (int j = 0; j < kT; ++j) {
        const int64_t xx = x0 + (j - 1) * d;
        tap[i][j] = (yy >= 0 && yy < s.H && xx >= 0 && xx < s.W) ? x + n * sN + yy * sH + xx * sW : zeros;
      }
    }
    fn(p, tap);
  });
}

// Those tiles' outputs: fn(p, out, addend) with out[a][b] the output pixel (K values) of each of the tile's
// kM x kM outputs in y (channels-last [N, H, W, K], contiguous), those past the image a row of its own in
// `scratch` (kM * kM rows of K values: written, never read); addend[a][b] add's pixel, `zeros` past the image
// (nullptr without add).
template <int kM, typename T, typename Fn>
void ForEachOutputTile(T* y, const T* add, const T* zeros, T* scratch, const WinogradShape& s, int64_t first, int64_t begin, int64_t end,
                       Fn&& fn) {
  const int64_t d = s.d, K = s.K;
  T* out[kM][kM];
  const T* addend[kM][kM];
  ForEachTilePosition<kM>(s, first, begin, end, [&](int64_t p, int64_t n, int64_t y0, int64_t x0) {
    for (int a = 0; a < kM; ++a) {
      for (int b = 0; b < kM; ++b) {
        const int64_t yy = y0 + a * d, xx = x0 + b * d;
        const bool inside = yy < s.H && xx < s.W;
        const int64_t at = ((n * s.H + yy) * s.W + xx) * K;
        out[a][b] = inside ? y + at : scratch + (a * kM + b) * K;
        addend[a][b] = add != nullptr ? (inside ? add + at : zeros) : nullptr;
      }
    }
    fn(p, out, addend);
  });
}

// One tile's B^T d B for every channel: taps t[i][j] (C values each) into out[(i * 4 + j) * plane + c].
inline void TransformInput(const uint16_t* const (&t)[4][4], uint16_t* __restrict out, int64_t plane, int64_t C) {
  const uint16_t *__restrict t00 = t[0][0], *__restrict t01 = t[0][1], *__restrict t02 = t[0][2], *__restrict t03 = t[0][3];
  const uint16_t *__restrict t10 = t[1][0], *__restrict t11 = t[1][1], *__restrict t12 = t[1][2], *__restrict t13 = t[1][3];
  const uint16_t *__restrict t20 = t[2][0], *__restrict t21 = t[2][1], *__restrict t22 = t[2][2], *__restrict t23 = t[2][3];
  const uint16_t *__restrict t30 = t[3][0], *__restrict t31 = t[3][1], *__restrict t32 = t[3][2], *__restrict t33 = t[3][3];
  uint16_t *__restrict o0 = out, *__restrict o1 = out + plane, *__restrict o2 = out + 2 * plane, *__restrict o3 = out + 3 * plane;
  uint16_t *__restrict o4 = out + 4 * plane, *__restrict o5 = out + 5 * plane, *__restrict o6 = out + 6 * plane,
           *__restrict o7 = out + 7 * plane;
  uint16_t *__restrict o8 = out + 8 * plane, *__restrict o9 = out + 9 * plane, *__restrict o10 = out + 10 * plane,
           *__restrict o11 = out + 11 * plane;
  uint16_t *__restrict o12 = out + 12 * plane, *__restrict o13 = out + 13 * plane, *__restrict o14 = out + 14 * plane,
           *__restrict o15 = out + 15 * plane;
  // The 16 outputs never overlap the taps (v and x are separate tensors): no alias checks.
#pragma GCC ivdep
  for (int64_t c = 0; c < C; ++c) {
    // B^T over the rows, then B over the columns: (d0 - d2, d1 + d2, d2 - d1, d1 - d3).
    const float r00 = Load(t00[c]) - Load(t20[c]), r01 = Load(t01[c]) - Load(t21[c]), r02 = Load(t02[c]) - Load(t22[c]),
                r03 = Load(t03[c]) - Load(t23[c]);
    const float r10 = Load(t10[c]) + Load(t20[c]), r11 = Load(t11[c]) + Load(t21[c]), r12 = Load(t12[c]) + Load(t22[c]),
                r13 = Load(t13[c]) + Load(t23[c]);
    const float r20 = Load(t20[c]) - Load(t10[c]), r21 = Load(t21[c]) - Load(t11[c]), r22 = Load(t22[c]) - Load(t12[c]),
                r23 = Load(t23[c]) - Load(t13[c]);
    const float r30 = Load(t10[c]) - Load(t30[c]), r31 = Load(t11[c]) - Load(t31[c]), r32 = Load(t12[c]) - Load(t32[c]),
                r33 = Load(t13[c]) - Load(t33[c]);
    o0[c] = Store(r00 - r02), o1[c] = Store(r01 + r02), o2[c] = Store(r02 - r01), o3[c] = Store(r01 - r03);
    o4[c] = Store(r10 - r12), o5[c] = Store(r11 + r12), o6[c] = Store(r12 - r11), o7[c] = Store(r11 - r13);
    o8[c] = Store(r20 - r22), o9[c] = Store(r21 + r22), o10[c] = Store(r22 - r21), o11[c] = Store(r21 - r23);
    o12[c] = Store(r30 - r32), o13[c] = Store(r31 + r32), o14[c] = Store(r32 - r31), o15[c] = Store(r31 - r33);
  }
}

void InputRows(const uint16_t* x, int64_t sN, int64_t sH, int64_t sW, const uint16_t* zeros, uint16_t* v,
               const WinogradShape& s, int64_t first, int64_t count, int64_t begin, int64_t end) {
  const int64_t C = s.C, plane = count * s.tw * s.d * C;
  ForEachInputTile<2>(x, sN, sH, sW, zeros, s, first, begin, end,
                      [&](int64_t p, const uint16_t* const (&tap)[4][4]) { TransformInput(tap, v + p * C, plane, C); });
}

// One tile's act(A^T m A + bias [+ add]) for every output channel: m[i * plane + k] into the four
// pixels o[a][b] (K values each), adding a[a][b].
template <WinogradAct kAct, bool kAdd>
inline void TransformOutput(const uint16_t* __restrict m, int64_t plane, const float* __restrict bias, uint16_t* const (&o)[2][2],
                            const uint16_t* const (&a)[2][2], int64_t K) {
  uint16_t *__restrict o00 = o[0][0], *__restrict o01 = o[0][1], *__restrict o10 = o[1][0], *__restrict o11 = o[1][1];
  const uint16_t *__restrict a00 = a[0][0], *__restrict a01 = a[0][1], *__restrict a10 = a[1][0], *__restrict a11 = a[1][1];
  const uint16_t *__restrict q0 = m, *__restrict q1 = m + plane, *__restrict q2 = m + 2 * plane, *__restrict q3 = m + 3 * plane;
  const uint16_t *__restrict q4 = m + 4 * plane, *__restrict q5 = m + 5 * plane, *__restrict q6 = m + 6 * plane, *__restrict q7 = m + 7 * plane;
  const uint16_t *__restrict q8 = m + 8 * plane, *__restrict q9 = m + 9 * plane, *__restrict q10 = m + 10 * plane,
                 *__restrict q11 = m + 11 * plane;
  const uint16_t *__restrict q12 = m + 12 * plane, *__restrict q13 = m + 13 * plane, *__restrict q14 = m + 14 * plane,
                 *__restrict q15 = m + 15 * plane;
  auto finish = [](float v, float b, const uint16_t* __restrict add, int64_t k) {
    v += b;
    if (kAdd) v += Load(add[k]);
    // NaN stays NaN (comparisons with it are false), as ATen's relu / clamp / hardswish.
    if (kAct == WinogradAct::kReLU) v = v < 0.0f ? 0.0f : v;
    if (kAct == WinogradAct::kReLU6) v = v < 0.0f ? 0.0f : v > 6.0f ? 6.0f : v;
    if (kAct == WinogradAct::kHardSwish) {
      const float g = v + 3.0f;
      v = v * (g < 0.0f ? 0.0f : g > 6.0f ? 6.0f : g) / 6.0f;
    }
    return Store(v);
  };
  // The four outputs never overlap m, the bias or the addends: no alias checks.
#pragma GCC ivdep
  for (int64_t k = 0; k < K; ++k) {
    // A^T over the rows (m0 + m1 + m2, m1 - m2 - m3), then A over the columns.
    const float m0 = Load(q0[k]), m1 = Load(q1[k]), m2 = Load(q2[k]), m3 = Load(q3[k]);
    const float m4 = Load(q4[k]), m5 = Load(q5[k]), m6 = Load(q6[k]), m7 = Load(q7[k]);
    const float m8 = Load(q8[k]), m9 = Load(q9[k]), m10 = Load(q10[k]), m11 = Load(q11[k]);
    const float m12 = Load(q12[k]), m13 = Load(q13[k]), m14 = Load(q14[k]), m15 = Load(q15[k]);
    const float s0 = m0 + m4 + m8, s1 = m1 + m5 + m9, s2 = m2 + m6 + m10, s3 = m3 + m7 + m11;
    const float d0 = m4 - m8 - m12, d1 = m5 - m9 - m13, d2 = m6 - m10 - m14, d3 = m7 - m11 - m15;
    const float b = bias[k];
    o00[k] = finish(s0 + s1 + s2, b, a00, k);
    o01[k] = finish(s1 - s2 - s3, b, a01, k);
    o10[k] = finish(d0 + d1 + d2, b, a10, k);
    o11[k] = finish(d1 - d2 - d3, b, a11, k);
  }
}

template <WinogradAct kAct, bool kAdd>
void OutputRows(const uint16_t* m, const float* bias, const uint16_t* add, const uint16_t* zeros, uint16_t* scratch, uint16_t* y,
                const WinogradShape& s, int64_t first, int64_t count, int64_t begin, int64_t end) {
  const int64_t K = s.K, plane = count * s.tw * s.d * K;
  ForEachOutputTile<2>(y, add, zeros, scratch, s, first, begin, end,
                       [&](int64_t p, uint16_t* const (&out)[2][2], const uint16_t* const (&addend)[2][2]) {
                         TransformOutput<kAct, kAdd>(m + p * K, plane, bias, out, addend, K);
                       });
}

template <WinogradAct kAct>
void OutputRowsAdd(const uint16_t* m, const float* bias, const uint16_t* add, const uint16_t* zeros, uint16_t* scratch, uint16_t* y,
                   const WinogradShape& s, int64_t first, int64_t count, int64_t begin, int64_t end) {
  if (add) {
    OutputRows<kAct, true>(m, bias, add, zeros, scratch, y, s, first, count, begin, end);
  } else {
    OutputRows<kAct, false>(m, bias, add, zeros, scratch, y, s, first, count, begin, end);
  }
}

// ---- fp32 F(4x4, 3x3) ----
// Channels go through the transforms in blocks of kV (a 512-bit vector of floats); the 6 x 6 tile of a
// block lives in two small arrays on the stack (L1), so that each step holds at most 12 vectors.
constexpr int kV = 16;

// B^T a over six values (rows of B^T: points 0, 1, -1, 2, -2 and infinity).
#define SEGTORCH_BT6(a0, a1, a2, a3, a4, a5, r0, r1, r2, r3, r4, r5) \
  do {                                                              \
    r0 = 4.0f * a0 - 5.0f * a2 + a4;                                \
    r1 = -4.0f * (a1 + a2) + a3 + a4;                               \
    r2 = 4.0f * (a1 - a2) - a3 + a4;                                \
    r3 = 2.0f * (a3 - a1) - a2 + a4;                                \
    r4 = 2.0f * (a1 - a3) - a2 + a4;                                \
    r5 = 4.0f * a1 - 5.0f * a3 + a5;                                \
  } while (0)

// A^T a over six values (four outputs).
#define SEGTORCH_AT6(a0, a1, a2, a3, a4, a5, r0, r1, r2, r3) \
  do {                                                       \
    const float p12 = a1 + a2, m12 = a1 - a2;                \
    const float p34 = a3 + a4, m34 = a3 - a4;                \
    r0 = a0 + p12 + p34;                                     \
    r1 = m12 + 2.0f * m34;                                   \
    r2 = p12 + 4.0f * p34;                                   \
    r3 = m12 + 8.0f * m34 + a5;                              \
  } while (0)

// One tile's B^T d B for channels [c0, c0 + n), n <= kV: taps t[i][j] into out[(i * 6 + j) * plane + c].
template <int kN>
inline void TransformInput4Block(const float* const (&t)[6][6], float* __restrict out, int64_t plane, int64_t c0, int n) {
  const int w = kN > 0 ? kN : n;
  float u[6][6][kV];
  // B^T over the rows, one column of taps at a time.
  for (int j = 0; j < 6; ++j) {
    const float *__restrict d0 = t[0][j] + c0, *__restrict d1 = t[1][j] + c0, *__restrict d2 = t[2][j] + c0;
    const float *__restrict d3 = t[3][j] + c0, *__restrict d4 = t[4][j] + c0, *__restrict d5 = t[5][j] + c0;
#pragma GCC ivdep
    for (int c = 0; c < w; ++c) {
      SEGTORCH_BT6(d0[c], d1[c], d2[c], d3[c], d4[c], d5[c], u[0][j][c], u[1][j][c], u[2][j][c], u[3][j][c], u[4][j][c],
                   u[5][j][c]);
    }
  }
  // B over the columns, into the 36 planes.
  for (int i = 0; i < 6; ++i) {
    float *__restrict o0 = out + (i * 6) * plane + c0, *__restrict o1 = out + (i * 6 + 1) * plane + c0;
    float *__restrict o2 = out + (i * 6 + 2) * plane + c0, *__restrict o3 = out + (i * 6 + 3) * plane + c0;
    float *__restrict o4 = out + (i * 6 + 4) * plane + c0, *__restrict o5 = out + (i * 6 + 5) * plane + c0;
#pragma GCC ivdep
    for (int c = 0; c < w; ++c) {
      SEGTORCH_BT6(u[i][0][c], u[i][1][c], u[i][2][c], u[i][3][c], u[i][4][c], u[i][5][c], o0[c], o1[c], o2[c], o3[c], o4[c],
                   o5[c]);
    }
  }
}

void InputRows4(const float* x, int64_t sN, int64_t sH, int64_t sW, const float* zeros, float* v, const WinogradShape& s,
                int64_t first, int64_t count, int64_t begin, int64_t end) {
  const int64_t C = s.C, plane = count * s.tw * s.d * C;
  ForEachInputTile<4>(x, sN, sH, sW, zeros, s, first, begin, end, [&](int64_t p, const float* const (&tap)[6][6]) {
    float* out = v + p * C;
    int64_t c0 = 0;
    for (; c0 + kV <= C; c0 += kV) TransformInput4Block<kV>(tap, out, plane, c0, kV);
    if (c0 < C) TransformInput4Block<0>(tap, out, plane, c0, static_cast<int>(C - c0));
  });
}

template <WinogradAct kAct>
inline float Activate(float v) {
  // NaN stays NaN (comparisons with it are false), as ATen's relu / clamp / hardswish.
  if (kAct == WinogradAct::kReLU) v = v < 0.0f ? 0.0f : v;
  if (kAct == WinogradAct::kReLU6) v = v < 0.0f ? 0.0f : v > 6.0f ? 6.0f : v;
  if (kAct == WinogradAct::kHardSwish) {
    const float g = v + 3.0f;
    v = v * (g < 0.0f ? 0.0f : g > 6.0f ? 6.0f : g) / 6.0f;
  }
  return v;
}

// One tile's act(A^T m A + bias [+ add]) for output channels [k0, k0 + n): m[i * plane + k] into the
// 16 pixels o[a][b], adding a[a][b].
template <WinogradAct kAct, bool kAdd, int kN>
inline void TransformOutput4Block(const float* __restrict m, int64_t plane, const float* __restrict bias, float* const (&o)[4][4],
                                  const float* const (&a)[4][4], int64_t k0, int n) {
  const int w = kN > 0 ? kN : n;
  float u[4][6][kV];
  // A^T over the rows, one column of the 6 x 6 products at a time.
  for (int j = 0; j < 6; ++j) {
    const float *__restrict q0 = m + j * plane + k0, *__restrict q1 = m + (6 + j) * plane + k0, *__restrict q2 = m + (12 + j) * plane + k0;
    const float *__restrict q3 = m + (18 + j) * plane + k0, *__restrict q4 = m + (24 + j) * plane + k0,
                *__restrict q5 = m + (30 + j) * plane + k0;
#pragma GCC ivdep
    for (int k = 0; k < w; ++k) SEGTORCH_AT6(q0[k], q1[k], q2[k], q3[k], q4[k], q5[k], u[0][j][k], u[1][j][k], u[2][j][k], u[3][j][k]);
  }
  const float* __restrict b = bias + k0;
  for (int i = 0; i < 4; ++i) {
    float *__restrict y0 = o[i][0] + k0, *__restrict y1 = o[i][1] + k0, *__restrict y2 = o[i][2] + k0, *__restrict y3 = o[i][3] + k0;
    const float *__restrict a0 = kAdd ? a[i][0] + k0 : nullptr, *__restrict a1 = kAdd ? a[i][1] + k0 : nullptr;
    const float *__restrict a2 = kAdd ? a[i][2] + k0 : nullptr, *__restrict a3 = kAdd ? a[i][3] + k0 : nullptr;
#pragma GCC ivdep
    for (int k = 0; k < w; ++k) {
      float r0, r1, r2, r3;
      SEGTORCH_AT6(u[i][0][k], u[i][1][k], u[i][2][k], u[i][3][k], u[i][4][k], u[i][5][k], r0, r1, r2, r3);
      r0 += b[k], r1 += b[k], r2 += b[k], r3 += b[k];
      if (kAdd) r0 += a0[k], r1 += a1[k], r2 += a2[k], r3 += a3[k];
      y0[k] = Activate<kAct>(r0), y1[k] = Activate<kAct>(r1), y2[k] = Activate<kAct>(r2), y3[k] = Activate<kAct>(r3);
    }
  }
}

template <WinogradAct kAct, bool kAdd>
void OutputRows4(const float* m, const float* bias, const float* add, const float* zeros, float* scratch, float* y, const WinogradShape& s,
                 int64_t first, int64_t count, int64_t begin, int64_t end) {
  const int64_t K = s.K, plane = count * s.tw * s.d * K;
  ForEachOutputTile<4>(y, add, zeros, scratch, s, first, begin, end, [&](int64_t p, float* const (&out)[4][4], const float* const (&addend)[4][4]) {
    const float* in = m + p * K;
    int64_t k0 = 0;
    for (; k0 + kV <= K; k0 += kV) TransformOutput4Block<kAct, kAdd, kV>(in, plane, bias, out, addend, k0, kV);
    if (k0 < K) TransformOutput4Block<kAct, kAdd, 0>(in, plane, bias, out, addend, k0, static_cast<int>(K - k0));
  });
}

template <WinogradAct kAct>
void OutputRows4Add(const float* m, const float* bias, const float* add, const float* zeros, float* scratch, float* y, const WinogradShape& s,
                    int64_t first, int64_t count, int64_t begin, int64_t end) {
  if (add) {
    OutputRows4<kAct, true>(m, bias, add, zeros, scratch, y, s, first, count, begin, end);
  } else {
    OutputRows4<kAct, false>(m, bias, add, zeros, scratch, y, s, first, count, begin, end);
  }
}

// G g G^T for one block of kN outputs (kN <= kV) of input i.
template <int kN>
inline void KernelBlock(const float* w, int64_t s_out, bool flip, int64_t o0, int n, int64_t n_out, int64_t n_in, int64_t i, float* __restrict u) {
  const int cnt = kN > 0 ? kN : n;
  // G's rows for the points 0, 1, -1, 2, -2 and infinity.
  constexpr float g[6][3] = {{0.25f, 0.0f, 0.0f},
                             {-1.0f / 6, -1.0f / 6, -1.0f / 6},
                             {-1.0f / 6, 1.0f / 6, -1.0f / 6},
                             {1.0f / 24, 1.0f / 12, 1.0f / 6},
                             {1.0f / 24, -1.0f / 12, 1.0f / 6},
                             {0.0f, 0.0f, 1.0f}};
  float taps[9][kV];
  for (int q = 0; q < cnt; ++q) {
    const float* src = w + (o0 + q) * s_out;
    for (int t = 0; t < 9; ++t) taps[t][q] = src[flip ? 8 - t : t];
  }
  float t3[6][3][kV];
  for (int a = 0; a < 6; ++a) {
    for (int x = 0; x < 3; ++x) {
#pragma GCC ivdep
      for (int q = 0; q < cnt; ++q) t3[a][x][q] = g[a][0] * taps[x][q] + g[a][1] * taps[3 + x][q] + g[a][2] * taps[6 + x][q];
    }
  }
  const int64_t plane = n_in * n_out;
  for (int a = 0; a < 6; ++a) {
    for (int b = 0; b < 6; ++b) {
      float* __restrict dst = u + (a * 6 + b) * plane + i * n_out + o0;
#pragma GCC ivdep
      for (int q = 0; q < cnt; ++q) dst[q] = t3[a][0][q] * g[b][0] + t3[a][1][q] * g[b][1] + t3[a][2][q] * g[b][2];
    }
  }
}

void KernelRows(const float* w, int64_t s_out, int64_t s_in, bool flip, int64_t n_out, int64_t n_in, float* u, int64_t begin, int64_t end) {
  for (int64_t i = begin; i < end; ++i) {
    const float* wi = w + i * s_in;
    int64_t o0 = 0;
    for (; o0 + kV <= n_out; o0 += kV) KernelBlock<kV>(wi, s_out, flip, o0, kV, n_out, n_in, i, u);
    if (o0 < n_out) KernelBlock<0>(wi, s_out, flip, o0, static_cast<int>(n_out - o0), n_out, n_in, i, u);
  }
}

#undef SEGTORCH_BT6
#undef SEGTORCH_AT6

}  // namespace

#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && !defined(__clang__)
__attribute__((target_clones("avx512f", "avx2", "default"), flatten))
#endif
void WinogradInputRows(const uint16_t* x, int64_t sN, int64_t sH, int64_t sW, const uint16_t* zeros, uint16_t* v,
                       const WinogradShape& s, int64_t first, int64_t count, int64_t begin, int64_t end) {
  InputRows(x, sN, sH, sW, zeros, v, s, first, count, begin, end);
}

#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && !defined(__clang__)
__attribute__((target_clones("avx512f", "avx2", "default"), flatten))
#endif
void WinogradOutputRows(const uint16_t* m, const float* bias, const uint16_t* add, const uint16_t* zeros, WinogradAct act,
                        uint16_t* scratch, uint16_t* y, const WinogradShape& s, int64_t first, int64_t count, int64_t begin,
                        int64_t end) {
  switch (act) {
    case WinogradAct::kNone: return OutputRowsAdd<WinogradAct::kNone>(m, bias, add, zeros, scratch, y, s, first, count, begin, end);
    case WinogradAct::kReLU: return OutputRowsAdd<WinogradAct::kReLU>(m, bias, add, zeros, scratch, y, s, first, count, begin, end);
    case WinogradAct::kReLU6: return OutputRowsAdd<WinogradAct::kReLU6>(m, bias, add, zeros, scratch, y, s, first, count, begin, end);
    case WinogradAct::kHardSwish: return OutputRowsAdd<WinogradAct::kHardSwish>(m, bias, add, zeros, scratch, y, s, first, count, begin, end);
  }
}

#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && !defined(__clang__)
__attribute__((target_clones("avx512f", "avx2", "default"), flatten))
#endif
void Winograd4InputRows(const float* x, int64_t sN, int64_t sH, int64_t sW, const float* zeros, float* v, const WinogradShape& s,
                        int64_t first, int64_t count, int64_t begin, int64_t end) {
  InputRows4(x, sN, sH, sW, zeros, v, s, first, count, begin, end);
}

#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && !defined(__clang__)
__attribute__((target_clones("avx512f", "avx2", "default"), flatten))
#endif
void Winograd4OutputRows(const float* m, const float* bias, const float* add, const float* zeros, WinogradAct act, float* scratch,
                         float* y, const WinogradShape& s, int64_t first, int64_t count, int64_t begin, int64_t end) {
  switch (act) {
    case WinogradAct::kNone: return OutputRows4Add<WinogradAct::kNone>(m, bias, add, zeros, scratch, y, s, first, count, begin, end);
    case WinogradAct::kReLU: return OutputRows4Add<WinogradAct::kReLU>(m, bias, add, zeros, scratch, y, s, first, count, begin, end);
    case WinogradAct::kReLU6: return OutputRows4Add<WinogradAct::kReLU6>(m, bias, add, zeros, scratch, y, s, first, count, begin, end);
    case WinogradAct::kHardSwish:
      return OutputRows4Add<WinogradAct::kHardSwish>(m, bias, add, zeros, scratch, y, s, first, count, begin, end);
  }
}

#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && !defined(__clang__)
__attribute__((target_clones("avx512f", "avx2", "default"), flatten))
#endif
void Winograd4KernelRows(const float* w, int64_t s_out, int64_t s_in, bool flip, int64_t n_out, int64_t n_in, float* u, int64_t begin,
                         int64_t end) {
  KernelRows(w, s_out, s_in, flip, n_out, n_in, u, begin, end);
}

}  // namespace segtorch
