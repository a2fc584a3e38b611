// The inner loops of blocks/max_pool.cc's 2-D max pooling of contiguous (NCHW) planes and of
// channels-last images, on plain
// arrays (no libtorch header): compiled for AVX-512, AVX2 and baseline x86-64 and chosen at load
// time by the CPU (GCC's target_clones, as train/optimizer_kernel.cc), so that the prebuilt addon uses
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

// Stride-1 "same" pooling of channels-last images (kh = kw = 2 ph + 1, pw = ph, sh = sw = 1, so OH = H
// and OW = W; c the channels): output rows [r0, r1) of the image at `in` into the image at `out`, each
// input row read once (turned into ordered integer keys, k rows kept), `scratch` at
// MaxPoolSameScratchWords(s) 32-bit words. NaN comes out as the NaN whose bits are 0x7fff (bfloat16) /
// 0x7fffffff (float32), whatever NaN went in; -0 counts as below +0 (ATen's keeps whichever of the two
// its loop met first).
inline int64_t MaxPoolSameScratchWords(const MaxPoolShape& s, int64_t item_bytes) {
  return ((s.kh * s.w + s.w + 2 * s.pw) * s.c * item_bytes + 3) / 4;
}
void MaxPoolSameRowsChannelsLastFloat(const float* in, float* out, int32_t* scratch, int64_t r0, int64_t r1, const MaxPoolShape& s);
void MaxPoolSameRowsChannelsLastBFloat16(const uint16_t* in, uint16_t* out, int32_t* scratch, int64_t r0, int64_t r1, const MaxPoolShape& s);

}  // namespace segtorch
