// bench_pool: segtorch's inference max pooling (native/blocks/max_pool.h) against ATen's max_pool2d on
// the pooling shapes of the zoo's predictions at 512x512, float32 and bfloat16, contiguous and
// channels-last, inside inference mode (what predict runs). Median of 25 calls after 5 warm-up
// calls each, the two alternating.
//   build: cmake --build build --target bench_pool (or build-lt2);  run: bench_pool [--threads N]
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "blocks/max_pool.h"

namespace {

struct Case {
  const char* what;
  int64_t c, h, w, kernel, stride, padding;
};

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 2;
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], "--threads") == 0) threads = std::stoi(argv[i + 1]);
  }
  at::set_num_threads(threads);
  c10::InferenceMode guard;
  const Case cases[] = {
      {"RefineNet CRP at 1/4 (256 ch)", 256, 128, 128, 5, 1, 2},
      {"RefineNet CRP at 1/32 (256 ch)", 256, 16, 16, 5, 1, 2},
      {"ResNet stem (64 ch)", 64, 256, 256, 3, 2, 1},
      {"U-Net / VGG 2x2 (64 ch)", 64, 512, 512, 2, 2, 0},
      {"DeepLab v1 pool1 (64 ch)", 64, 512, 512, 3, 2, 1},
      {"DeepLab v1 pool3 (256 ch)", 256, 129, 129, 3, 2, 1},
  };
  std::printf("%d threads; ms per call, median of 25\n", threads);
  std::printf("| shape | type | layout | ATen ms | segtorch ms | speed-up |\n|---|---|---|---|---|---|\n");
  for (const Case& c : cases) {
    for (at::ScalarType type : {at::kFloat, at::kBFloat16}) {
      for (bool cl : {false, true}) {
        at::Tensor x = at::randn({1, c.c, c.h, c.w}).to(type).contiguous(cl ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous);
        std::vector<double> ours, aten;
        for (int i = 0; i < 30; ++i) {
          auto t0 = std::chrono::steady_clock::now();
          at::Tensor a = at::max_pool2d(x, {c.kernel, c.kernel}, {c.stride, c.stride}, {c.padding, c.padding});
          auto t1 = std::chrono::steady_clock::now();
          at::Tensor b = segtorch::MaxPool2d(x, c.kernel, c.stride, c.padding);
          auto t2 = std::chrono::steady_clock::now();
          if (i == 0 && !at::equal(a, b)) std::printf("MISMATCH %s\n", c.what);
          if (i >= 5) {
            aten.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
            ours.push_back(std::chrono::duration<double, std::milli>(t2 - t1).count());
          }
        }
        std::printf("| %s, %lldx%lld, %lldx%lld stride %lld | %s | %s | %.2f | %.2f | %.2f |\n", c.what, (long long)c.h, (long long)c.w,
                    (long long)c.kernel, (long long)c.kernel, (long long)c.stride, type == at::kFloat ? "float32" : "bfloat16",
                    cl ? "channels-last" : "contiguous", Median(aten), Median(ours), Median(aten) / Median(ours));
      }
    }
  }
  return 0;
}
