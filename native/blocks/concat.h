// Concatenation along channels in the layout of the first part.
#pragma once
#include <ATen/ATen.h>
#include <torch/csrc/jit/frontend/tracer.h>

#include <vector>

namespace segtorch {

// at::cat(parts, 1), laid out as parts[0] (channels-last or not). ATen's cat picks the layout from
// all its inputs: a branch whose 1 x 1 map (image pooling) came out in NCHW strides made the whole
// concatenation NCHW behind channels-last features, and the convolution after it then converted it
// back (PSPNet's 4096-channel head: 67 ms of copies, and no bf16 Winograd, which takes channels-last
// inputs only). Without gradients only: autograd and the tracers take the plain cat.
inline at::Tensor CatChannels(const std::vector<at::Tensor>& parts) {
  if (at::GradMode::is_enabled() || torch::jit::tracer::isTracing()) return at::cat(parts, 1);
  int64_t channels = 0;
  for (const auto& p : parts) channels += p.size(1);
  const at::Tensor& first = parts.front();
  at::Tensor out = at::empty({first.size(0), channels, first.size(2), first.size(3)},
                             first.options().memory_format(first.suggest_memory_format()));
  return at::cat_out(out, parts, 1);
}

}  // namespace segtorch

namespace segtorch {

// dst [N, C, H * s, W * s] = the depth-to-space of phases [N, s * s * C, H, W] (phase-major channels
// (r1 * s + r2) * C + c): dst[n, c, h * s + r1, w * s + r2] = phases[n, (r1 * s + r2) * C + c, h, w], for 4-D
// CPU tensors of one dtype whose channels are adjacent in memory (stride(1) == 1: channels-last, or a
// channel slice of a channels-last tensor): one memcpy per pixel, rows in parallel (ATen's copy into a
// channel slice went element by element). False, dst untouched, where that does not hold.
// crop: dst is the depth-to-space with `crop` rows and columns cut from each side ([N, C, H * s - 2 crop,
// W * s - 2 crop]: a padded transposed convolution's output, blocks/transposed_conv.h).
bool DepthToSpaceInto(const at::Tensor& phases, int64_t s, at::Tensor& dst, int64_t crop = 0);

// dst.copy_(src) the same way (the depth-to-space with s = 1).
inline bool CopyPixels(const at::Tensor& src, at::Tensor& dst) { return DepthToSpaceInto(src, 1, dst); }

}  // namespace segtorch
