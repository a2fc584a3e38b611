// The taps of a bilinear resize along one dimension, as ATen's upsample_bilinear2d computes them.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

namespace segtorch {

// One dimension of a bilinear resize from `in` to `out` samples: for output position d, the input
// positions i0[d], i1[d] and their weights l0[d], l1[d] (ATen's upsample_bilinear2d: the scale in
// float, the source position clamped at 0, i1 = i0 at the last sample and where in == out).
struct LinearTaps {
  std::vector<int64_t> i0, i1;
  std::vector<float> l0, l1;
  LinearTaps(int64_t in, int64_t out, bool align_corners) : i0(out), i1(out), l0(out), l1(out) {
    const float scale = align_corners ? (out > 1 ? static_cast<float>(in - 1) / static_cast<float>(out - 1) : 0.0f)
                                      : static_cast<float>(in) / static_cast<float>(out);
    for (int64_t d = 0; d < out; ++d) {
      float src = in == out ? static_cast<float>(d)
                  : align_corners ? scale * static_cast<float>(d)
                                  : std::max(scale * (static_cast<float>(d) + 0.5f) - 0.5f, 0.0f);
      const int64_t a = std::min<int64_t>(static_cast<int64_t>(src), in - 1);
      i0[d] = a;
      i1[d] = a + (a < in - 1 && in != out ? 1 : 0);
      l1[d] = std::min(std::max(src - static_cast<float>(a), 0.0f), 1.0f);
      l0[d] = 1.0f - l1[d];
    }
  }
};

}  // namespace segtorch
