#include "blocks/max_pool.h"

#include <ATen/Parallel.h>
#include <torch/csrc/jit/frontend/tracer.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "base/cpu.h"
#include "base/env.h"
#include "blocks/max_pool_kernel.h"

namespace segtorch {

bool PoolKernelEnabled() {
  static const bool on = EnvSwitch("SEGTORCH_POOL_KERNEL", true);
  return on;
}

namespace {

// "Same" pooling with stride 1 (odd kernel, padding (kernel - 1) / 2: RefineNet's chained residual
// pooling, DeepLab v1's 3x3 poolings), which channels-last tensors run in one pass
// (MaxPoolSameRowsChannelsLast*), while its per-thread scratch (kernel + 1 rows) stays within 32 MiB:
// wider rows than that (over 6,000 pixels of 256 bfloat16 channels for RefineNet's) keep ATen's.
bool SameStride1(int64_t kernel, int64_t stride, int64_t padding) { return stride == 1 && 2 * padding + 1 == kernel; }
bool SameChannelsLast(const at::Tensor& x, int64_t kernel, int64_t stride, int64_t padding) {
  if (!SameStride1(kernel, stride, padding)) return false;
  const int64_t row = x.size(3) * x.size(1) * x.element_size();
  return row <= (int64_t{32} << 20) / (kernel + 2);
}

// Whether the separable kernel takes a channels-last float32 tensor (pixel after pixel, channels
// interleaved): stride-1 poolings other than the "same" ones above on CPUs without AVX-512, where
// ATen's channels-last kernel, which also writes the int64 indices a backward pass would need, is
// memory-bound: 1.6-3x faster there for RefineNet's (bench/pool.cc, an AVX2 EPYC, before the one-pass
// kernel took those), strided poolings 0.6-0.75x (ATen's writes a quarter of the indices there).
// With AVX-512 the same scheme measured 0.8-1.2x of ATen's, so ATen's stays there; except on the Intel CPU with AMX
// (PyPI torch 2.15, stop 58), where every strided pooling of the zoo ran 1.4-2.2x faster by it, float32 and bfloat16
// (bench/pool.cc: the ResNet stem 3x3 stride 2 1.64 -> 0.76 ms, DeepLab v1's pool1 7.5 -> 4.3 ms in bf16): strided
// channels-last poolings take it there.
bool SeparableChannelsLast(const at::Tensor& x, int64_t stride) {
#if defined(__x86_64__) || defined(__i386__)
  static const bool without_avx512 = !CpuHasAvx512();
  static const bool amx = Cpu().isa == "AMX";
#else
  const bool without_avx512 = false, amx = false;  // not measured on other CPUs
#endif
  return (without_avx512 && stride == 1 && x.scalar_type() == at::kFloat) || (amx && stride > 1);
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
  return SameChannelsLast(x, kernel, stride, padding) || SeparableChannelsLast(x, stride);
}

}  // namespace

at::Tensor MaxPool2d(const at::Tensor& x, int64_t kernel, int64_t stride, int64_t padding) {
  if (!KernelApplies(x, kernel, stride, padding)) return at::max_pool2d(x, {kernel, kernel}, {stride, stride}, {padding, padding});
  const int64_t n = x.size(0), channels = x.size(1);
  const bool nchw = x.is_contiguous();
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
  if (!nchw && SameChannelsLast(x, kernel, stride, padding)) {
    // Rows of all images (blocks/max_pool_kernel.h), each thread's range image by image.
    const int64_t row_grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(1, s.w * s.c * (kernel + 1)));
    at::parallel_for(0, n * s.oh, row_grain, [&](int64_t begin, int64_t end) {
      std::vector<int32_t> scratch(static_cast<size_t>(MaxPoolSameScratchWords(s, item)));
      for (int64_t i = begin; i < end;) {
        const int64_t plane = i / s.oh, r0 = i % s.oh, r1 = std::min(s.oh, r0 + (end - i));
        const char* in = src + plane * in_plane * item;
        char* o = dst + plane * out_plane * item;
        if (bf16) {
          MaxPoolSameRowsChannelsLastBFloat16(reinterpret_cast<const uint16_t*>(in), reinterpret_cast<uint16_t*>(o), scratch.data(), r0, r1, s);
        } else {
          MaxPoolSameRowsChannelsLastFloat(reinterpret_cast<const float*>(in), reinterpret_cast<float*>(o), scratch.data(), r0, r1, s);
        }
        i += r1 - r0;
      }
    });
    return out;
  }
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
