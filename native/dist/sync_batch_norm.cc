#include "dist/sync_batch_norm.h"

#include <cstdint>

namespace segtorch {
namespace dist {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Per channel over [N, H, W]: the mean and the sum of squared deviations of every rank's part,
// combined exactly (Chan et al.): one all-reduce of a [world, 2C + 1] buffer where each rank fills
// its row (an all-gather).
struct GlobalStats {
  torch::Tensor mean, var, invstd;  // biased variance
  int64_t count = 0;
};

GlobalStats Gather(ProcessGroup& g, const torch::Tensor& x, double eps) {
  const int64_t c = x.size(1);
  const int64_t n = x.numel() / c;
  torch::Tensor xf = x.to(torch::kFloat);
  torch::Tensor m = xf.mean({0, 2, 3});
  torch::Tensor m2 = (xf - m.view({1, c, 1, 1})).pow(2).sum({0, 2, 3});
  torch::Tensor rows = torch::zeros({g.world_size(), 2 * c + 1}, xf.options().dtype(torch::kDouble));
  rows[g.rank()].narrow(0, 0, c).copy_(m);
  rows[g.rank()].narrow(0, c, c).copy_(m2);
  rows[g.rank()][2 * c] = static_cast<double>(n);
  std::vector<torch::Tensor> v{rows};
  g.AllReduceSum(v, "all-reduce of batch-norm statistics (syncBatchNorm)");
  torch::Tensor means = rows.narrow(1, 0, c);
  torch::Tensor m2s = rows.narrow(1, c, c);
  torch::Tensor counts = rows.narrow(1, 2 * c, 1);  // [W, 1]
  torch::Tensor total = counts.sum();
  torch::Tensor mean = (means * counts).sum(0) / total;
  torch::Tensor m2all = (m2s + counts * (means - mean).pow(2)).sum(0);
  GlobalStats s;
  s.count = static_cast<int64_t>(total.item<double>());
  s.mean = mean.to(torch::kFloat);
  s.var = (m2all / total).to(torch::kFloat);
  s.invstd = (s.var + eps).rsqrt();
  return s;
}

struct SyncBatchNormFunction : public torch::autograd::Function<SyncBatchNormFunction> {
  // (The running statistics come as pointers: updated in place, outside the autograd graph.)
  static torch::Tensor forward(AutogradContext* ctx, torch::Tensor input, torch::Tensor weight, torch::Tensor bias, ProcessGroup* group,
                               torch::Tensor* running_mean, torch::Tensor* running_var, double momentum, double eps) {
    const int64_t c = input.size(1);
    GlobalStats s = Gather(*group, input, eps);
    {
      torch::NoGradGuard no_grad;
      if (running_mean->defined()) running_mean->mul_(1 - momentum).add_(s.mean.to(running_mean->dtype()), momentum);
      if (running_var->defined()) {
        double unbiased = s.count > 1 ? static_cast<double>(s.count) / static_cast<double>(s.count - 1) : 1.0;
        running_var->mul_(1 - momentum).add_((s.var * unbiased).to(running_var->dtype()), momentum);
      }
    }
    torch::Tensor xhat = (input.to(torch::kFloat) - s.mean.view({1, c, 1, 1})) * s.invstd.view({1, c, 1, 1});
    torch::Tensor y = xhat;
    if (weight.defined()) y = y * weight.view({1, c, 1, 1}) + bias.view({1, c, 1, 1});
    ctx->save_for_backward({xhat, weight, s.invstd});
    ctx->saved_data["group"] = static_cast<int64_t>(reinterpret_cast<intptr_t>(group));
    ctx->saved_data["count"] = s.count;
    return y.to(input.scalar_type());
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    torch::Tensor xhat = saved[0], weight = saved[1], invstd = saved[2];
    auto* group = reinterpret_cast<ProcessGroup*>(static_cast<intptr_t>(ctx->saved_data["group"].toInt()));
    const double count = static_cast<double>(ctx->saved_data["count"].toInt());
    const int64_t c = xhat.size(1);
    torch::Tensor g = grads[0].to(torch::kFloat);
    // This rank's sums: d bias and d weight (averaged over the ranks later, with every gradient).
    torch::Tensor sum_dy = g.sum({0, 2, 3});
    torch::Tensor sum_dy_xhat = (g * xhat).sum({0, 2, 3});
    // Every rank's sums for the input's gradient (the global mean and variance depend on all inputs).
    torch::Tensor both = torch::cat({sum_dy, sum_dy_xhat});
    std::vector<torch::Tensor> v{both};
    group->AllReduceSum(v, "all-reduce of batch-norm gradients (syncBatchNorm)");
    torch::Tensor mean_dy = both.narrow(0, 0, c) / count;
    torch::Tensor mean_dy_xhat = both.narrow(0, c, c) / count;
    torch::Tensor scale = weight.defined() ? invstd * weight.to(torch::kFloat) : invstd;
    torch::Tensor grad_input = (g - mean_dy.view({1, c, 1, 1}) - xhat * mean_dy_xhat.view({1, c, 1, 1})) * scale.view({1, c, 1, 1});
    torch::Tensor grad_weight = weight.defined() ? sum_dy_xhat.to(weight.scalar_type()) : torch::Tensor();
    torch::Tensor grad_bias = weight.defined() ? sum_dy.to(weight.scalar_type()) : torch::Tensor();
    return {grad_input.to(grads[0].scalar_type()), grad_weight, grad_bias, torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor SyncBatchNorm::Forward(const torch::Tensor& input, const torch::Tensor& weight, const torch::Tensor& bias,
                                     torch::Tensor& running_mean, torch::Tensor& running_var, double momentum, double eps) {
  if (group_->world_size() < 2) {
    return torch::batch_norm(input, weight, bias, running_mean, running_var, true, momentum, eps, at::globalContext().userEnabledCuDNN());
  }
  return SyncBatchNormFunction::apply(input, weight, bias, group_.get(), &running_mean, &running_var, momentum, eps);
}

int64_t SetSyncBatchNorm(torch::nn::Module& net, std::shared_ptr<ProcessGroup> group) {
  std::shared_ptr<BatchNormSync> sync = group ? std::make_shared<SyncBatchNorm>(std::move(group)) : nullptr;
  int64_t n = 0;
  for (auto& m : net.modules()) {
    if (auto* bn = m->as<BatchNorm2dImpl>()) {
      bn->set_sync(sync);
      ++n;
    }
  }
  return n;
}

}  // namespace dist
}  // namespace segtorch
