// predict()'s labels in one pass: the argmax over classes of bilinearly resized logits, without
// writing the resized logits (a [N, K, H, W] tensor at the image's size) or converting them to
// float32 first. bench/README.md, "Labels in one pass".
#pragma once
#include <ATen/ATen.h>

namespace segtorch {

// logits [N, K, h, w] (CPU, float32 or bfloat16, any layout). Returns int32 [N, H, W]: for every
// pixel the first class with the largest value (NaN counting as the largest, as torch.argmax does)
// of upsample_bilinear2d(logits, {H, W}, align_corners), each value computed in float32 as that
// resize defines it (along rows, then along columns); with h = H and w = W, the logits themselves.
// Differs from argmax(upsample_bilinear2d(...)) only where two classes are within float32 rounding
// (or, for bfloat16 logits, the resize's own bfloat16 rounding: this path keeps float32).
at::Tensor ResizedArgmax(const at::Tensor& logits, int64_t H, int64_t W, bool align_corners);

// Whether predict() uses ResizedArgmax (SEGTORCH_FUSED_LABELS=0: never, for measurements).
bool FusedLabelsEnabled();

}  // namespace segtorch
