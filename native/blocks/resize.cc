#include "blocks/resize.h"

#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <vector>

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

// Predictions on the CPU: no gradients, no tracer, the switch on, no AsTracedScope.
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

// Per input column x of a resize along the width, [begin, end) of the output columns whose first tap is x, then of
// those whose second tap is x (empty ranges as 0, 0). LinearTaps's taps never decrease, so each is one range.
std::vector<int64_t> TapRanges(const LinearTaps& t, int64_t in) {
  std::vector<int64_t> r(static_cast<size_t>(4 * in), -1);
  auto extend = [&](int64_t* q, int64_t j) {
    if (q[0] < 0) {
      q[0] = j;
      q[1] = j + 1;
    } else {
      TORCH_CHECK(q[1] == j, "segtorch: bilinear taps out of order");
      q[1] = j + 1;
    }
  };
  for (int64_t j = 0; j < static_cast<int64_t>(t.i0.size()); ++j) {
    extend(&r[static_cast<size_t>(4 * t.i0[j])], j);
    extend(&r[static_cast<size_t>(4 * t.i1[j] + 2)], j);
  }
  for (auto& v : r) v = std::max<int64_t>(v, 0);
  return r;
}

PlaneTaps TapsOf(const LinearTaps& t) { return {t.i0.data(), t.i1.data(), t.l0.data(), t.l1.data()}; }

// Each [h, w] plane of x (NCHW, dense) resized to [H, W] (out, NCHW), or out's gradient back to x's planes (backward).
template <typename T>
void RunPlanes(const at::Tensor& src, at::Tensor& dst, bool align_corners, bool backward) {
  const at::Tensor& small = backward ? dst : src;
  const at::Tensor& large = backward ? src : dst;
  const PlaneShape s{small.size(2), small.size(3), large.size(2), large.size(3)};
  const LinearTaps ty(s.h, s.H, align_corners), tx(s.w, s.W, align_corners);
  const std::vector<int64_t> ranges = backward ? TapRanges(tx, s.w) : std::vector<int64_t>();
  const T* in = static_cast<const T*>(src.data_ptr());
  T* out = static_cast<T*>(dst.data_ptr());
  const int64_t in_plane = src.size(2) * src.size(3), out_plane = dst.size(2) * dst.size(3);
  at::parallel_for(0, src.size(0) * src.size(1), 1, [&](int64_t begin, int64_t end) {
    std::vector<float> tmp(static_cast<size_t>(s.h * s.W));
    for (int64_t p = begin; p < end; ++p) {
      if (backward) {
        if constexpr (std::is_same_v<T, float>) {
          ResizePlaneBackwardFloat(in + p * in_plane, out + p * out_plane, s, TapsOf(ty), TapsOf(tx), ranges.data(), tmp.data());
        } else {
          ResizePlaneBackwardBFloat16(in + p * in_plane, out + p * out_plane, s, TapsOf(ty), TapsOf(tx), ranges.data(), tmp.data());
        }
      } else if constexpr (std::is_same_v<T, float>) {
        ResizePlaneFloat(in + p * in_plane, out + p * out_plane, s, TapsOf(ty), TapsOf(tx), tmp.data());
      } else {
        ResizePlaneBFloat16(in + p * in_plane, out + p * out_plane, s, TapsOf(ty), TapsOf(tx), tmp.data());
      }
    }
  });
}

void Planes(const at::Tensor& src, at::Tensor& dst, bool align_corners, bool backward) {
  if (src.scalar_type() == at::kFloat) {
    RunPlanes<float>(src, dst, align_corners, backward);
  } else {
    RunPlanes<uint16_t>(src, dst, align_corners, backward);
  }
}

struct ResizeTrain : public torch::autograd::Function<ResizeTrain> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, int64_t height, int64_t width, bool align_corners) {
    ctx->saved_data["size"] = std::vector<int64_t>{x.size(2), x.size(3)};
    ctx->saved_data["align_corners"] = align_corners;
    at::Tensor out = at::empty({x.size(0), x.size(1), height, width}, x.options().memory_format(at::MemoryFormat::Contiguous));
    Planes(x, out, align_corners, /*backward=*/false);
    return out;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grads) {
    torch::autograd::variable_list out(4);
    if (!grads[0].defined()) return out;
    const at::Tensor g = grads[0].contiguous();
    const auto size = ctx->saved_data["size"].toIntVector();
    at::Tensor dx = at::empty({g.size(0), g.size(1), size[0], size[1]}, g.options().memory_format(at::MemoryFormat::Contiguous));
    Planes(g, dx, ctx->saved_data["align_corners"].toBool(), /*backward=*/true);
    out[0] = dx;
    return out;
  }
};

}  // namespace

AsTracedScope::AsTracedScope() : ThreadFlagScope(aten_resize, true) {}

bool AsTracedActive() { return aten_resize; }

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
    at::Tensor out = HeldOnlyHere(a) ? a : a.clone(at::MemoryFormat::Preserve);
    if (out.stride(1) == 1 && ResizeBilinearInto(b, out, align_corners, /*accumulate=*/true)) return out;
  }
  return a + ResizeLike(b, a, align_corners);
}

}  // namespace segtorch

namespace segtorch {

at::Tensor ResizeBilinearTrain(const at::Tensor& x, int64_t height, int64_t width, bool align_corners) {
  if (!FastResizeEnabled() || aten_resize || !at::GradMode::is_enabled() || torch::jit::tracer::isTracing() || x.dim() != 4 ||
      !x.device().is_cpu() || (x.scalar_type() != at::kFloat && x.scalar_type() != at::kBFloat16) || !x.is_contiguous() ||
      x.numel() == 0 || height < 1 || width < 1) {
    return at::upsample_bilinear2d(x, {height, width}, align_corners);
  }
  return ResizeTrain::apply(x, height, width, align_corners);
}

}  // namespace segtorch
