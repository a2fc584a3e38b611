// The inner loops of blocks/max_pool.cc's 2-D max pooling of contiguous (NCHW) planes and of
// channels-last images, on plain
// arrays (no libtorch header): compiled for AVX-512, AVX2 and baseline x86-64 and chosen at load
// time by the CPU (GCC's target_clones, as train/adam_kernel.cc), so that the prebuilt addon uses
// the wide registers the CPU has.
#pragma once
#include <cstdint>

namespace segtorch {

// One pooling problem: planes of H x W pixels of c interleaved channels each (c = 1: an NCHW plane;
// c = C: one channels-last image, value (y, x, ch) at (y * W + x) * c + ch), a kh x kw window moved by
// (sh, sw) over the plane padded by (ph, pw) with -infinity, dilation 1, floor mode: OH x OW outputs.
struct MaxPoolShape {
  int64_t h, w, oh, ow, kh, kw, sh, sw, ph, pw;
  int64_t c = 1;
};

// Floats of working memory MaxPoolRow* needs.
inline int64_t MaxPoolScratchFloats(const MaxPoolShape& s) { return (s.w + 2 * s.pw + s.ow) * s.c; }

// Output row `row` of one plane: `in` points at the plane, `out` at the row (OW x c values), `scratch`
// at MaxPoolScratchFloats(s) floats. The maximum propagates NaN, as ATen's max_pool2d does.
void MaxPoolRowFloat(const float* in, float* out, float* scratch, int64_t row, const MaxPoolShape& s);
// The same for bfloat16 stored as its 16 bits (exact: the result is one of the inputs).
void MaxPoolRowBFloat16(const uint16_t* in, uint16_t* out, float* scratch, int64_t row, const MaxPoolShape& s);

}  // namespace segtorch
