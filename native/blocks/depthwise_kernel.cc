#include "blocks/depthwise_kernel.h"

#include <algorithm>

#include "base/bf16_bits.h"

namespace segtorch {

#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && !defined(__clang__)
#define SEGTORCH_DEPTHWISE_CLONES __attribute__((target_clones("arch=x86-64-v4", "avx2", "default"), flatten))
#else
#define SEGTORCH_DEPTHWISE_CLONES
#endif

namespace {

// Channels are taken in blocks of this many, so that the block's weights (or weight-gradient sums) for every tap
// stay in the L1 cache while a row's pixels go by: 25 taps x 64 floats = 6.4 KB.
constexpr int64_t kChannelBlock = 64;


// fn(tap, ih, iw) for each tap of output pixel (oh, ow) that lands inside the input (not on padding).
template <class Fn>
inline void ForEachInputTap(const DepthwiseShape& s, int64_t oh, int64_t ow, Fn&& fn) {
  for (int64_t i = 0; i < s.KH; ++i) {
    const int64_t ih = oh * s.sh - s.ph + i * s.dh;
    if (ih < 0 || ih >= s.H) continue;
    for (int64_t j = 0; j < s.KW; ++j) {
      const int64_t iw = ow * s.sw - s.pw + j * s.dw;
      if (iw >= 0 && iw < s.W) fn(i * s.KW + j, ih, iw);
    }
  }
}

template <class T>
void Forward(const T* x, const float* wt, const float* bias, T* y, const DepthwiseShape& s, int64_t begin, int64_t end, float* acc) {
  const int64_t C = s.C;
  for (int64_t row = begin; row < end; ++row) {
    const int64_t n = row / s.OH, oh = row % s.OH;
    for (int64_t c0 = 0; c0 < C; c0 += kChannelBlock) {
      const int64_t cn = std::min(kChannelBlock, C - c0);
      for (int64_t ow = 0; ow < s.OW; ++ow) {
        for (int64_t c = 0; c < cn; ++c) acc[c] = bias != nullptr ? bias[c0 + c] : 0.0f;
        ForEachInputTap(s, oh, ow, [&](int64_t tap, int64_t ih, int64_t iw) {
          const T* xp = x + ((n * s.H + ih) * s.W + iw) * C + c0;
          const float* wp = wt + tap * C + c0;
          for (int64_t c = 0; c < cn; ++c) acc[c] += wp[c] * LoadFloat(xp[c]);
        });
        T* yp = y + ((n * s.OH + oh) * s.OW + ow) * C + c0;
        for (int64_t c = 0; c < cn; ++c) StoreFloat(acc[c], yp + c);
      }
    }
  }
}

// The output index o reached from input index in by tap k (o stride - p + k d = in), or -1.
inline int64_t Reached(int64_t in, int64_t k, int64_t stride, int64_t pad, int64_t dil, int64_t out_size) {
  const int64_t t = in + pad - k * dil;
  if (t < 0 || t % stride != 0) return -1;
  const int64_t o = t / stride;
  return o < out_size ? o : -1;
}

template <class T>
void InputGrad(const T* dy, const float* wt, T* dx, const DepthwiseShape& s, int64_t begin, int64_t end, float* acc) {
  const int64_t C = s.C;
  for (int64_t row = begin; row < end; ++row) {
    const int64_t n = row / s.H, ih = row % s.H;
    for (int64_t c0 = 0; c0 < C; c0 += kChannelBlock) {
      const int64_t cn = std::min(kChannelBlock, C - c0);
      for (int64_t iw = 0; iw < s.W; ++iw) {
        for (int64_t c = 0; c < cn; ++c) acc[c] = 0.0f;
        for (int64_t i = 0; i < s.KH; ++i) {
          const int64_t oh = Reached(ih, i, s.sh, s.ph, s.dh, s.OH);
          if (oh < 0) continue;
          for (int64_t j = 0; j < s.KW; ++j) {
            const int64_t ow = Reached(iw, j, s.sw, s.pw, s.dw, s.OW);
            if (ow < 0) continue;
            const T* gp = dy + ((n * s.OH + oh) * s.OW + ow) * C + c0;
            const float* wp = wt + (i * s.KW + j) * C + c0;
            for (int64_t c = 0; c < cn; ++c) acc[c] += wp[c] * LoadFloat(gp[c]);
          }
        }
        T* xp = dx + ((n * s.H + ih) * s.W + iw) * C + c0;
        for (int64_t c = 0; c < cn; ++c) StoreFloat(acc[c], xp + c);
      }
    }
  }
}

template <class T>
void WeightGrad(const T* x, const T* dy, const DepthwiseShape& s, int64_t begin, int64_t end, float* part, float* part_bias, float* g) {
  const int64_t C = s.C;
  for (int64_t row = begin; row < end; ++row) {
    const int64_t n = row / s.OH, oh = row % s.OH;
    for (int64_t c0 = 0; c0 < C; c0 += kChannelBlock) {
      const int64_t cn = std::min(kChannelBlock, C - c0);
      for (int64_t ow = 0; ow < s.OW; ++ow) {
        const T* gp = dy + ((n * s.OH + oh) * s.OW + ow) * C + c0;
        for (int64_t c = 0; c < cn; ++c) g[c] = LoadFloat(gp[c]);
        if (part_bias != nullptr) {
          for (int64_t c = 0; c < cn; ++c) part_bias[c0 + c] += g[c];
        }
        ForEachInputTap(s, oh, ow, [&](int64_t tap, int64_t ih, int64_t iw) {
          const T* xp = x + ((n * s.H + ih) * s.W + iw) * C + c0;
          float* pp = part + tap * C + c0;
          for (int64_t c = 0; c < cn; ++c) pp[c] += g[c] * LoadFloat(xp[c]);
        });
      }
    }
  }
}

}  // namespace

SEGTORCH_DEPTHWISE_CLONES
void DepthwiseForwardFloat(const float* x, const float* wt, const float* bias, float* y, const DepthwiseShape& s, int64_t begin,
                           int64_t end, float* acc) {
  Forward(x, wt, bias, y, s, begin, end, acc);
}

SEGTORCH_DEPTHWISE_CLONES
void DepthwiseForwardBFloat16(const uint16_t* x, const float* wt, const float* bias, uint16_t* y, const DepthwiseShape& s,
                              int64_t begin, int64_t end, float* acc) {
  Forward(x, wt, bias, y, s, begin, end, acc);
}

SEGTORCH_DEPTHWISE_CLONES
void DepthwiseInputGradFloat(const float* dy, const float* wt, float* dx, const DepthwiseShape& s, int64_t begin, int64_t end,
                             float* acc) {
  InputGrad(dy, wt, dx, s, begin, end, acc);
}

SEGTORCH_DEPTHWISE_CLONES
void DepthwiseInputGradBFloat16(const uint16_t* dy, const float* wt, uint16_t* dx, const DepthwiseShape& s, int64_t begin,
                                int64_t end, float* acc) {
  InputGrad(dy, wt, dx, s, begin, end, acc);
}

SEGTORCH_DEPTHWISE_CLONES
void DepthwiseWeightGradFloat(const float* x, const float* dy, const DepthwiseShape& s, int64_t begin, int64_t end, float* part,
                              float* part_bias, float* g) {
  WeightGrad(x, dy, s, begin, end, part, part_bias, g);
}

SEGTORCH_DEPTHWISE_CLONES
void DepthwiseWeightGradBFloat16(const uint16_t* x, const uint16_t* dy, const DepthwiseShape& s, int64_t begin, int64_t end,
                                 float* part, float* part_bias, float* g) {
  WeightGrad(x, dy, s, begin, end, part, part_bias, g);
}

}  // namespace segtorch
