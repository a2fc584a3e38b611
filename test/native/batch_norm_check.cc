// BatchNorm2dImpl::ForwardAct's fused training node (blocks/batch_norm.cc, its loops in
// blocks/batch_norm_kernel.cc) against the float64 batch norm + addition + ReLU: every output, gradient
// (input, weight, bias, addend) and running statistic, for shapes from 1 x 1 x 3 x 3 and two values per
// channel to 4 x 96 x 33 x 31, with the parallel loops (compiled with -fopenmp). Built and run under
// AddressSanitizer + UndefinedBehaviorSanitizer by scripts/sanitize.sh (test/batchnorm.test.ts checks the
// same arithmetic through the addon). ReLU's mask can flip where the output is within rounding of 0, so
// no gradient comes back there.
// Exit status 0: every case within 1e-5 of its scale or 4x libtorch's own float32 error.
#include <torch/torch.h>

#include <iostream>

#include "blocks/batch_norm.h"
using namespace segtorch;

int main() {
  at::manual_seed(0);
  at::set_num_threads(2);
  int fails = 0, cases = 0;
  const std::vector<std::vector<int64_t>> shapes = {{2, 64, 20, 20}, {3, 17, 1, 1}, {1, 5, 1, 2}, {2, 3, 5, 7},
                                                    {1, 1, 3, 3},   {2, 2048, 3, 3}, {4, 96, 33, 31}};
  for (const auto& sh : shapes) {
    for (int mode = 0; mode < 4; ++mode) {  // BN; + ReLU; + add; + add + ReLU
      const bool relu = mode % 2 == 1, use_add = mode >= 2;
      const auto cl = at::MemoryFormat::ChannelsLast;
      BatchNorm2d bn(sh[1]);
      bn->train();
      {
        torch::NoGradGuard no_grad;
        bn->weight.uniform_(0.5, 1.5);
        bn->bias.uniform_(-0.5, 0.5);
      }
      const auto x0 = (at::randn(sh) * 3 + 2).contiguous(cl);
      const auto add0 = at::randn(sh).contiguous(cl);
      // Where the pre-ReLU value is within 1e-3 of 0 no gradient comes back.
      auto dy = at::randn(sh).contiguous(cl);
      if (relu) {
        torch::NoGradGuard no_grad;
        auto z = at::batch_norm(x0.to(at::kDouble), bn->weight.to(at::kDouble), bn->bias.to(at::kDouble), {}, {}, true, 0.1, 1e-5, false);
        if (use_add) z = z + add0.to(at::kDouble);
        dy = dy.masked_fill(z.abs() < 1e-3, 0).contiguous(cl);
      }
      auto run = [&](at::ScalarType t, bool fused) {
        auto x = x0.to(t).clone().requires_grad_();
        auto a = add0.to(t).clone().requires_grad_();
        auto w = bn->weight.detach().to(t).clone().requires_grad_();
        auto b = bn->bias.detach().to(t).clone().requires_grad_();
        auto rm = at::zeros({sh[1]}, t), rv = at::ones({sh[1]}, t);
        at::Tensor y;
        if (fused) {
          bn->weight.mutable_grad() = at::Tensor();
          bn->bias.mutable_grad() = at::Tensor();
          {
            torch::NoGradGuard no_grad;
            bn->running_mean.zero_();
            bn->running_var.fill_(1);
          }
          y = bn->ForwardAct(x, relu, use_add ? a : at::Tensor());
          if (y.grad_fn() == nullptr || y.grad_fn()->name().find("BatchNormActTrain") == std::string::npos) {
            std::cout << "the fused node did not run\n";
            ++fails;
          }
          w = bn->weight;
          b = bn->bias;
          rm = bn->running_mean;
          rv = bn->running_var;
        } else {
          y = at::batch_norm(x, w, b, rm, rv, true, 0.1, 1e-5, false);
          if (use_add) y = y + a;
          if (relu) y = y.relu();
        }
        y.backward(dy.to(t));
        std::vector<at::Tensor> out{y.detach(), x.grad(), w.grad(), b.grad(), rm.detach(), rv.detach()};
        if (use_add) out.push_back(a.grad());
        for (auto& o : out) o = o.to(at::kDouble);
        return out;
      };
      const auto ref = run(at::kDouble, false), fused = run(at::kFloat, true), plain = run(at::kFloat, false);
      const char* names[] = {"y", "dx", "dweight", "dbias", "running mean", "running var", "dadd"};
      for (size_t i = 0; i < ref.size(); ++i) {
        const double scale = ref[i].abs().max().item<double>();
        const double ef = (fused[i] - ref[i]).abs().max().item<double>(), ep = (plain[i] - ref[i]).abs().max().item<double>();
        ++cases;
        if (!(ef <= std::max(1e-5 * scale, 4 * ep))) {
          std::cout << c10::str(sh) << " mode " << mode << " " << names[i] << ": error " << ef << " of " << scale << " (libtorch's " << ep
                    << ")\n";
          ++fails;
        }
      }
    }
  }
  std::cout << (fails ? "FAILED " : "OK ") << fails << " of " << cases << "\n";
  return fails ? 1 : 0;
}
