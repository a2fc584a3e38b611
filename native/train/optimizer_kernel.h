// The element-wise Adam / AdamW and SGD updates of train/optimizer.cc's fused steps, on plain float
// arrays: compiled for AVX-512, AVX2 and baseline x86-64 and chosen at load time by the CPU (GCC's
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
  // Every gradient is read as g * grad_scale: clipping's coefficient (1: none, exact).
  float grad_scale = 1;
};

// Elements [0, n) of p, g, m (exp_avg), v (exp_avg_sq): p, m, v updated in place.
void AdamUpdate(float* p, const float* g, float* m, float* v, int64_t n, const AdamScalars& s);

struct SgdScalars {
  float grad_scale = 1;    // as AdamScalars::grad_scale
  float weight_decay = 0;  // L2: grad + wd * p (0: none)
  float momentum = 0;      // 0: no buffer
  float neg_lr = 0;
  bool nesterov = false;
  // The buffer's first use: buf = the gradient (libtorch clones it), not buf * momentum + gradient.
  bool first = false;
};

// Elements [0, n) of p, g and buf (the momentum buffer; unused without momentum): p and buf updated
// in place.
void SgdUpdate(float* p, const float* g, float* buf, int64_t n, const SgdScalars& s);

// The sum of squares of x[0, n), in float over 16 lanes (a square or a sum beyond float's range: inf;
// a NaN: NaN), the lanes added in double: gradient clipping's norm in one read at memory speed.
double SumOfSquares(const float* x, int64_t n);

}  // namespace segtorch
