// segtorch's bf16 ReLU for predictions (blocks/relu.cc, its loop in blocks/relu_kernel.cc) against ATen's
// relu / relu_: the same values for every one of the 65536 bf16 bit patterns (NaNs of either sign kept NaN,
// -0 and -inf to 0), on contiguous, channels-last and odd-sized tensors, out of place and in place, with the
// parallel loops (compiled with -fopenmp); tensors that need autograd, are float32 or strided go to ATen.
// Built and run under AddressSanitizer + UndefinedBehaviorSanitizer by scripts/sanitize.sh.
// Exit status 0: every case equal (NaN where ATen gives NaN).
#include <torch/torch.h>

#include <iostream>

#include "blocks/relu.h"
using namespace segtorch;

int fails = 0, cases = 0;

void Same(const at::Tensor& got, const at::Tensor& want, const std::string& what) {
  ++cases;
  const at::Tensor g = got.to(at::kFloat), w = want.to(at::kFloat);
  const bool ok = got.sizes() == want.sizes() && got.strides() == want.strides() && got.scalar_type() == want.scalar_type() &&
                  at::equal(g.isnan(), w.isnan()) && at::equal(g.nan_to_num(0), w.nan_to_num(0));
  if (!ok) {
    std::cout << "FAIL " << what << "\n";
    ++fails;
  }
}

int main() {
  at::set_num_threads(2);
  at::manual_seed(0);
  // Every bf16 bit pattern.
  at::Tensor all = at::arange(0, 65536, at::kInt).to(at::kShort).view(at::kBFloat16);
  {
    c10::InferenceMode guard;
    Same(Relu(all), all.relu(), "every bit pattern");
    at::Tensor copy = all.clone();
    at::Tensor same = ReluInPlace(copy);
    Same(copy, all.relu(), "every bit pattern, in place");
    ++cases;
    if (same.data_ptr() != copy.data_ptr()) {
      std::cout << "FAIL in place returned another tensor\n";
      ++fails;
    }
  }
  for (const auto& sh : std::vector<std::vector<int64_t>>{{1, 256, 64, 64}, {2, 3, 5, 7}, {1, 1, 1, 1}, {3, 33, 17, 9}}) {
    const at::Tensor x = (at::randn(sh) * 4).to(at::kBFloat16);
    for (const auto format : {at::MemoryFormat::Contiguous, at::MemoryFormat::ChannelsLast}) {
      const at::Tensor xf = x.contiguous(format);
      torch::NoGradGuard no_grad;
      Same(Relu(xf), xf.relu(), c10::str(sh, " ", format));
      at::Tensor y = xf.clone(format);
      Same(ReluInPlace(y), xf.relu(), c10::str(sh, " ", format, " in place"));
    }
    // Strided (a slice): ATen's path, the same values.
    const at::Tensor sliced = x.slice(3, 0, std::max<int64_t>(1, sh[3] / 2));
    Same(Relu(sliced), sliced.relu(), c10::str(sh, " strided"));
  }
  // Autograd: a tensor that requires grad keeps ATen's relu and its gradient.
  {
    at::Tensor x = at::randn({2, 4, 3, 3}).to(at::kBFloat16).requires_grad_();
    at::Tensor y = Relu(x);
    ++cases;
    if (y.grad_fn() == nullptr) {
      std::cout << "FAIL no autograd node for a tensor that requires grad\n";
      ++fails;
    }
  }
  std::cout << (fails ? "FAILED " : "OK ") << fails << " of " << cases << "\n";
  return fails ? 1 : 0;
}
