// The element-wise Adam / AdamW update of train/optimizer.cc's fused step, on plain float arrays:
// compiled for AVX-512, AVX2 and baseline x86-64 and chosen at load time by the CPU (GCC's
// target_clones; one baseline version elsewhere), so that the prebuilt addon uses the wide
// registers the CPU has, as ATen's own kernels do.
#pragma once
#include <cstdint>

namespace segtorch {

struct AdamScalars {
  float beta1, one_minus_beta1, beta2, one_minus_beta2;
  float sqrt_bias_correction2, eps, neg_step_size;
  // 0: none; 1: L2 (Adam: grad + wd * p); 2: decoupled (AdamW: p * (1 - lr * wd)).
  int decay;
  float decay_factor;  // wd (L2) or 1 - lr * wd (decoupled)
};

// Elements [0, n) of p, g, m (exp_avg), v (exp_avg_sq): p, m, v updated in place.
void AdamUpdate(float* p, const float* g, float* m, float* v, int64_t n, const AdamScalars& s);

}  // namespace segtorch
