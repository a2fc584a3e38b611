#include "blocks/batch_norm.h"

#include <ATen/Parallel.h>
#include <ATen/record_function.h>
#include <torch/csrc/jit/frontend/tracer.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "base/bf16_bits.h"
#include "base/env.h"
#include "blocks/batch_norm_kernel.h"

namespace segtorch {

namespace {

// Rows x channels below which a reduction runs on one thread (the threads' start costs more).
constexpr int64_t kBatchNormPartElements = 1 << 14;

// Two per-channel sums over the rows: `part(begin, end, scratch, sum, sumsq)` adds rows [begin, end) into
// its own double partials (2 C float of scratch), up to one part per thread, the rows split evenly; the
// partials are then added up in double, part by part. Returns [sum (C), sumsq (C)].
template <class F>
std::vector<double> ChannelSums(int64_t rows, int64_t c, const F& part) {
  const int64_t parts = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), rows * c / kBatchNormPartElements));
  std::vector<double> partial(static_cast<size_t>(parts * 2 * c), 0.0);
  std::vector<float> scratch(static_cast<size_t>(parts * 2 * c));
  at::parallel_for(0, parts, 1, [&](int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p) {
      part(rows * p / parts, rows * (p + 1) / parts, scratch.data() + p * 2 * c, partial.data() + p * 2 * c, partial.data() + p * 2 * c + c);
    }
  });
  std::vector<double> total(static_cast<size_t>(2 * c), 0.0);
  for (int64_t p = 0; p < parts; ++p) {
    for (int64_t j = 0; j < 2 * c; ++j) total[j] += partial[p * 2 * c + j];
  }
  return total;
}

// f(begin, end) over the rows in parallel (element-wise passes).
template <class F>
void ForRows(int64_t rows, int64_t c, const F& f) {
  at::parallel_for(0, rows, std::max<int64_t>(1, kBatchNormPartElements / c), f);
}

// The elements of a float32 (T = float) or bfloat16 (T = uint16_t, its bits) tensor whose type was checked.
template <class T>
T* Elements(const torch::Tensor& t) {
  return static_cast<T*>(t.data_ptr());
}

inline float ToFloat(float v) { return v; }
inline float ToFloat(uint16_t v) { return BFloat16BitsToFloat(v); }

// Training batch norm of a channels-last float32 or bfloat16 batch (bf16 autocast: the convolution's
// output; weight, bias and statistics float32), plus `add` (empty: none; the input's type) and ReLU
// where `relu`, as one autograd node: the batch statistics in one pass over the input (shifted by its
// first pixel's values, so that the variance does not cancel), the output in a second; the backward
// in two passes (ReLU's mask, the two per-channel sums; then the input gradient). Computed in float;
// bfloat16 outputs and gradients rounded once each (libtorch rounds the batch norm's output, then the
// sum with `add`). Updates the running statistics as torch::batch_norm does (the unbiased variance).
struct BatchNormActTrain : public torch::autograd::Function<BatchNormActTrain> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& weight,
                               const torch::Tensor& bias, const torch::Tensor& add, torch::Tensor running_mean,
                               torch::Tensor running_var, double momentum, double eps, bool relu) {
    torch::Tensor y = x.scalar_type() == at::kBFloat16
                          ? Forward<uint16_t>(x, weight, bias, add, running_mean, running_var, momentum, eps, relu, ctx)
                          : Forward<float>(x, weight, bias, add, running_mean, running_var, momentum, eps, relu, ctx);
    ctx->saved_data["add"] = add.numel() > 0;
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    torch::autograd::variable_list out(9);
    if (!grads[0].defined()) return out;
    const torch::Tensor dy = grads[0].to(saved[0].scalar_type()).contiguous(at::MemoryFormat::ChannelsLast);
    if (dy.scalar_type() == at::kBFloat16) {
      Backward<uint16_t>(ctx, saved, dy, out);
    } else {
      Backward<float>(ctx, saved, dy, out);
    }
    return out;
  }

 private:
  template <class T>
  static torch::Tensor Forward(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias, const torch::Tensor& add,
                               torch::Tensor& running_mean, torch::Tensor& running_var, double momentum, double eps, bool relu,
                               torch::autograd::AutogradContext* ctx) {
    const int64_t c = x.size(1), rows = x.numel() / c;
    const T* xp = Elements<T>(x);
    std::vector<float> shift_in(static_cast<size_t>(c));  // the first pixel
    for (int64_t j = 0; j < c; ++j) shift_in[j] = ToFloat(xp[j]);
    const std::vector<double> sums = ChannelSums(rows, c, [&](int64_t begin, int64_t end, float* scratch, double* sum, double* sumsq) {
      BatchNormStatsRows(xp, shift_in.data(), scratch, sum, sumsq, c, begin, end);
    });
    auto fopt = weight.options().dtype(at::kFloat);
    torch::Tensor mean = at::empty({c}, fopt), invstd = at::empty({c}, fopt), batch_var = at::empty({c}, fopt);
    std::vector<float> scale(static_cast<size_t>(c)), shift(static_cast<size_t>(c));
    {
      const float* w = weight.data_ptr<float>();
      const float* b = bias.data_ptr<float>();
      float *mp = mean.data_ptr<float>(), *ip = invstd.data_ptr<float>(), *vp = batch_var.data_ptr<float>();
      for (int64_t j = 0; j < c; ++j) {
        const double m = sums[j] / static_cast<double>(rows);
        const double var = std::max(0.0, sums[c + j] / static_cast<double>(rows) - m * m);
        const double is = 1.0 / std::sqrt(var + eps);
        mp[j] = static_cast<float>(shift_in[j] + m);
        vp[j] = static_cast<float>(var);
        ip[j] = static_cast<float>(is);
        scale[j] = static_cast<float>(w[j] * is);
        shift[j] = static_cast<float>(b[j] - (shift_in[j] + m) * (w[j] * is));
      }
    }
    {
      torch::NoGradGuard no_grad;
      const double unbias = static_cast<double>(rows) / static_cast<double>(rows - 1);
      running_mean.mul_(1.0 - momentum).add_(mean, momentum);
      running_var.mul_(1.0 - momentum).add_(batch_var, momentum * unbias);
    }
    torch::Tensor y = at::empty_like(x, at::MemoryFormat::ChannelsLast);
    const T* ap = add.numel() > 0 ? Elements<T>(add) : nullptr;
    T* yp = Elements<T>(y);
    ForRows(rows, c, [&](int64_t begin, int64_t end) { BatchNormForwardRows(xp, ap, scale.data(), shift.data(), relu, yp, c, begin, end); });
    ctx->save_for_backward({x, weight, mean, invstd, relu ? y : at::empty({0}, x.options())});
    return y;
  }

  template <class T>
  static void Backward(torch::autograd::AutogradContext* ctx, const torch::autograd::variable_list& saved, const torch::Tensor& dy,
                       torch::autograd::variable_list& out) {
    const torch::Tensor &x = saved[0], &weight = saved[1], &mean = saved[2], &invstd = saved[3], &y = saved[4];
    const bool has_add = ctx->saved_data["add"].toBool();
    const int64_t c = x.size(1), rows = x.numel() / c;
    const T *dyp = Elements<T>(dy), *xp = Elements<T>(x);
    const float* mp = mean.data_ptr<float>();
    const T* yp = y.numel() > 0 ? Elements<T>(y) : nullptr;
    torch::Tensor g;  // ReLU's gradient, written out for `add`'s gradient
    T* gp = nullptr;
    if (has_add && ctx->needs_input_grad(3)) {
      g = yp == nullptr ? dy : at::empty_like(dy, at::MemoryFormat::ChannelsLast);
      if (yp != nullptr) gp = Elements<T>(g);
    }
    const std::vector<double> sums = ChannelSums(rows, c, [&](int64_t begin, int64_t end, float* scratch, double* sum_g, double* sum_gx) {
      BatchNormBackwardReduceRows(dyp, yp, xp, mp, gp, scratch, sum_g, sum_gx, c, begin, end);
    });
    auto fopt = weight.options().dtype(at::kFloat);
    torch::Tensor sum_g = at::empty({c}, fopt), sum_gx = at::empty({c}, fopt);
    {
      float *s = sum_g.data_ptr<float>(), *q = sum_gx.data_ptr<float>();
      for (int64_t j = 0; j < c; ++j) {
        s[j] = static_cast<float>(sums[j]);
        q[j] = static_cast<float>(sums[c + j]);
      }
    }
    if (ctx->needs_input_grad(0)) {
      // dx = w invstd (g - sum_g / n - (x - mean) invstd^2 sum_gx / n), as ATen's batch norm backward.
      std::vector<float> a(static_cast<size_t>(c)), b(static_cast<size_t>(c)), k(static_cast<size_t>(c));
      const float *w = weight.data_ptr<float>(), *is = invstd.data_ptr<float>(), *s = sum_g.data_ptr<float>(), *q = sum_gx.data_ptr<float>();
      const double n = static_cast<double>(rows);
      for (int64_t j = 0; j < c; ++j) {
        const double aj = static_cast<double>(w[j]) * is[j];
        a[j] = static_cast<float>(aj);
        b[j] = static_cast<float>(-aj * is[j] * is[j] * q[j] / n);
        k[j] = static_cast<float>(-aj * s[j] / n);
      }
      torch::Tensor dx = at::empty_like(x, at::MemoryFormat::ChannelsLast);
      T* dxp = Elements<T>(dx);
      // Where the first pass wrote ReLU's gradient out (for `add`), this one reads it instead of dy and y.
      const T* gin = gp != nullptr ? gp : dyp;
      const T* ymask = gp != nullptr ? nullptr : yp;
      ForRows(rows, c, [&](int64_t begin, int64_t end) {
        BatchNormBackwardInputRows(gin, ymask, xp, mp, a.data(), b.data(), k.data(), dxp, c, begin, end);
      });
      out[0] = dx;
    }
    if (ctx->needs_input_grad(1)) out[1] = sum_gx * invstd;
    if (ctx->needs_input_grad(2)) out[2] = sum_g;
    if (g.defined()) out[3] = g;
  }
};

}  // namespace

bool FusedBatchNormEnabled() {
  static const bool on = EnvSwitch("SEGTORCH_FUSED_BN", true);
  return on;
}

bool FusedBatchNormBf16Enabled() {
  static const bool on = EnvSwitch("SEGTORCH_FUSED_BN_BF16", true);
  return on;
}

torch::Tensor BatchNorm2dImpl::ForwardAct(const torch::Tensor& input, bool relu, const torch::Tensor& add) {
  if (folded_) return Finish(input, relu, add);
  TORCH_CHECK(input.dim() == 4, "expected 4D input to BatchNorm2d (got ", input.dim(), "D input)");
  if (trace_) trace_->emplace_back(this, input.grad_fn());
  double momentum = options.momentum().value_or(0.0);
  bool use_batch_stats = is_training() || !options.track_running_stats();
  if (is_training() && options.track_running_stats() && num_batches_tracked.defined()) {
    num_batches_tracked += 1;
    if (!options.momentum().has_value()) momentum = 1.0 / num_batches_tracked.item<double>();
  }
  if (sync_ && is_training()) return Finish(sync_->Forward(input, weight, bias, running_mean, running_var, momentum, options.eps()), relu, add);
  if (FusedApplies(input, add)) {
    RECORD_USER_SCOPE("segtorch::batch_norm_act");  // named in SEGTORCH_PROFILE's traces (its backward: BatchNormActTrain)
    return BatchNormActTrain::apply(input, weight, bias, add.defined() ? add.contiguous(at::MemoryFormat::ChannelsLast) : at::empty({0}, input.options()),
                                    running_mean, running_var, momentum, options.eps(), relu);
  }
  return Finish(torch::batch_norm(input, weight, bias, running_mean, running_var, use_batch_stats, momentum, options.eps(),
                                  at::globalContext().userEnabledCuDNN()),
                relu, add);
}

bool BatchNorm2dImpl::FusedApplies(const torch::Tensor& input, const torch::Tensor& add) const {
  if (!is_training() || !FusedBatchNormEnabled() || trace_ != nullptr || torch::jit::tracer::isTracing()) return false;
  if (!options.affine() || !options.track_running_stats() || !weight.defined() || !bias.defined() || !running_mean.defined() ||
      !running_var.defined()) {
    return false;
  }
  // Weight, bias and statistics float32; the input float32 or bfloat16 (bf16 autocast's convolutions).
  for (const auto* t : {&weight, &bias, &running_mean, &running_var}) {
    if (!t->is_cpu() || t->scalar_type() != at::kFloat) return false;
  }
  if (!input.is_cpu() || (input.scalar_type() != at::kFloat && (input.scalar_type() != at::kBFloat16 || !FusedBatchNormBf16Enabled()))) {
    return false;
  }
  if (!weight.is_contiguous() || !bias.is_contiguous() || input.size(1) != weight.numel() || input.numel() == 0 ||
      input.numel() / input.size(1) < 2 || !input.is_contiguous(at::MemoryFormat::ChannelsLast)) {
    return false;
  }
  return !add.defined() || (add.is_cpu() && add.scalar_type() == input.scalar_type() && add.sizes() == input.sizes());
}

torch::Tensor BatchNorm2dImpl::Finish(torch::Tensor y, bool relu, const torch::Tensor& add) {
  if (add.defined()) y += add;
  return relu ? y.relu_() : y;
}

}  // namespace segtorch
