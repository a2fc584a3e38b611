// The inner loop of infer/labels.cc's ResizedArgmax on plain arrays (no libtorch header): compiled
// for AVX-512, AVX2 and baseline x86-64 and chosen at load time by the CPU (GCC's target_clones, as
// blocks/max_pool_kernel.cc), so that the prebuilt addon uses the wide registers the CPU has.
#pragma once
#include <cstdint>

namespace segtorch {

// One output row of labels: class k's value at column x is l0 * r0[k * W + x] + l1 * r1[k * W + x]
// (r0[k * W + x] alone when one_row), for k < K; label[x] is the first k with the largest value (a
// NaN counting as the largest, as torch.argmax). best: W floats of working memory.
void ArgmaxRow(const float* r0, const float* r1, float l0, float l1, bool one_row, int64_t K, int64_t W, float* best,
               int32_t* label);

}  // namespace segtorch
