// The input and output transforms of blocks/conv2d.cc's Winograd convolutions, bf16 F(2x2, 3x3) and
// fp32 F(4x4, 3x3), on plain arrays (no libtorch header): one pass each, computed in float32 (bf16:
// with one rounding to bf16 on the way out), compiled for AVX-512, AVX2 and baseline x86-64 and chosen
// at load time by the CPU (GCC's target_clones, as blocks/max_pool_kernel.cc). bf16 values are stored
// as their 16 bits.
#pragma once
#include <cstdint>

namespace segtorch {

// A convolution's geometry: N images of H x W, C channels in, K out, dilation d; tiles of 2 x 2 output
// pixels per phase: th x tw tiles in each of the d x d interleaved phases. Tile p = (((n * th + ty) * d +
// py) * tw + tx) * d + px covers output rows ty * 2d + py + {0, d}, columns tx * 2d + px + {0, d}.
struct WinogradShape {
  int64_t N, H, W, C, K, d, th, tw;
};

// A chunk of tile rows [first, first + count) (row r = (n * th + ty) * d + py: tw * d tiles) is
// transformed, multiplied and transformed back at a time: its P = count * tw * d tiles, numbered from
// the chunk's first.
//
// B^T x B of the tiles of rows [begin, end) of the chunk, into v [16][P][C]. x: channels-last
// [N, H, W, C] with channel stride 1 and strides sN, sH, sW; taps outside the image read `zeros` (C
// zero values).
void WinogradInputRows(const uint16_t* x, int64_t sN, int64_t sH, int64_t sW, const uint16_t* zeros, uint16_t* v,
                       const WinogradShape& s, int64_t first, int64_t count, int64_t begin, int64_t end);

// The activation applied after the output transform.
enum class WinogradAct { kNone, kReLU, kReLU6, kHardSwish };

// act(A^T m A + bias [+ add]) of the tiles of rows [begin, end) of the chunk, from m [16][P][K], into y:
// channels-last [N, H, W, K] contiguous. bias: K floats; add: nullptr or bf16 of y's shape and layout.
// Pixels past H or W are written to `scratch` (4 K values) and add `zeros` (K zero values).
void WinogradOutputRows(const uint16_t* m, const float* bias, const uint16_t* add, const uint16_t* zeros, WinogradAct act,
                        uint16_t* scratch, uint16_t* y, const WinogradShape& s, int64_t first, int64_t count, int64_t begin,
                        int64_t end);

// fp32 Winograd F(4x4, 3x3) (Lavin & Gray 2016, interpolation points 0, 1, -1, 2, -2): the same shape
// with tiles of 4 x 4 output pixels per phase (th x tw such tiles; tile p covers output rows
// ty * 4d + py + {0, d, 2d, 3d}) and 6 x 6 taps, in float32 throughout.
//
// B^T x B of the tiles of rows [begin, end) of the chunk, into v [36][P][C]; x channels-last as above.
void Winograd4InputRows(const float* x, int64_t sN, int64_t sH, int64_t sW, const float* zeros, float* v, const WinogradShape& s,
                        int64_t first, int64_t count, int64_t begin, int64_t end);

// act(A^T m A + bias [+ add]) of the tiles of rows [begin, end) of the chunk, from m [36][P][K], into y:
// channels-last [N, H, W, K] contiguous; add nullptr or float32 of y's shape and layout. Pixels past H or
// W are written to `scratch` (16 K values) and add `zeros` (K zero values).
void Winograd4OutputRows(const float* m, const float* bias, const float* add, const float* zeros, WinogradAct act, float* scratch,
                         float* y, const WinogradShape& s, int64_t first, int64_t count, int64_t begin, int64_t end);

// G g G^T (F(4x4, 3x3)) of the 3x3 kernels g = w + o * s_out + i * s_in (9 contiguous taps, row by
// row; flip: the taps in reverse order, the kernel rotated by 180 degrees) for inputs i in [begin, end)
// and every output o < n_out, into u [36][n_in][n_out].
void Winograd4KernelRows(const float* w, int64_t s_out, int64_t s_in, bool flip, int64_t n_out, int64_t n_in, float* u, int64_t begin,
                         int64_t end);

}  // namespace segtorch
