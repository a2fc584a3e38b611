// segtorch::WinogradConvolution (blocks/conv2d.h: bf16 Winograd F(2x2, 3x3) with its transforms in
// blocks/winograd_kernel.cc) against at::conv2d on the same bf16-rounded inputs, and
// Winograd4Convolution (fp32 F(4x4, 3x3)) against the float64 convolution: odd sizes down to 1 x 1,
// dilations 1-3, a batch, every activation, with and without the addend, and a NaN input; and training's
// fp32 Winograd (WinogradTrainingGuard) against the float64 convolution's gradients. Built
// and run under AddressSanitizer + UndefinedBehaviorSanitizer by scripts/sanitize.sh (predict runs the
// bf16 path only where libtorch prepacks convolutions, 2.x, so the sanitized 1.13 addon never reaches it;
// the fp32 one on any libtorch, for 'auto' fp32 predictions on a CPU with AVX-512).
// Exit status 0: every bf16 case within 3 % of the output's scale, every fp32 one within 1e-5 of its sums' scale.
#include <torch/torch.h>
#include <iostream>
#include "blocks/conv2d.h"
using namespace segtorch;
int main() {
  at::manual_seed(0);
  int fails = 0;
  for (int64_t d : {1, 2, 3}) {
    for (auto hw : std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {2, 3}, {7, 5}, {13, 17}, {16, 16}}) {
      for (int64_t N : {1, 2}) {
        for (int act = 0; act < 4; ++act) {
          for (bool with_add : {false, true}) {
            const int64_t C = 19, K = 23, H = hw.first, W = hw.second;
            auto x = at::randn({N, C, H, W});
            auto w = at::randn({K, C, 3, 3}) * 0.2;
            auto b = at::randn({K});
            auto add = at::randn({N, K, H, W});
            auto ref = at::conv2d(x.to(at::kBFloat16).to(at::kFloat), w.to(at::kBFloat16).to(at::kFloat), b, {1, 1}, {d, d}, {d, d});
            if (with_add) ref = ref + add.to(at::kBFloat16).to(at::kFloat);
            if (act == 1) ref = ref.relu();
            if (act == 2) ref = ref.clamp(0, 6);
            if (act == 3) ref = at::hardswish(ref);
            auto xb = x.to(at::kBFloat16).contiguous(at::MemoryFormat::ChannelsLast);
            auto kern = WinogradKernel(w.to(at::kBFloat16));
            auto y = WinogradConvolution(xb, kern, b, d, with_add ? add.to(at::kBFloat16) : at::Tensor(), static_cast<Activation>(act));
            double err = (y.to(at::kFloat) - ref).abs().max().item<double>();
            double scale = ref.abs().max().item<double>();
            bool ok = y.sizes() == ref.sizes() && y.is_contiguous(at::MemoryFormat::ChannelsLast) && err <= 0.03 * std::max(1.0, scale);
            if (!ok) { ++fails; std::cout << "FAIL d=" << d << " " << H << "x" << W << " N=" << N << " act=" << act << " add=" << with_add << " err " << err << " scale " << scale << "\n"; }
          }
        }
      }
    }
  }
  // fp32 F(4x4, 3x3) (Winograd4Convolution) against the float64 convolution: 1e-5 of the output's scale.
  for (int64_t d : {1, 2, 3}) {
    for (auto hw : std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {2, 3}, {7, 5}, {13, 17}, {16, 16}}) {
      for (int64_t N : {1, 2}) {
        for (int act = 0; act < 4; ++act) {
          for (bool with_add : {false, true}) {
            // 35 and 21 channels: two full blocks of 16 and a remainder, one block and a remainder.
            const int64_t C = 35, K = 21, H = hw.first, W = hw.second;
            auto x = at::randn({N, C, H, W});
            auto w = at::randn({K, C, 3, 3}) * 0.2;
            auto b = at::randn({K});
            auto add = at::randn({N, K, H, W});
            auto ref = at::conv2d(x.to(at::kDouble), w.to(at::kDouble), b.to(at::kDouble), {1, 1}, {d, d}, {d, d});
            if (with_add) ref = ref + add.to(at::kDouble);
            // The error scales with the sums before the activation (ReLU6 caps the outputs at 6, not the error).
            const double scale = ref.abs().max().item<double>();
            if (act == 1) ref = ref.relu();
            if (act == 2) ref = ref.clamp(0, 6);
            if (act == 3) ref = at::hardswish(ref);
            auto y = Winograd4Convolution(x.contiguous(at::MemoryFormat::ChannelsLast), Winograd4Kernel(w), b, d, with_add ? add : at::Tensor(),
                                          static_cast<Activation>(act));
            double err = (y.to(at::kDouble) - ref).abs().max().item<double>();
            bool ok = y.sizes() == ref.sizes() && y.scalar_type() == at::kFloat && y.is_contiguous(at::MemoryFormat::ChannelsLast) &&
                      err <= 1e-5 * std::max(1.0, scale);
            if (!ok) { ++fails; std::cout << "FAIL fp32 d=" << d << " " << H << "x" << W << " N=" << N << " act=" << act << " add=" << with_add << " err " << err << " scale " << scale << "\n"; }
          }
        }
      }
    }
  }
  {
    // NaN in the input: every output of the direct convolution's 3x3 neighbourhood is NaN, at most those
    // of the tiles whose 6 x 6 windows hold the pixel (row 4: tiles 0 and 1, so 8 x 8 pixels x 4 channels).
    auto x = at::zeros({1, 8, 10, 10});
    x[0][3][4][4] = std::numeric_limits<float>::quiet_NaN();
    auto y = Winograd4Convolution(x.contiguous(at::MemoryFormat::ChannelsLast), Winograd4Kernel(at::ones({4, 8, 3, 3})), at::Tensor(), 1, at::Tensor(), Activation::kReLU);
    auto nan = y.isnan();
    const int64_t n = nan.sum().item<int64_t>();
    const bool near = nan.narrow(2, 3, 3).narrow(3, 3, 3).all().item<bool>();
    std::cout << "fp32: NaN outputs " << n << " (36..256), 3x3 neighbourhood all NaN: " << near << "\n";
    if (n < 36 || n > 256 || !near) ++fails;
  }
  // Training (Conv2dImpl under a WinogradTrainingGuard): the output and the input, weight and bias gradients
  // against the float64 convolution's autograd, with and without bias, dilations 1-3.
  for (int64_t d : {1, 2, 3}) {
    for (bool with_bias : {true, false}) {
      const int64_t N = 2, C = 70, K = 64, S = 8 * d + 3;
      Conv2d conv(torch::nn::Conv2dOptions(C, K, 3).padding(d).dilation(d).bias(with_bias));
      auto x = at::randn({N, C, S, S}).contiguous(at::MemoryFormat::ChannelsLast).requires_grad_(true);
      auto r = at::randn({N, K, S, S});
      torch::Tensor y;
      bool applied = false;
      {
        WinogradTrainingGuard on(true);
        applied = conv->Fp32WinogradTrainingApplies(x);
        y = conv->forward(x);
        (y * r).sum().backward();
      }
      auto xd = x.detach().to(at::kDouble).requires_grad_(true);
      auto wd = conv->weight.detach().to(at::kDouble).requires_grad_(true);
      auto bd = with_bias ? conv->bias.detach().to(at::kDouble).requires_grad_(true) : at::Tensor();
      auto yd = at::conv2d(xd, wd, bd, {1, 1}, {d, d}, {d, d});
      (yd * r.to(at::kDouble)).sum().backward();
      auto rel = [](const at::Tensor& a, const at::Tensor& b) { return (a.to(at::kDouble) - b).abs().max().item<double>() / b.abs().max().item<double>(); };
      const double ey = rel(y, yd), ex = rel(x.grad(), xd.grad()), ew = rel(conv->weight.grad(), wd.grad());
      const double eb = with_bias ? rel(conv->bias.grad(), bd.grad()) : 0.0;
      const bool ok = applied && ey < 2e-5 && ex < 2e-5 && ew < 2e-5 && eb < 2e-5;
      std::cout << (ok ? "" : "FAIL ") << "training d=" << d << " bias=" << with_bias << " applied=" << applied << ": output " << ey << ", input gradient " << ex
                << ", weight " << ew << ", bias " << eb << "\n";
      if (!ok) ++fails;
    }
  }
  // NaN in the input reaches the outputs it touches.
  auto x = at::zeros({1, 8, 6, 6});
  x[0][3][2][2] = std::numeric_limits<float>::quiet_NaN();
  auto y = WinogradConvolution(x.to(at::kBFloat16).contiguous(at::MemoryFormat::ChannelsLast), WinogradKernel(at::ones({4, 8, 3, 3}).to(at::kBFloat16)), at::Tensor(), 1, at::Tensor(), Activation::kReLU);
  auto nan = y.to(at::kFloat).isnan();
  // Every output the direct convolution makes NaN (4 channels x 3 x 3) is NaN; at most the outputs of
  // the tiles whose 4 x 4 windows hold the pixel (4 channels x 4 x 4).
  const int64_t n = nan.sum().item<int64_t>();
  const bool near = nan.narrow(2, 1, 3).narrow(3, 1, 3).all().item<bool>();
  std::cout << "NaN outputs " << n << " (36..64), 3x3 neighbourhood all NaN: " << near << "\n";
  if (n < 36 || n > 64 || !near) ++fails;
  std::cout << (fails ? "FAILED " : "OK ") << fails << "\n";
  return fails ? 1 : 0;
}
