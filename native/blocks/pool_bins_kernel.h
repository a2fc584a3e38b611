// The inner loops of blocks/pool_bins.cc's adaptive average pooling to several bin counts at once: sums of an image's
// pixels over a grid of cells (channels-last: one row of cells; NCHW: one plane), on plain arrays (no libtorch header), compiled for
// AVX-512, AVX2 and baseline x86-64 and chosen at load time by the CPU (GCC's target_clones).
#pragma once
#include <cstdint>

namespace segtorch {

// Rows [y0, y1) of the channels-last image at `in` (w pixels a row, `pixel` values a pixel, of which the first c are
// summed), summed over each cell column [xs[j], xs[j + 1]) for j < ncx: the c float sums of cell j written (not
// accumulated) at out + j pixel.
void CellRowSumsFloat(const float* in, float* out, int64_t w, int64_t pixel, int64_t c, int64_t y0, int64_t y1, const int64_t* xs,
                      int64_t ncx);
// The same for bfloat16 stored as its 16 bits (the sums in float).
void CellRowSumsBFloat16(const uint16_t* in, float* out, int64_t w, int64_t pixel, int64_t c, int64_t y0, int64_t y1, const int64_t* xs,
                         int64_t ncx);

// The same sums for one NCHW plane (h x w values at `in`, rows of w): each cell (i, j) of the ncy x ncx grid (rows
// [ys[i], ys[i + 1])) written to out[(i ncx + j) stride].
void CellSumsPlaneFloat(const float* in, float* out, int64_t stride, int64_t w, const int64_t* ys, int64_t ncy, const int64_t* xs, int64_t ncx);
void CellSumsPlaneBFloat16(const uint16_t* in, float* out, int64_t stride, int64_t w, const int64_t* ys, int64_t ncy, const int64_t* xs,
                           int64_t ncx);

}  // namespace segtorch
