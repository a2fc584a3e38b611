// The inner loop of blocks/resize.cc's bilinear resizing of images whose channels are adjacent in
// memory (channels-last, or a channel slice of a channels-last tensor), on plain arrays (no libtorch
// header): compiled for AVX-512, AVX2 and baseline x86-64 and chosen at load time by the CPU (GCC's
// target_clones, as blocks/max_pool_kernel.cc), so that the prebuilt addon uses the wide registers
// the CPU has.
#pragma once
#include <cstdint>

namespace segtorch {

// One output row of `ow` pixels of `c` channels: pixel j (at out + j * out_stride, its channels
// adjacent) = h0 * (l0[j] * r0[x0[j] + ch] + l1[j] * r0[x1[j] + ch]) + h1 * (the same on r1), written
// as ATen's upsample_bilinear2d sums it (w00 * i00 + w01 * i01 + w10 * i10 + w11 * i11, the products
// of the row and column weights, in float); accumulate: added to what out holds. x0 / x1: element
// offsets of the source pixels within the rows r0 / r1.
struct ResizeRow {
  const int64_t* x0;
  const int64_t* x1;
  const float* l0;
  const float* l1;
  int64_t ow, c, out_stride;
};
void ResizeRowFloat(const float* r0, const float* r1, float h0, float h1, const ResizeRow& row, float* out, bool accumulate);
// The same for bfloat16 stored as its 16 bits: computed in float, rounded once to nearest even (once
// more after the addition when accumulating).
void ResizeRowBFloat16(const uint16_t* r0, const uint16_t* r1, float h0, float h1, const ResizeRow& row, uint16_t* out, bool accumulate);

}  // namespace segtorch

namespace segtorch {

// Training's resize of NCHW planes (blocks/resize.cc ResizeBilinearTrain), one [h, w] plane at a time into [H, W],
// separably in float: along the width into `tmp` (h x W floats), then along the height. The taps as LinearTaps
// gives them (i0 / i1 / l0 / l1 per output position) for the height (ty) and the width (tx).
struct PlaneTaps {
  const int64_t* i0;
  const int64_t* i1;
  const float* l0;
  const float* l1;
};
struct PlaneShape {
  int64_t h, w, H, W;
};
void ResizePlaneFloat(const float* in, float* out, const PlaneShape& s, const PlaneTaps& ty, const PlaneTaps& tx, float* tmp);
void ResizePlaneBFloat16(const uint16_t* in, uint16_t* out, const PlaneShape& s, const PlaneTaps& ty, const PlaneTaps& tx, float* tmp);

// Its backward: the gradient g [H, W] of one output plane to its input plane dx [h, w]: along the height into `tmp`
// (h x W floats, summed in float), then along the width, each input column gathering the output columns whose taps
// reach it: `ranges` holds, per input column x, [begin, end) of the output columns with i0 == x, then of those with
// i1 == x (4 w entries; the taps are monotone, so these are ranges).
void ResizePlaneBackwardFloat(const float* g, float* dx, const PlaneShape& s, const PlaneTaps& ty, const PlaneTaps& tx,
                              const int64_t* ranges, float* tmp);
void ResizePlaneBackwardBFloat16(const uint16_t* g, uint16_t* dx, const PlaneShape& s, const PlaneTaps& ty, const PlaneTaps& tx,
                                 const int64_t* ranges, float* tmp);

}  // namespace segtorch
