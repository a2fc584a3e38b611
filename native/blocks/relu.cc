#include "blocks/relu.h"

#include <ATen/Parallel.h>
#include <torch/csrc/jit/frontend/tracer.h>

#include "base/env.h"
#include "blocks/relu_kernel.h"

namespace segtorch {

namespace {
// Elements per parallel part (a thread's start costs more below).
constexpr int64_t kReluGrain = int64_t{1} << 15;

bool KernelApplies(const torch::Tensor& x) {
  static const bool enabled = EnvSwitch("SEGTORCH_RELU_KERNEL", true);  // 0: ATen's, for measurements
  return enabled && x.is_cpu() && x.scalar_type() == at::kBFloat16 && x.is_non_overlapping_and_dense() &&
         !(at::GradMode::is_enabled() && x.requires_grad()) && !torch::jit::tracer::isTracing();
}
}  // namespace

torch::Tensor Relu(const torch::Tensor& x) {
  if (!KernelApplies(x)) return x.relu();
  torch::Tensor y = at::empty_like(x, at::MemoryFormat::Preserve);  // x's strides (dense: one block of memory)
  const auto* in = static_cast<const uint16_t*>(x.data_ptr());
  auto* out = static_cast<uint16_t*>(y.data_ptr());
  at::parallel_for(0, x.numel(), kReluGrain, [&](int64_t b, int64_t e) { ReluBFloat16(in + b, out + b, e - b); });
  return y;
}

torch::Tensor ReluInPlace(torch::Tensor x) {
  if (!KernelApplies(x)) {
    x.relu_();
    return x;
  }
  auto* p = static_cast<uint16_t*>(x.data_ptr());
  at::parallel_for(0, x.numel(), kReluGrain, [&](int64_t b, int64_t e) { ReluBFloat16InPlace(p + b, e - b); });
  return x;
}

}  // namespace segtorch
