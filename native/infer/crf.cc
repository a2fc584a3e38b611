#include "infer/crf.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "base/errors.h"
#include "infer/permutohedral.h"

namespace segtorch {

namespace {

std::string Num(double v) {
  std::string s = std::to_string(v);
  s.erase(s.find_last_not_of('0') + 1);
  if (!s.empty() && s.back() == '.') s.pop_back();
  return s;
}

void Positive(const char* name, double v) {
  if (!(v > 0) || !std::isfinite(v)) ThrowRange(std::string("Expected a finite number > 0 for crf.") + name + " but received " + Num(v));
}

void NonNegative(const char* name, double v) {
  if (!(v >= 0) || !std::isfinite(v)) ThrowRange(std::string("Expected a finite number >= 0 for crf.") + name + " but received " + Num(v));
}

// One pairwise term: the lattice over its features and the symmetric normalisation 1/sqrt(K 1).
struct Kernel {
  std::unique_ptr<PermutohedralLattice> lattice;
  std::vector<float> norm;
  float compat = 0;
};

Kernel MakeKernel(const std::vector<float>& features, int64_t n, int d, double compat) {
  Kernel k;
  k.compat = static_cast<float>(compat);
  k.lattice = std::make_unique<PermutohedralLattice>(features.data(), n, d);
  std::vector<float> ones(static_cast<size_t>(n), 1.0f);
  k.norm.resize(static_cast<size_t>(n));
  k.lattice->Filter(ones.data(), k.norm.data(), 1);
  for (auto& v : k.norm) v = 1.0f / std::sqrt(v + 1e-20f);
  return k;
}

// Softmax over the K values of each row of x [n, K] (contiguous), in place. ATen's softmax over a
// short inner dimension is slow; here the row max and sum are plain loops and exp is ATen's
// vectorised kernel.
void SoftmaxRows(at::Tensor& x) {
  const int64_t n = x.size(0), K = x.size(1);
  float* p = x.data_ptr<float>();
  at::parallel_for(0, n, 8192, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      float* r = p + i * K;
      float m = r[0];
      for (int64_t c = 1; c < K; ++c) m = std::max(m, r[c]);
      for (int64_t c = 0; c < K; ++c) r[c] -= m;
    }
  });
  x.exp_();
  at::parallel_for(0, n, 8192, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      float* r = p + i * K;
      float s = 0;
      for (int64_t c = 0; c < K; ++c) s += r[c];
      const float inv = 1.0f / s;
      for (int64_t c = 0; c < K; ++c) r[c] *= inv;
    }
  });
}

}  // namespace

void CheckCrfOptions(const CrfOptions& o) {
  Positive("gaussian.sxy", o.gaussian_sxy);
  NonNegative("gaussian.compat", o.gaussian_compat);
  Positive("bilateral.sxy", o.bilateral_sxy);
  Positive("bilateral.srgb", o.bilateral_srgb);
  NonNegative("bilateral.compat", o.bilateral_compat);
  if (o.iterations < 1 || o.iterations > 1000) {
    ThrowRange("Expected an integer between 1 and 1000 for crf.iterations but received " + std::to_string(o.iterations));
  }
}

at::Tensor DenseCrf(const at::Tensor& image, const at::Tensor& probs, const CrfOptions& o) {
  CheckCrfOptions(o);
  if (image.dim() != 3 || probs.dim() != 3) ThrowRange("Expected an image [C, H, W] and probabilities [K, H, W] for the CRF");
  if (image.size(1) != probs.size(1) || image.size(2) != probs.size(2)) {
    ThrowRange("Expected the image and the probabilities to have the same height and width for the CRF but received image [" +
               std::to_string(image.size(1)) + ", " + std::to_string(image.size(2)) + "] and probabilities [" +
               std::to_string(probs.size(1)) + ", " + std::to_string(probs.size(2)) + "]");
  }
  const int64_t C = image.size(0), K = probs.size(0), H = probs.size(1), W = probs.size(2), n = H * W;
  if (C < 1 || K < 1 || n < 1) ThrowRange("Expected a non-empty image and at least one class for the CRF");
  if (C > 16) ThrowRange("Expected at most 16 image channels for the CRF but received " + std::to_string(C));
  // Pixel-major layouts: [n, K] probabilities, [n, C] colours.
  at::Tensor p = probs.to(at::kCPU, at::kFloat).permute({1, 2, 0}).contiguous().view({n, K});
  at::Tensor im = image.to(at::kCPU, at::kFloat).permute({1, 2, 0}).contiguous();
  if (!at::isfinite(im).all().item<bool>()) ThrowRange("Expected finite image values for the CRF but they contain NaN or Inf");
  // Lattice coordinates are 32-bit integers: features (pixels / sxy, colours / srgb) must stay far
  // below 2^31 / (d+1).
  const double colour_max = im.numel() ? im.abs().max().item<double>() : 0.0;
  const double feature_max = std::max({static_cast<double>(std::max(H, W)) / std::min(o.gaussian_sxy, o.bilateral_sxy),
                                       colour_max / o.bilateral_srgb});
  if (feature_max > 1e7) {
    ThrowRange("Expected crf sxy and srgb large enough for the image (pixel positions / sxy and colours / srgb up to 1e7) but they reach " +
               Num(feature_max));
  }
  const float* ip = im.data_ptr<float>();

  std::vector<Kernel> kernels;
  if (o.gaussian_compat > 0) {
    std::vector<float> f(static_cast<size_t>(n * 2));
    const float s = static_cast<float>(1.0 / o.gaussian_sxy);
    for (int64_t y = 0; y < H; ++y) {
      for (int64_t x = 0; x < W; ++x) {
        f[(y * W + x) * 2] = x * s;
        f[(y * W + x) * 2 + 1] = y * s;
      }
    }
    kernels.push_back(MakeKernel(f, n, 2, o.gaussian_compat));
  }
  if (o.bilateral_compat > 0) {
    const int d = static_cast<int>(2 + C);
    std::vector<float> f(static_cast<size_t>(n * d));
    const float s = static_cast<float>(1.0 / o.bilateral_sxy), r = static_cast<float>(1.0 / o.bilateral_srgb);
    for (int64_t y = 0; y < H; ++y) {
      for (int64_t x = 0; x < W; ++x) {
        int64_t i = y * W + x;
        f[i * d] = x * s;
        f[i * d + 1] = y * s;
        for (int64_t c = 0; c < C; ++c) f[i * d + 2 + c] = ip[i * C + c] * r;
      }
    }
    kernels.push_back(MakeKernel(f, n, d, o.bilateral_compat));
  }

  // Unary -log(p) (clamped); Q starts as softmax(-unary), i.e. the normalised probabilities. The
  // per-pixel arithmetic uses ATen's vectorised kernels; the filtering is the lattice's.
  const at::Tensor neg_unary = p.clamp_min(1e-5f).log_();  // [n, K], -unary
  // NaN and +Inf survive the clamp and the log; a sum finds them without another full-size buffer.
  if (!std::isfinite(neg_unary.sum().item<double>())) ThrowRange("Expected finite probabilities for the CRF but they contain NaN or Inf");
  at::Tensor q = neg_unary.clone();
  SoftmaxRows(q);
  std::vector<std::vector<float>> weights;  // compat / sqrt(D_i)
  for (const Kernel& k : kernels) {
    weights.emplace_back(k.norm);
    for (float& w : weights.back()) w *= k.compat;
  }

  // Mean field with the Potts model: Q_i(l) ~ exp(-U_i(l) + sum_m w_m sum_j k_m(i,j) Q_j(l)), the
  // label-independent part of the Potts energy cancelling in the normalisation. The symmetric
  // normalisation and the weights are fused into the lattice's splat and slice. Buffers are
  // allocated once: fresh multi-megabyte allocations each iteration cost more in page faults than
  // the arithmetic.
  at::Tensor msg = at::empty_like(q);
  for (int64_t it = 0; it < o.iterations; ++it) {
    msg.copy_(neg_unary);
    for (size_t m = 0; m < kernels.size(); ++m) {
      kernels[m].lattice->Filter(q.data_ptr<float>(), msg.data_ptr<float>(), static_cast<int>(K), kernels[m].norm.data(),
                                 weights[m].data(), /*accumulate=*/true);
    }
    SoftmaxRows(msg);
    std::swap(q, msg);
  }
  return q.view({H, W, K}).permute({2, 0, 1}).contiguous();
}

at::Tensor DenseCrfBatch(const at::Tensor& images, const at::Tensor& probs, const CrfOptions& o) {
  if (images.dim() != 4 || probs.dim() != 4 || images.size(0) != probs.size(0)) {
    ThrowRange("Expected images [N, C, H, W] and probabilities [N, K, H, W] for the CRF");
  }
  at::Tensor out = at::empty({probs.size(0), probs.size(1), probs.size(2), probs.size(3)}, at::TensorOptions().dtype(at::kFloat));
  for (int64_t i = 0; i < probs.size(0); ++i) out[i].copy_(DenseCrf(images[i], probs[i], o));
  return out.to(probs.device());
}

}  // namespace segtorch
