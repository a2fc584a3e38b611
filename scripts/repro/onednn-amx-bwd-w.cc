// Reproduces, without segtorch, a heap corruption in libtorch 2.15's oneDNN (3.13.3) on CPUs with
// AMX: the bf16 weight gradient (brgconv_bwd_w:avx10_1_512_amx) of a 1x1 convolution 4096 -> 3
// under CPU autocast, with 2 threads. Build against a libtorch 2.x (LT = its torch/ folder):
//   g++ -O2 -std=gnu++20 -I$LT/include -I$LT/include/torch/csrc/api/include onednn-amx-bwd-w.cc \
//       -o repro -L$LT/lib -Wl,--no-as-needed -ltorch_cpu -lc10 -Wl,-rpath,$LT/lib
//   OMP_NUM_THREADS=2 ./repro              # aborts: "corrupted double-linked list" or similar
//   ONEDNN_MAX_CPU_ISA=AVX10_1_512 OMP_NUM_THREADS=2 ./repro   # completes
// (libtorch 1.13 and fp32 are not affected; 2048 input channels or >= 16 outputs are not either, nor is
// the same convolution without a bias: the corruption comes with the bias gradient. Any kernel size and
// dilation crashes alike: 2049-8192 inputs, 1-15 outputs, 3x3 and 7x7, NCHW and channels-last, 2 and
// 4 threads; 1 thread completes. segtorch adds such a layer's bias after the convolution in training,
// blocks/conv2d.cc TrainingSplitsBias.)
#include <ATen/autocast_mode.h>
#include <torch/torch.h>

#include <iostream>

int main() {
  torch::manual_seed(0);
  torch::nn::Conv2d wide(torch::nn::Conv2dOptions(512, 4096, 1));
  torch::nn::Conv2d classifier(torch::nn::Conv2dOptions(4096, 3, 1));
  for (int it = 0; it < 3; ++it) {
    auto x = torch::randn({2, 512, 8, 8}, torch::requires_grad());
    at::autocast::set_autocast_enabled(at::kCPU, true);
    at::autocast::set_autocast_dtype(at::kCPU, at::kBFloat16);
    at::autocast::increment_nesting();
    auto y = classifier(torch::relu(wide(x)));
    at::autocast::decrement_nesting();
    at::autocast::clear_cache();
    at::autocast::set_autocast_enabled(at::kCPU, false);
    auto loss = y.to(torch::kFloat).pow(2).mean();
    loss.backward();
    std::cout << "iteration " << it << " loss " << loss.item<float>() << std::endl;
  }
  return 0;
}
