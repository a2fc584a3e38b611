#include "blocks/space_to_batch.h"

#include "base/errors.h"

namespace segtorch {

at::Tensor ConvSpaceToBatch(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, int64_t d) {
  int64_t k = weight.size(2);
  if (weight.size(3) != k || k % 2 == 0 || d < 1) ThrowError("ConvSpaceToBatch needs a square odd kernel and dilation >= 1");
  int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3), p = d * (k - 1) / 2;
  // Pad to "same", plus zeros at the bottom / right that make the size a multiple of d (their
  // outputs are cropped off).
  int64_t eh = (d - h % d) % d, ew = (d - w % d) % d;
  auto xp = at::constant_pad_nd(x, {p, p + ew, p, p + eh}, 0);
  int64_t hp = xp.size(2) / d, wp = xp.size(3) / d;
  // [N, C, hp, d, wp, d] -> [N, row phase, column phase, C, hp, wp]: a batch of N d^2 images.
  auto xb = xp.view({n, c, hp, d, wp, d}).permute({0, 3, 5, 1, 2, 4}).reshape({n * d * d, c, hp, wp});
  auto yb = at::conv2d(xb, weight, bias);  // undilated, unpadded
  int64_t out = yb.size(1), hq = yb.size(2), wq = yb.size(3);
  auto y = yb.view({n, d, d, out, hq, wq}).permute({0, 3, 4, 1, 5, 2}).reshape({n, out, hq * d, wq * d});
  return y.narrow(2, 0, h).narrow(3, 0, w);
}

}  // namespace segtorch
