#include "blocks/pool_bins.h"

#include <ATen/Parallel.h>
#include <torch/csrc/jit/frontend/tracer.h>

#include <algorithm>

#include "base/env.h"
#include "blocks/pool_bins_kernel.h"
#include "blocks/resize.h"

namespace segtorch {

namespace {

// ATen's adaptive pooling window i of `bins` over n positions: [floor(i n / bins), ceil((i + 1) n / bins)).
int64_t WindowStart(int64_t i, int64_t n, int64_t bins) { return i * n / bins; }
int64_t WindowEnd(int64_t i, int64_t n, int64_t bins) { return ((i + 1) * n + bins - 1) / bins; }

// Every window's start and end over n positions for all the bin counts: the cells' boundaries, sorted.
std::vector<int64_t> CellBounds(int64_t n, const std::vector<int64_t>& bins) {
  std::vector<int64_t> bounds;
  for (int64_t b : bins) {
    for (int64_t i = 0; i < b; ++i) {
      bounds.push_back(WindowStart(i, n, b));
      bounds.push_back(WindowEnd(i, n, b));
    }
  }
  std::sort(bounds.begin(), bounds.end());
  bounds.erase(std::unique(bounds.begin(), bounds.end()), bounds.end());
  return bounds;
}

// [bins, cells]: 1 / (window length) where the cell lies in the window, else 0.
torch::Tensor Means(int64_t n, int64_t bins, const std::vector<int64_t>& bounds) {
  const int64_t cells = static_cast<int64_t>(bounds.size()) - 1;
  torch::Tensor m = at::zeros({bins, cells}, at::kFloat);
  float* p = m.data_ptr<float>();
  for (int64_t i = 0; i < bins; ++i) {
    const int64_t s = WindowStart(i, n, bins), e = WindowEnd(i, n, bins);
    for (int64_t k = 0; k < cells; ++k) {
      if (bounds[k] >= s && bounds[k + 1] <= e) p[i * cells + k] = 1.f / static_cast<float>(e - s);
    }
  }
  return m;
}

}  // namespace

bool PoolBinsApply(const torch::Tensor& x) {
  static const bool enabled = EnvSwitch("SEGTORCH_POOL_BINS", true);
  return enabled && !AsTracedActive() && (c10::InferenceMode::is_enabled() || !at::GradMode::is_enabled()) && !torch::jit::tracer::isTracing() &&
         x.dim() == 4 && x.is_cpu() && (x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16) && x.numel() > 0 &&
         (x.is_contiguous(at::MemoryFormat::ChannelsLast) || x.is_contiguous());
}

torch::Tensor AdaptiveAvgPool(const torch::Tensor& x, int64_t bins) {
  if (bins >= 1 && PoolBinsApply(x)) return AdaptiveAvgPoolBins(x, {bins})[0];
  return at::adaptive_avg_pool2d(x, {bins, bins});
}

std::vector<torch::Tensor> AdaptiveAvgPoolBins(const torch::Tensor& x, const std::vector<int64_t>& bins) {
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const std::vector<int64_t> ys = CellBounds(H, bins), xs = CellBounds(W, bins);
  const int64_t ncy = static_cast<int64_t>(ys.size()) - 1, ncx = static_cast<int64_t>(xs.size()) - 1;
  // The cells' sums [N, ncy, ncx, C].
  torch::Tensor sums = at::empty({N, ncy, ncx, C}, x.options().dtype(at::kFloat).memory_format(at::MemoryFormat::Contiguous));
  float* out = sums.data_ptr<float>();
  const bool bf16 = x.scalar_type() == at::kBFloat16;
  const void* in = x.data_ptr();
  if (x.is_contiguous(at::MemoryFormat::ChannelsLast)) {
    // One row of cells over a block of channels a task: blocks of 64 channels or more, enough of them to give every
    // thread two tasks where the rows of cells are fewer (a 1 x 1 bin: one row).
    const int64_t rows = N * ncy;
    const int64_t blocks = std::max<int64_t>(1, std::min<int64_t>((C + 63) / 64, (2 * at::get_num_threads() + rows - 1) / rows));
    const int64_t block = (C + blocks - 1) / blocks;
    at::parallel_for(0, rows * blocks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) {
        const int64_t r = t / blocks, c0 = (t % blocks) * block, c = std::min(block, C - c0);
        if (c <= 0) continue;
        const int64_t n = r / ncy, i = r % ncy;
        float* dst = out + r * ncx * C + c0;
        const int64_t offset = n * H * W * C + c0;
        if (bf16) {
          CellRowSumsBFloat16(static_cast<const uint16_t*>(in) + offset, dst, W, C, c, ys[i], ys[i + 1], xs.data(), ncx);
        } else {
          CellRowSumsFloat(static_cast<const float*>(in) + offset, dst, W, C, c, ys[i], ys[i + 1], xs.data(), ncx);
        }
      }
    });
  } else {
    // NCHW: one plane a task, each cell's sum written at its channel.
    at::parallel_for(0, N * C, 1, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) {
        float* dst = out + (t / C) * ncy * ncx * C + t % C;
        if (bf16) {
          CellSumsPlaneBFloat16(static_cast<const uint16_t*>(in) + t * H * W, dst, C, W, ys.data(), ncy, xs.data(), ncx);
        } else {
          CellSumsPlaneFloat(static_cast<const float*>(in) + t * H * W, dst, C, W, ys.data(), ncy, xs.data(), ncx);
        }
      }
    });
  }
  // Each bin count's means: rows, then columns, as products with the windows' [bins, cells] weights (in float32,
  // whatever autocast is on).
  c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::DispatchKey::AutocastCPU);
  std::vector<torch::Tensor> pooled;
  for (int64_t b : bins) {
    const torch::Tensor rows = at::matmul(Means(H, b, ys), sums.view({N, ncy, ncx * C}));         // [N, b, ncx C]
    const torch::Tensor both = at::matmul(Means(W, b, xs), rows.view({N * b, ncx, C}));           // [N b, b, C]
    // In x's layout, as ATen's pooling gives it.
    pooled.push_back(both.view({N, b, b, C}).permute({0, 3, 1, 2}).to(x.scalar_type()).contiguous(x.suggest_memory_format()));
  }
  return pooled;
}

}  // namespace segtorch
