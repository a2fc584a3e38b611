#include "blocks/resize.h"

#include <ATen/Parallel.h>

#include <cstdlib>
#include <cstring>

#include "blocks/concat.h"
#include "blocks/linear_taps.h"
#include "blocks/resize_kernel.h"

namespace segtorch {

namespace {

bool FastResizeEnabled() {
  static const bool enabled = [] {
    const char* v = std::getenv("SEGTORCH_FAST_RESIZE");
    return v == nullptr || std::strcmp(v, "0") != 0;
  }();
  return enabled;
}

thread_local bool aten_resize = false;

// Predictions on the CPU: no gradients, no tracer, the switch on, no AtenResizeScope.
bool FastResizeHere(const at::Tensor& like) {
  return FastResizeEnabled() && !aten_resize && !at::GradMode::is_enabled() && !torch::jit::tracer::isTracing() && like.dim() == 4 &&
         like.device().is_cpu();
}

template <typename T, typename Kernel>
void RunResize(const at::Tensor& x, at::Tensor& out, bool align_corners, bool accumulate, Kernel kernel) {
  const int64_t N = x.size(0), C = x.size(1), h = x.size(2), w = x.size(3), H = out.size(2), W = out.size(3);
  const LinearTaps ty(h, H, align_corners), tx(w, W, align_corners);
  std::vector<int64_t> x0(W), x1(W);
  for (int64_t j = 0; j < W; ++j) {
    x0[j] = tx.i0[j] * x.stride(3);
    x1[j] = tx.i1[j] * x.stride(3);
  }
  const ResizeRow row{x0.data(), x1.data(), tx.l0.data(), tx.l1.data(), W, C, out.stride(3)};
  const T* src = static_cast<const T*>(x.data_ptr());  // bfloat16 as its 16 bits
  T* dst = static_cast<T*>(out.data_ptr());
  const int64_t sN = x.stride(0), sH = x.stride(2), oN = out.stride(0), oH = out.stride(2);
  at::parallel_for(0, N * H, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, W * C)), [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t n = i / H, y = i % H;
      kernel(src + n * sN + ty.i0[y] * sH, src + n * sN + ty.i1[y] * sH, ty.l0[y], ty.l1[y], row, dst + n * oN + y * oH, accumulate);
    }
  });
}

}  // namespace

AtenResizeScope::AtenResizeScope() : ThreadFlagScope(aten_resize, true) {}

bool ResizeBilinearInto(const at::Tensor& input, at::Tensor& out, bool align_corners, bool accumulate) {
  if (!FastResizeHere(out) || input.dim() != 4 || !input.device().is_cpu()) return false;
  const auto type = input.scalar_type();
  if (type != out.scalar_type() || (type != at::kFloat && type != at::kBFloat16)) return false;
  if (input.size(0) != out.size(0) || input.size(1) != out.size(1) || (out.stride(1) != 1 && out.size(1) > 1)) return false;
  if (input.is_alias_of(out)) return false;
  if (out.numel() == 0) return true;
  if (input.numel() == 0) return false;  // ATen's error
  const at::Tensor x = input.stride(1) == 1 || input.size(1) == 1 ? input : input.contiguous(at::MemoryFormat::ChannelsLast);
  if (type == at::kFloat) {
    RunResize<float>(x, out, align_corners, accumulate, ResizeRowFloat);
  } else {
    RunResize<uint16_t>(x, out, align_corners, accumulate, ResizeRowBFloat16);
  }
  return true;
}

at::Tensor ResizeBilinear(const at::Tensor& x, int64_t height, int64_t width, bool align_corners) {
  if (x.size(2) == height && x.size(3) == width) return x;
  if (FastResizeHere(x) && x.size(1) > 1) {
    // The layout ATen's operator gives its output: the input's.
    at::Tensor out = at::empty({x.size(0), x.size(1), height, width}, x.options().memory_format(x.suggest_memory_format()));
    if (ResizeBilinearInto(x, out, align_corners)) return out;
  }
  return at::upsample_bilinear2d(x, {height, width}, align_corners);
}

at::Tensor CatResized(const std::vector<at::Tensor>& parts, const at::Tensor& like, bool align_corners) {
  if (parts.empty() || !FastResizeHere(like) || like.suggest_memory_format() != at::MemoryFormat::ChannelsLast) {
    std::vector<at::Tensor> resized;
    resized.reserve(parts.size());
    for (const auto& p : parts) resized.push_back(ResizeLike(p, like, align_corners));
    return CatChannels(resized);
  }
  int64_t channels = 0;
  at::ScalarType type = parts.front().scalar_type();
  for (const auto& p : parts) {
    channels += p.size(1);
    type = at::promoteTypes(type, p.scalar_type());
  }
  at::Tensor out = at::empty({like.size(0), channels, like.size(2), like.size(3)},
                             parts.front().options().dtype(type).memory_format(at::MemoryFormat::ChannelsLast));
  int64_t offset = 0;
  for (const auto& p : parts) {
    at::Tensor slice = out.narrow(1, offset, p.size(1));
    offset += p.size(1);
    const bool same = p.size(2) == like.size(2) && p.size(3) == like.size(3);
    if (same ? !CopyPixels(p, slice) : !ResizeBilinearInto(p, slice, align_corners)) slice.copy_(same ? p : ResizeLike(p, like, align_corners));
  }
  return out;
}

at::Tensor AddResized(at::Tensor a, const at::Tensor& b, bool align_corners) {
  if (a.size(2) == b.size(2) && a.size(3) == b.size(3)) return a + b;
  if (FastResizeHere(a) && a.stride(1) == 1 && a.scalar_type() == b.scalar_type()) {
    // Into a where this call holds the only reference to it and to its memory (not a view).
    const bool own = a.use_count() == 1 && a.storage().use_count() == 1 && !a.requires_grad();
    at::Tensor out = own ? a : a.clone(at::MemoryFormat::Preserve);
    if (out.stride(1) == 1 && ResizeBilinearInto(b, out, align_corners, /*accumulate=*/true)) return out;
  }
  return a + ResizeLike(b, a, align_corners);
}

}  // namespace segtorch
