// Bilinear resizing of feature maps, the one spelling every decoder uses.
#pragma once
#include <ATen/ATen.h>
#include <torch/csrc/jit/frontend/tracer.h>

#include <vector>

#include "base/thread_flag.h"

namespace segtorch {

// Writes x [N, C, h, w] resized bilinearly (ATen's upsample_bilinear2d: same taps and weights) to
// out's size [N, C, H, W] into out, or adds it to what out holds (accumulate), with segtorch's own
// kernel: out's channels adjacent in memory (stride(1) == 1: a channels-last tensor or a channel
// slice of one), float32 or bfloat16 like x, on the CPU. Returns false, out untouched, where that
// does not hold, where gradients are recorded or a graph is traced (those take ATen's operator), or
// where SEGTORCH_FAST_RESIZE=0 (ATen's operator then runs everywhere, for A/B runs). ATen's
// channels-last kernel wrote 4-6 GB/s on the CPU against about 30 GB/s for a copy (UPerNet's FPN:
// 14 ms of a 250 ms prediction).
bool ResizeBilinearInto(const at::Tensor& x, at::Tensor& out, bool align_corners, bool accumulate = false);

// Within its scope this thread's predictions compute as a traced graph does, operator by operator: the export's check
// of its size-independent graph against the network (1e-4, bf16 included) would otherwise compare different roundings.
// The resizes take ATen's operator (libtorch 1.13's bf16 upsample_bilinear2d rounds otherwise: 0.2-1 %), as do the
// average poolings (blocks/pool_bins.h; libtorch 1.13's bf16 adaptive pooling: the check failed at 1-4 %); the pyramid
// pooling's split head (blocks/ppm.h), the composed convolutions (blocks/composed_conv.h) and DFN's fused
// multiply-add stay off.
class AsTracedScope : public ThreadFlagScope {
 public:
  AsTracedScope();
};
// Whether an AsTracedScope is active on this thread.
bool AsTracedActive();

// Whether the caller holds the only reference to `a` and to its memory (not a view of another tensor) and `a` records
// no gradient: it may be written in place (AddResized's accumulation, DFN's channel attention).
inline bool HeldOnlyHere(const at::Tensor& a) { return a.use_count() == 1 && a.storage().use_count() == 1 && !a.requires_grad(); }

// x [N,C,h,w] -> [N,C,height,width], bilinear. align_corners=false unless a reference
// implementation (e.g. RefineNet's, DFN's, Caffe's Interp in ICNet) uses true.
at::Tensor ResizeBilinear(const at::Tensor& x, int64_t height, int64_t width, bool align_corners = false);

// ResizeBilinear of a network's logits in training: NCHW x (float32 or bfloat16) to an NCHW [N, C, height, width],
// with gradients, by segtorch's own loops (each plane separably in float, forward and backward) where x is a dense
// NCHW CPU tensor and SEGTORCH_FAST_RESIZE is not 0; otherwise ATen's operator. ATen's bf16 backward took 12.7 ms
// for a 4 x 21 x 256 x 256 gradient on the AMX Xeon (ICNet's, LR-ASPP's step: 4-6 %).
at::Tensor ResizeBilinearTrain(const at::Tensor& x, int64_t height, int64_t width, bool align_corners);

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

// The concatenation along channels of `parts`, each resized to like's spatial size (ResizeLike):
// CatChannels of the resized parts, in like's layout. In predictions on the CPU each part is
// resized straight into its channels of the result (ResizeBilinearInto), as torch.compile fuses
// them, instead of into a map of its own that the concatenation then copies.
at::Tensor CatResized(const std::vector<at::Tensor>& parts, const at::Tensor& like, bool align_corners = false);

// a + ResizeLike(b, a). In predictions on the CPU the resized b is added as it is computed, into a
// itself when nobody else holds a (pass it with std::move), else into a copy of it.
at::Tensor AddResized(at::Tensor a, const at::Tensor& b, bool align_corners = false);

}  // namespace segtorch
