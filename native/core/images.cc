#include "core/images.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <vector>

namespace segtorch {

at::Tensor NormalizeBytes(const at::Tensor& images, const at::Tensor& mean, const at::Tensor& std, at::MemoryFormat format) {
  TORCH_CHECK(images.dim() == 4 && images.scalar_type() == at::kByte && images.is_cpu(), "NormalizeBytes: uint8 [N, C, H, W] CPU images");
  const int64_t n = images.size(0), c = images.size(1), h = images.size(2), w = images.size(3);
  const at::Tensor m = mean.to(at::kFloat).cpu().contiguous().view(-1), s = std.to(at::kFloat).cpu().contiguous().view(-1);
  TORCH_CHECK(m.numel() == c && s.numel() == c, "NormalizeBytes: one mean and std per channel");
  // The 256 values of each channel, as ATen's chain computes them: float(u) / 255, minus the mean, over the std.
  std::vector<float> table(static_cast<size_t>(256 * c));
  for (int64_t ch = 0; ch < c; ++ch) {
    const float mc = m.data_ptr<float>()[ch], sc = s.data_ptr<float>()[ch];
    for (int u = 0; u < 256; ++u) table[static_cast<size_t>(ch * 256 + u)] = (static_cast<float>(u) / 255.0f - mc) / sc;
  }
  const at::Tensor in = images.contiguous();
  at::Tensor out = at::empty({n, c, h, w}, images.options().dtype(at::kFloat).memory_format(format));
  const bool cl = format == at::MemoryFormat::ChannelsLast;
  const uint8_t* src = in.data_ptr<uint8_t>();
  float* dst = out.data_ptr<float>();
  const float* lut = table.data();
  // One task per image row (all channels): read plane by plane, written in the output's layout.
  at::parallel_for(0, n * h, std::max<int64_t>(1, 32768 / std::max<int64_t>(1, c * w)), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t i = r / h, y = r % h;
      for (int64_t ch = 0; ch < c; ++ch) {
        const uint8_t* p = src + ((i * c + ch) * h + y) * w;
        const float* t = lut + ch * 256;
        if (cl) {
          float* q = dst + r * w * c + ch;
          for (int64_t x = 0; x < w; ++x) q[x * c] = t[p[x]];
        } else {
          float* q = dst + ((i * c + ch) * h + y) * w;
          for (int64_t x = 0; x < w; ++x) q[x] = t[p[x]];
        }
      }
    }
  });
  return out;
}

}  // namespace segtorch
