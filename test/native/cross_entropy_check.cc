// The fused softmax cross-entropy (train/losses.cc SoftmaxCrossEntropySum, its loops in
// train/cross_entropy_kernel.cc) against F::cross_entropy in float64 on the same values: the summed loss
// and the logits' gradient, for float32 and bfloat16 logits, channels-last, NCHW and a strided view,
// class weights, label smoothing, ignored pixels, one class, a single pixel, shapes whose pixels do not
// fill a block or a part; NaN and infinite scores give what F::cross_entropy gives (NaN loss, NaN
// gradient) and a label out of range a segtorch RangeError. With the parallel loops (compiled with
// -fopenmp), the loss is the same at 1 and 2 threads. Built and run under AddressSanitizer +
// UndefinedBehaviorSanitizer by scripts/sanitize.sh (test/losses.test.ts checks the loss values
// through the addon against PyTorch's).
// Exit status 0: losses within 1e-5 relative of float64 (bf16: of float64 on the bf16 values),
// gradients within 1e-5 of their scale (bf16: within half a bf16 ulp of the float64 gradient, plus 1e-5).
#include <torch/torch.h>

#include <cmath>
#include <iostream>

#include "base/errors.h"
#include "train/losses.h"
using namespace segtorch;
namespace F = torch::nn::functional;

int fails = 0, cases = 0;

void Expect(bool ok, const std::string& what) {
  ++cases;
  if (!ok) {
    std::cout << "FAIL " << what << "\n";
    ++fails;
  }
}

// logits: any layout / dtype, float values; returns {loss, gradient (double, NCHW)}.
std::pair<double, at::Tensor> Fused(const at::Tensor& logits, const at::Tensor& labels, const at::Tensor& w, int64_t ignore, double e) {
  auto z = logits.detach().clone(at::MemoryFormat::Preserve).requires_grad_();
  auto view = z;
  auto loss = SoftmaxCrossEntropySum(view, labels, w, ignore, e);
  loss.backward();
  return {loss.item<double>(), z.grad().to(at::kDouble).contiguous()};
}

std::pair<double, at::Tensor> Reference(const at::Tensor& logits, const at::Tensor& labels, const at::Tensor& w, int64_t ignore, double e) {
  auto z = logits.detach().to(at::kDouble).contiguous().requires_grad_();
  auto opts = F::CrossEntropyFuncOptions().ignore_index(ignore).reduction(torch::kSum).label_smoothing(e);
  if (w.defined()) opts.weight(w.to(at::kDouble));
  auto loss = F::cross_entropy(z, labels, opts);
  loss.backward();
  return {loss.item<double>(), z.grad()};
}

void Compare(const std::string& name, const at::Tensor& logits, const at::Tensor& labels, const at::Tensor& w, int64_t ignore, double e) {
  const auto ref = Reference(logits, labels, w, ignore, e);
  const auto got = Fused(logits, labels, w, ignore, e);
  const bool bf16 = logits.scalar_type() == at::kBFloat16;
  const double lerr = std::abs(got.first - ref.first), lscale = std::max(1.0, std::abs(ref.first));
  Expect(lerr <= 1e-5 * lscale, name + ": loss " + std::to_string(got.first) + " vs " + std::to_string(ref.first));
  // At least 0.1: a gradient that cancels to 0 (one class) is compared to 1e-6, float32's rounding of its terms.
  const double gscale = std::max(0.1, ref.second.abs().max().item<double>());
  // bf16: the float64 gradient rounded to bf16 differs from it by up to half an ulp of each element.
  const at::Tensor allowed = bf16 ? ref.second.abs() * (1.0 / 256) + 1e-5 * gscale : at::full_like(ref.second, 1e-5 * gscale);
  const at::Tensor over = (got.second - ref.second).abs() - allowed;
  const double worst = over.max().item<double>();
  Expect(got.second.sizes() == ref.second.sizes() && worst <= 0,
         name + ": gradient off by " + std::to_string(worst) + " beyond the allowance (scale " + std::to_string(gscale) + ")");
  // The gradient comes back in the logits' layout.
  Expect(got.second.defined(), name + ": no gradient");
}

int main() {
  at::manual_seed(0);
  at::set_num_threads(2);
  const auto cl = at::MemoryFormat::ChannelsLast;
  const std::vector<std::vector<int64_t>> shapes = {{2, 4, 6, 7}, {1, 1, 3, 3}, {1, 5, 1, 1}, {3, 21, 33, 31}, {2, 19, 64, 65}, {1, 150, 9, 11}};
  for (const auto& sh : shapes) {
    const int64_t n = sh[0], c = sh[1], h = sh[2], wd = sh[3];
    const at::Tensor base = at::randn(sh) * 3;
    at::Tensor labels = at::randint(0, c, {n, h, wd}, at::kLong);
    labels.masked_fill_(at::rand({n, h, wd}) < 0.2, 255);  // ignored pixels
    const at::Tensor weights = at::rand({c}) + 0.25;
    for (auto type : {at::kFloat, at::kBFloat16}) {
      for (int layout = 0; layout < 3; ++layout) {
        at::Tensor z = base.to(type);
        if (layout == 1) z = z.contiguous(cl);
        if (layout == 2) z = at::cat({z, z}, 3).slice(3, 0, wd);  // strided: copied inside
        for (int variant = 0; variant < 4; ++variant) {
          const at::Tensor w = variant % 2 ? weights : at::Tensor();
          const double e = variant >= 2 ? 0.1 : 0.0;
          Compare(c10::str(sh, " ", type, " layout ", layout, " weights ", variant % 2, " smoothing ", e), z, labels, w, 255, e);
        }
      }
    }
    // The gradient's layout follows the logits'.
    auto z = base.contiguous(cl).requires_grad_();
    SoftmaxCrossEntropySum(z, labels, at::Tensor(), 255, 0.0).backward();
    Expect(z.grad().is_contiguous(cl), c10::str(sh, ": channels-last logits, channels-last gradient"));
  }

  // Every pixel ignored: loss 0, gradient 0.
  {
    const at::Tensor z = at::randn({2, 3, 4, 5});
    Compare("all ignored", z, at::full({2, 4, 5}, -100, at::kLong), at::Tensor(), -100, 0.0);
    Compare("all ignored, smoothing", z.contiguous(cl), at::full({2, 4, 5}, -100, at::kLong), at::Tensor(), -100, 0.2);
  }

  // Large and very negative scores (no overflow; exp underflows to 0 as in float64).
  {
    at::Tensor z = at::randn({1, 6, 5, 5}) * 40;
    z.select(1, 2).fill_(-1e30);
    Compare("extreme scores", z, at::randint(0, 6, {1, 5, 5}, at::kLong), at::Tensor(), 255, 0.0);
    Compare("extreme scores, channels-last", z.contiguous(cl), at::randint(0, 6, {1, 5, 5}, at::kLong), at::Tensor(), 255, 0.0);
  }

  // NaN / +inf scores: a NaN loss and NaN gradients at that pixel, as F::cross_entropy; other pixels exact.
  for (int layout = 0; layout < 2; ++layout) {
    for (float bad : {std::nanf(""), INFINITY}) {
      at::Tensor z = at::randn({1, 4, 3, 3});
      z[0][1][1][2] = bad;
      if (layout == 1) z = z.contiguous(cl);
      const at::Tensor labels = at::zeros({1, 3, 3}, at::kLong);
      const auto got = Fused(z, labels, at::Tensor(), 255, 0.0);
      Expect(std::isnan(got.first), c10::str("score ", bad, " layout ", layout, ": loss NaN, got ", got.first));
      const at::Tensor g = got.second;
      Expect(g.select(2, 1).select(2, 2).isnan().all().item<bool>(), c10::str("score ", bad, " layout ", layout, ": NaN gradient there"));
      Expect(!g.select(2, 0).isnan().any().item<bool>(), c10::str("score ", bad, " layout ", layout, ": finite gradient elsewhere"));
    }
  }

  // A label out of range: a RangeError naming it (and nothing read out of bounds: the sanitizers).
  for (int64_t badlabel : {4, -1, 1000000}) {
    at::Tensor labels = at::zeros({1, 3, 3}, at::kLong);
    labels[0][2][1] = badlabel;
    bool threw = false;
    try {
      SoftmaxCrossEntropySum(at::randn({1, 4, 3, 3}).contiguous(cl), labels, at::Tensor(), 255, 0.0);
    } catch (const UserError& e) {
      threw = e.kind() == ErrorKind::kRangeError && std::string(e.what()).find("received " + std::to_string(badlabel)) != std::string::npos;
    } catch (const std::exception& e) {
      std::cout << "unexpected: " << e.what() << "\n";
    }
    Expect(threw, "label " + std::to_string(badlabel) + ": a RangeError");
  }

  // The same loss at 1 and 2 threads (parts added in order), and over several parts.
  {
    const at::Tensor z = at::randn({2, 21, 97, 103}).contiguous(cl);
    const at::Tensor labels = at::randint(0, 21, {2, 97, 103}, at::kLong);
    at::set_num_threads(1);
    const double one = SoftmaxCrossEntropySum(z, labels, at::Tensor(), 255, 0.1).item<double>();
    at::set_num_threads(2);
    const double two = SoftmaxCrossEntropySum(z, labels, at::Tensor(), 255, 0.1).item<double>();
    Expect(one == two, c10::str("threads: ", one, " at 1, ", two, " at 2"));
  }

  std::cout << (fails ? "FAILED " : "OK ") << fails << " of " << cases << "\n";
  return fails ? 1 : 0;
}
