// Bilinear resizing of feature maps, the one spelling every decoder uses.
#pragma once
#include <ATen/ATen.h>

namespace segtorch {

// x [N,C,h,w] -> [N,C,height,width], bilinear. align_corners=false unless a reference
// implementation (e.g. RefineNet's, DFN's, Caffe's Interp in ICNet) uses true.
inline at::Tensor ResizeBilinear(const at::Tensor& x, int64_t height, int64_t width, bool align_corners = false) {
  if (x.size(2) == height && x.size(3) == width) return x;
  return at::upsample_bilinear2d(x, {height, width}, align_corners);
}

// x resized to the spatial size of `like`.
inline at::Tensor ResizeLike(const at::Tensor& x, const at::Tensor& like, bool align_corners = false) {
  return ResizeBilinear(x, like.size(2), like.size(3), align_corners);
}

}  // namespace segtorch
