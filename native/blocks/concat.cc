#include "blocks/concat.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstring>

namespace segtorch {

namespace {

// Both 4-D on the CPU, of one dtype, channels adjacent, not overlapping.
bool PixelCopyApplies(const at::Tensor& src, const at::Tensor& dst) {
  return src.dim() == 4 && dst.dim() == 4 && src.device().is_cpu() && dst.device().is_cpu() && src.scalar_type() == dst.scalar_type() &&
         (src.stride(1) == 1 || src.size(1) == 1) && (dst.stride(1) == 1 || dst.size(1) == 1) && !src.is_alias_of(dst) &&
         !(src.requires_grad() && at::GradMode::is_enabled());
}

}  // namespace

bool DepthToSpaceInto(const at::Tensor& phases, int64_t s, at::Tensor& dst, int64_t crop) {
  if (s < 1 || crop < 0 || !PixelCopyApplies(phases, dst) || phases.size(1) % (s * s) != 0) return false;
  const int64_t N = phases.size(0), C = phases.size(1) / (s * s), H = phases.size(2), W = phases.size(3);
  const int64_t OH = H * s - 2 * crop, OW = W * s - 2 * crop;
  if (OH < 1 || OW < 1 || dst.size(0) != N || dst.size(1) != C || dst.size(2) != OH || dst.size(3) != OW) return false;
  const size_t item = phases.element_size(), bytes = static_cast<size_t>(C) * item;
  const auto* p = static_cast<const char*>(phases.data_ptr());
  auto* d = static_cast<char*>(dst.data_ptr());
  const int64_t pN = phases.stride(0), pH = phases.stride(2), pW = phases.stride(3), dN = dst.stride(0), dH = dst.stride(2), dW = dst.stride(3);
  at::parallel_for(0, N * OH, std::max<int64_t>(1, 32768 / std::max<int64_t>(1, OW * C)), [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      // Output row y is row y + crop of the whole depth-to-space (the same for the columns).
      const int64_t n = i / OH, y = i % OH + crop, h = y / s, r1 = y % s;
      const char* in = p + (n * pN + h * pH + r1 * s * C) * item;
      char* out = d + (n * dN + (y - crop) * dH) * item;
      if (dW != C) {
        for (int64_t x = 0; x < OW; ++x) {
          const int64_t X = x + crop;
          std::memcpy(out + x * dW * item, in + ((X / s) * pW + (X % s) * C) * item, bytes);
        }
        continue;
      }
      // Dense output pixels: runs of pixels contiguous on both sides in one copy (a phase pixel's s phases of the row;
      // the whole row where s = 1 and the source pixels are dense too).
      for (int64_t x = 0; x < OW;) {
        const int64_t X = x + crop;
        const int64_t run = std::min(OW - x, s == 1 && pW == C ? OW : s - X % s);
        std::memcpy(out + x * C * item, in + ((X / s) * pW + (X % s) * C) * item, static_cast<size_t>(run) * bytes);
        x += run;
      }
    }
  });
  return true;
}

}  // namespace segtorch
