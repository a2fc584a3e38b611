// Bilinear resizing of feature maps, the one spelling every decoder uses.
#pragma once
#include <ATen/ATen.h>
#include <torch/csrc/jit/frontend/tracer.h>

namespace segtorch {

// x [N,C,h,w] -> [N,C,height,width], bilinear. align_corners=false unless a reference
// implementation (e.g. RefineNet's, DFN's, Caffe's Interp in ICNet) uses true.
inline at::Tensor ResizeBilinear(const at::Tensor& x, int64_t height, int64_t width, bool align_corners = false) {
  if (x.size(2) == height && x.size(3) == width) return x;
  return at::upsample_bilinear2d(x, {height, width}, align_corners);
}

// x resized to the spatial size of `like`. In training, a 1 x 1 map (image pooling: PSPNet's and
// UPerNet's bin 1, ASPP's pooling branch), which resizes to its value everywhere whatever
// align_corners, is broadcast in `like`'s layout: upsample_bilinear2d read such a map as NCHW and
// wrote an NCHW map beside channels-last features, which made the concatenation after it NCHW and
// the convolution after that copy it back, forward and backward (PSPNet: 120 ms of a 5.7 s step).
// Without gradients the resize stays: the concatenation there keeps the first part's layout
// (CatChannels), and predict, evaluate and the exported graphs (traced without gradients) then run
// the same operation, whose bf16 rounding differs from the broadcast's.
inline at::Tensor ResizeLike(const at::Tensor& x, const at::Tensor& like, bool align_corners = false) {
  if (x.size(2) == 1 && x.size(3) == 1 && at::GradMode::is_enabled() && !torch::jit::tracer::isTracing()) {
    return x.expand({x.size(0), x.size(1), like.size(2), like.size(3)}).contiguous(like.suggest_memory_format());
  }
  return ResizeBilinear(x, like.size(2), like.size(3), align_corners);
}

}  // namespace segtorch
