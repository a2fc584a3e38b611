#include "infer/labels.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "base/errors.h"
#include "blocks/linear_taps.h"
#include "infer/labels_kernel.h"

namespace segtorch {

namespace {

template <typename T>
void Run(const at::Tensor& logits, at::Tensor& labels, bool align_corners) {
  const int64_t N = logits.size(0), K = logits.size(1), h = logits.size(2), w = logits.size(3);
  const int64_t H = labels.size(1), W = labels.size(2);
  const int64_t sN = logits.stride(0), sK = logits.stride(1), sY = logits.stride(2), sX = logits.stride(3);
  const T* src = logits.data_ptr<T>();
  int32_t* dst = labels.data_ptr<int32_t>();
  const LinearTaps ty(h, H, align_corners), tx(w, W, align_corners);
  const bool same_w = w == W;
  // Rows of output pixels, each thread a contiguous range: the rows interpolated along x are kept
  // while consecutive output rows need the same input rows (8 output rows per input row at stride 8).
  at::parallel_for(0, N * H, 16, [&](int64_t begin, int64_t end) {
    std::vector<float> rows(2 * static_cast<size_t>(K * W));  // two input rows along x: [2][K][W]
    int64_t held[2] = {-1, -1};                              // n * h + input row in each slot, or -1
    std::vector<float> best(static_cast<size_t>(W));
    // Input row r of image n interpolated along x, into `slot`.
    auto fill = [&](int s, int64_t n, int64_t r) {
      float* out = rows.data() + s * K * W;
      const T* base = src + n * sN + r * sY;
      for (int64_t k = 0; k < K; ++k) {
        const T* line = base + k * sK;
        float* o = out + k * W;
        if (same_w) {
          for (int64_t x = 0; x < W; ++x) o[x] = static_cast<float>(line[x * sX]);
        } else {
          for (int64_t x = 0; x < W; ++x) {
            o[x] = tx.l0[x] * static_cast<float>(line[tx.i0[x] * sX]) + tx.l1[x] * static_cast<float>(line[tx.i1[x] * sX]);
          }
        }
      }
      held[s] = n * h + r;
    };
    for (int64_t i = begin; i < end; ++i) {
      const int64_t n = i / H, y = i % H;
      const int64_t key0 = n * h + ty.i0[y], key1 = n * h + ty.i1[y];
      const float l0 = ty.l0[y], l1 = ty.l1[y];
      const bool one_row = l1 == 0.0f || key1 == key0;
      // Slots: the first row where it is held, else the slot not holding the second row.
      const int s0 = held[0] == key0 ? 0 : held[1] == key0 ? 1 : held[0] == key1 ? 1 : 0;
      if (held[s0] != key0) fill(s0, n, ty.i0[y]);
      if (!one_row && held[1 - s0] != key1) fill(1 - s0, n, ty.i1[y]);
      const float* r0 = rows.data() + s0 * K * W;
      const float* r1 = rows.data() + (1 - s0) * K * W;
      ArgmaxRow(r0, r1, l0, l1, one_row, K, W, best.data(), dst + i * W);
    }
  });
}

}  // namespace

at::Tensor ResizedArgmax(const at::Tensor& logits, int64_t H, int64_t W, bool align_corners) {
  if (logits.dim() != 4 || !logits.device().is_cpu() || logits.size(1) < 1 || logits.size(2) < 1 || logits.size(3) < 1 || H < 1 || W < 1) {
    ThrowRange("Expected CPU logits [N, K, h, w] with K, h, w >= 1 and an output size >= 1");
  }
  at::Tensor labels = at::empty({logits.size(0), H, W}, logits.options().dtype(at::kInt).memory_format(at::MemoryFormat::Contiguous));
  // A resized map is read a few times per output row from its float32 copy (small: the network's
  // resolution); one at the output's size is read once as it is (no float32 copy of it).
  at::Tensor x = logits;
  const bool resized = logits.size(2) != H || logits.size(3) != W;
  if (resized || (x.scalar_type() != at::kFloat && x.scalar_type() != at::kBFloat16)) x = x.to(at::kFloat).contiguous();
  if (x.scalar_type() == at::kBFloat16) {
    Run<at::BFloat16>(x, labels, align_corners);
  } else {
    Run<float>(x, labels, align_corners);
  }
  return labels;
}

bool FusedLabelsEnabled() {
  static const bool enabled = [] {
    const char* v = std::getenv("SEGTORCH_FUSED_LABELS");
    return v == nullptr || std::strcmp(v, "0") != 0;
  }();
  return enabled;
}

}  // namespace segtorch
