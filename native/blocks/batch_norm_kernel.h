// The loops of blocks/batch_norm.cc's training batch norm (+ addition + ReLU) on channels-last
// float32 or bfloat16 images seen as rows of C channels (row r, channel j at r * C + j), on plain arrays (no
// libtorch header): compiled for AVX-512, AVX2 and baseline x86-64 and chosen at load time by the CPU
// (GCC's target_clones, as train/optimizer_kernel.cc). Each function takes rows [begin, end). Each has a
// bfloat16 overload (the tensors' elements as their 16 bits; means, scales, sums in float): computed in
// float, each output rounded once to nearest even.
#pragma once
#include <cstdint>

namespace segtorch {

// Per channel, over the rows: sum += sum of (x - shift), sumsq += sum of (x - shift)^2, added up in
// float over blocks of rows and in double across blocks. `scratch`: 2 C floats.
void BatchNormStatsRows(const float* x, const float* shift, float* scratch, double* sum, double* sumsq, int64_t c,
                        int64_t begin, int64_t end);
void BatchNormStatsRows(const uint16_t* x, const float* shift, float* scratch, double* sum, double* sumsq, int64_t c,
                        int64_t begin, int64_t end);

// y = x * scale + shift [+ add], then max(y, 0) where `relu` (NaN stays NaN). `add` may be null.
void BatchNormForwardRows(const float* x, const float* add, const float* scale, const float* shift, bool relu, float* y,
                          int64_t c, int64_t begin, int64_t end);
void BatchNormForwardRows(const uint16_t* x, const uint16_t* add, const float* scale, const float* shift, bool relu, uint16_t* y,
                          int64_t c, int64_t begin, int64_t end);

// The output gradient g = dy, or dy where y > 0 and 0 elsewhere (ReLU's gradient; y null: no ReLU);
// per channel sum_g += sum of g and sum_gx += sum of g * (x - mean) (float over blocks of rows, double
// across them; `scratch`: 2 C floats); g written to `g_out` where it is not null.
void BatchNormBackwardReduceRows(const float* dy, const float* y, const float* x, const float* mean, float* g_out,
                                 float* scratch, double* sum_g, double* sum_gx, int64_t c, int64_t begin, int64_t end);
void BatchNormBackwardReduceRows(const uint16_t* dy, const uint16_t* y, const uint16_t* x, const float* mean, uint16_t* g_out,
                                 float* scratch, double* sum_g, double* sum_gx, int64_t c, int64_t begin, int64_t end);

// dx = a * g + b * (x - mean) + k per channel, g as above (from dy and y; y null: g = dy).
void BatchNormBackwardInputRows(const float* dy, const float* y, const float* x, const float* mean, const float* a,
                                const float* b, const float* k, float* dx, int64_t c, int64_t begin, int64_t end);
void BatchNormBackwardInputRows(const uint16_t* dy, const uint16_t* y, const uint16_t* x, const float* mean, const float* a,
                                const float* b, const float* k, uint16_t* dx, int64_t c, int64_t begin, int64_t end);

}  // namespace segtorch
