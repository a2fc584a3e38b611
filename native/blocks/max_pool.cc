#include "blocks/max_pool.h"

#include <ATen/Parallel.h>
#include <torch/csrc/jit/frontend/tracer.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "base/cpu.h"
#include "blocks/max_pool_kernel.h"

namespace segtorch {

bool PoolKernelEnabled() {
  static const bool on = [] {
    const char* v = std::getenv("SEGTORCH_POOL_KERNEL");
    return v == nullptr || std::strcmp(v, "0") != 0;
  }();
  return on;
}

namespace {

// bfloat16 "same" pooling with stride 1 (RefineNet's), run as ShiftedMaxima on channels-last tensors.
bool BFloat16SameStride1(const at::Tensor& x, int64_t kernel, int64_t stride, int64_t padding) {
  return x.scalar_type() == at::kBFloat16 && stride == 1 && 2 * padding + 1 == kernel;
}

// Whether the separable kernel takes a channels-last float32 tensor (pixel after pixel, channels
// interleaved): stride 1 (RefineNet's chained residual pooling, DeepLab v1's 3x3 poolings) on CPUs
// without AVX-512, where ATen's channels-last kernel, which also writes the int64 indices a backward
// pass would need, is memory-bound: 1.6-3x faster there (bench/pool.cc, an AVX2 EPYC), strided
// poolings 0.6-0.75x (ATen's writes a quarter of the indices there). With AVX-512 the same scheme
// measured 0.8-1.2x of ATen's, so ATen's stays there.
bool SeparableChannelsLast(const at::Tensor& x, int64_t stride) {
#if defined(__x86_64__) || defined(__i386__)
  static const bool without_avx512 = !CpuHasAvx512();
#else
  const bool without_avx512 = false;  // not measured on other CPUs
#endif
  return without_avx512 && stride == 1 && x.scalar_type() == at::kFloat;
}

// Whether the kernel may stand in for ATen's: no gradient can be asked for, nothing records the
// call, the contiguous layout and a type it handles, and the arguments ATen accepts (ATen's error otherwise).
bool KernelApplies(const at::Tensor& x, int64_t kernel, int64_t stride, int64_t padding) {
  if (!PoolKernelEnabled() || !x.defined() || !x.device().is_cpu() || x.dim() != 4 || x.is_quantized() ||
      x.layout() != at::kStrided) {
    return false;
  }
  if (x.scalar_type() != at::kFloat && x.scalar_type() != at::kBFloat16) return false;
  if (at::GradMode::is_enabled() && x.requires_grad()) return false;
  if (torch::jit::tracer::isTracing()) return false;
  if (kernel < 1 || stride < 1 || padding < 0 || 2 * padding > kernel) return false;
  if (x.size(2) + 2 * padding < kernel || x.size(3) + 2 * padding < kernel) return false;
  if (x.numel() == 0) return false;
  if (x.is_contiguous()) return true;
  if (!x.is_contiguous(at::MemoryFormat::ChannelsLast)) return false;
  return BFloat16SameStride1(x, kernel, stride, padding) || SeparableChannelsLast(x, stride);
}

// Stride-1 "same" pooling (odd kernel, padding (kernel - 1) / 2) of a channels-last tensor as
// running maxima of shifted views, rows then columns (ATen's vectorised element-wise maximum, which
// propagates NaN as max_pool2d does): for bfloat16 2x ATen's channels-last pooling kernel
// (bench/pool.cc); for float32 no faster, so not used there.
at::Tensor ShiftedMaxima(const at::Tensor& x, int64_t padding) {
  // The window of output i: inputs i - padding .. i + padding.
  at::Tensor cur = x;
  for (int64_t dim : {3, 2}) {
    const int64_t n = x.size(dim);
    if (padding == 0 || n == 1) continue;
    // The first neighbour after writes `next` (its last slice, which has none, is copied); the other
    // neighbours update it in place.
    at::Tensor next = at::empty_like(cur, at::MemoryFormat::ChannelsLast);
    at::Tensor head = next.narrow(dim, 0, n - 1);
    at::maximum_out(head, cur.narrow(dim, 0, n - 1), cur.narrow(dim, 1, n - 1));
    next.narrow(dim, n - 1, 1).copy_(cur.narrow(dim, n - 1, 1));
    for (int64_t d = 2; d <= padding && d < n; ++d) {  // neighbours after
      at::Tensor a = next.narrow(dim, 0, n - d);
      at::maximum_out(a, a, cur.narrow(dim, d, n - d));
    }
    for (int64_t d = 1; d <= padding && d < n; ++d) {  // neighbours before
      at::Tensor a = next.narrow(dim, d, n - d);
      at::maximum_out(a, a, cur.narrow(dim, 0, n - d));
    }
    cur = next;
  }
  return cur.is_same(x) ? x.clone(at::MemoryFormat::ChannelsLast) : cur;  // a new tensor, as max_pool2d's
}

}  // namespace

at::Tensor MaxPool2d(const at::Tensor& x, int64_t kernel, int64_t stride, int64_t padding) {
  if (!KernelApplies(x, kernel, stride, padding)) return at::max_pool2d(x, {kernel, kernel}, {stride, stride}, {padding, padding});
  const int64_t n = x.size(0), channels = x.size(1);
  const bool nchw = x.is_contiguous();
  if (!nchw && BFloat16SameStride1(x, kernel, stride, padding)) return ShiftedMaxima(x, padding);
  MaxPoolShape s{};
  s.c = nchw ? 1 : channels;  // channels-last: one plane per image, its channels interleaved
  s.h = x.size(2);
  s.w = x.size(3);
  s.kh = s.kw = kernel;
  s.sh = s.sw = stride;
  s.ph = s.pw = padding;
  s.oh = (s.h + 2 * padding - kernel) / stride + 1;
  s.ow = (s.w + 2 * padding - kernel) / stride + 1;
  at::Tensor out = at::empty({n, channels, s.oh, s.ow}, x.options().memory_format(nchw ? at::MemoryFormat::Contiguous : at::MemoryFormat::ChannelsLast));
  const int64_t planes = nchw ? n * channels : n;
  const int64_t in_plane = s.h * s.w * s.c, out_plane = s.oh * s.ow * s.c;
  const bool bf16 = x.scalar_type() == at::kBFloat16;
  const char* src = static_cast<const char*>(x.data_ptr());
  char* dst = static_cast<char*>(out.data_ptr());
  const int64_t item = x.element_size();
  const int64_t work_per_row = (s.w * s.kh + s.ow * s.kw) * s.c;
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(1, work_per_row));
  at::parallel_for(0, planes * s.oh, grain, [&](int64_t begin, int64_t end) {
    std::vector<float> scratch(static_cast<size_t>(MaxPoolScratchFloats(s)));
    for (int64_t i = begin; i < end; ++i) {
      const int64_t plane = i / s.oh, row = i % s.oh;
      const char* in = src + plane * in_plane * item;
      char* o = dst + (plane * out_plane + row * s.ow * s.c) * item;
      if (bf16) {
        MaxPoolRowBFloat16(reinterpret_cast<const uint16_t*>(in), reinterpret_cast<uint16_t*>(o), scratch.data(), row, s);
      } else {
        MaxPoolRowFloat(reinterpret_cast<const float*>(in), reinterpret_cast<float*>(o), scratch.data(), row, s);
      }
    }
  });
  return out;
}

}  // namespace segtorch
