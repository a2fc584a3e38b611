#include "blocks/dropout.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <torch/csrc/jit/frontend/tracer.h>

#include <cstdint>
#include <mutex>

#include "base/env.h"
#include "blocks/dropout_kernel.h"

namespace segtorch {
namespace {

constexpr int64_t kDropoutGrain = 1 << 15;

// out = the mask of `seed` applied to `in` (dense, the same layout as `out`), scaled by `scale`.
void ApplyMask(const torch::Tensor& in, torch::Tensor& out, uint64_t seed, uint64_t threshold, float scale) {
  const int64_t n = in.numel();
  if (in.scalar_type() == at::kBFloat16) {
    const auto* ip = reinterpret_cast<const uint16_t*>(in.data_ptr<at::BFloat16>());
    auto* op = reinterpret_cast<uint16_t*>(out.data_ptr<at::BFloat16>());
    at::parallel_for(0, n, kDropoutGrain, [&](int64_t b, int64_t e) { DropoutApplyBFloat16(ip + b, op + b, b, e - b, seed, threshold, scale); });
  } else {
    const float* ip = in.data_ptr<float>();
    float* op = out.data_ptr<float>();
    at::parallel_for(0, n, kDropoutGrain, [&](int64_t b, int64_t e) { DropoutApplyFloat(ip + b, op + b, b, e - b, seed, threshold, scale); });
  }
}

uint64_t DropoutSeed() {
  auto* gen = at::check_generator<at::CPUGeneratorImpl>(at::detail::getDefaultCPUGenerator());
  std::lock_guard<std::mutex> lock(gen->mutex_);
  return gen->random64();
}

struct DropoutTrain : public torch::autograd::Function<DropoutTrain> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x, double p) {
    const auto format = x.suggest_memory_format();
    const torch::Tensor xc = x.contiguous(format);
    torch::Tensor y = at::empty_like(xc, format);
    const uint64_t seed = DropoutSeed();
    const uint64_t threshold = DropoutThreshold(1.0 - p);
    const float scale = static_cast<float>(1.0 / (1.0 - p));
    ApplyMask(xc, y, seed, threshold, scale);
    // The seed's 64 bits as a signed integer (IValue's); the layout the mask's indices refer to.
    ctx->saved_data["seed"] = static_cast<int64_t>(seed);
    ctx->saved_data["p"] = p;
    ctx->saved_data["channels_last"] = format == at::MemoryFormat::ChannelsLast;
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grads) {
    if (!grads[0].defined()) return {torch::Tensor(), torch::Tensor()};
    const auto format = ctx->saved_data["channels_last"].toBool() ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
    const double p = ctx->saved_data["p"].toDouble();
    const torch::Tensor g = grads[0].contiguous(format);
    torch::Tensor dx = at::empty_like(g, format);
    ApplyMask(g, dx, static_cast<uint64_t>(ctx->saved_data["seed"].toInt()), DropoutThreshold(1.0 - p), static_cast<float>(1.0 / (1.0 - p)));
    return {dx, torch::Tensor()};
  }
};

}  // namespace

torch::Tensor Dropout(torch::nn::DropoutImpl& module, const torch::Tensor& x) {
  static const bool enabled = EnvSwitch("SEGTORCH_FAST_DROPOUT", true);
  const double p = module.options.p();
  const auto type = x.scalar_type();
  if (!enabled || !module.is_training() || module.options.inplace() || !(p > 0.0 && p < 1.0) || !x.defined() || !x.is_cpu() ||
      (type != at::kFloat && type != at::kBFloat16) || x.numel() == 0 || torch::jit::tracer::isTracing()) {
    return module.forward(x);
  }
  return DropoutTrain::apply(x, p);
}

}  // namespace segtorch
