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
