#include "train/optimizer_kernel.h"

#include <cmath>

namespace segtorch {

namespace {
// libtorch's Adam::step in one pass, in its order of operations: (grad + wd * p, or p * (1 - lr * wd)),
// m = m * beta1 + (1 - beta1) * g, v = v * beta2 + (1 - beta2) * g * g,
// p += -(lr / bias_correction1) * m / (sqrt(v) / sqrt(bias_correction2) + eps).
template <int Decay>
inline void Update(float* __restrict p, const float* __restrict g, float* __restrict m, float* __restrict v, int64_t n,
                   const AdamScalars& s) {
  const float b1 = s.beta1, c1 = s.one_minus_beta1, b2 = s.beta2, c2 = s.one_minus_beta2;
  const float sq = s.sqrt_bias_correction2, eps = s.eps, step = s.neg_step_size, f = s.decay_factor;
  const float scale = s.grad_scale;
  for (int64_t i = 0; i < n; ++i) {
    float gi = g[i] * scale;
    float pi = p[i];
    if (Decay == 1) gi = gi + f * pi;
    if (Decay == 2) pi = pi * f;
    float mi = m[i] * b1;
    mi = mi + c1 * gi;
    float vi = v[i] * b2;
    vi = vi + c2 * (gi * gi);
    float denom = std::sqrt(vi) / sq + eps;
    m[i] = mi;
    v[i] = vi;
    p[i] = pi + step * (mi / denom);
  }
}

// libtorch's SGD::step (dampening 0) in one pass, in its order of operations:
// d = grad (+ wd * p); buf = d on first use, else buf * momentum + d; d = buf (nesterov: d + momentum * buf);
// p += -lr * d. Momentum 0: no buffer, p += -lr * d. Mom: 0 none, 1 first use, 2 later.
template <bool Decay, int Mom, bool Nesterov>
inline void Sgd(float* __restrict p, const float* __restrict g, float* __restrict buf, int64_t n, const SgdScalars& s) {
  const float scale = s.grad_scale, wd = s.weight_decay, mom = s.momentum, neg_lr = s.neg_lr;
  for (int64_t i = 0; i < n; ++i) {
    const float pi = p[i];
    float d = g[i] * scale;
    if (Decay) d = d + wd * pi;
    if (Mom != 0) {
      float b = d;
      if (Mom == 2) b = buf[i] * mom + d;
      buf[i] = b;
      d = Nesterov ? d + mom * b : b;
    }
    p[i] = pi + neg_lr * d;
  }
}

template <bool Decay>
inline void SgdMomentum(float* p, const float* g, float* buf, int64_t n, const SgdScalars& s) {
  if (s.momentum == 0) return Sgd<Decay, 0, false>(p, g, buf, n, s);
  if (s.first) return s.nesterov ? Sgd<Decay, 1, true>(p, g, buf, n, s) : Sgd<Decay, 1, false>(p, g, buf, n, s);
  return s.nesterov ? Sgd<Decay, 2, true>(p, g, buf, n, s) : Sgd<Decay, 2, false>(p, g, buf, n, s);
}
}  // namespace

#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && !defined(__clang__)
__attribute__((target_clones("avx512f", "avx2", "default"), flatten))
#endif
void AdamUpdate(float* p, const float* g, float* m, float* v, int64_t n, const AdamScalars& s) {
  if (s.decay == 1) {
    Update<1>(p, g, m, v, n, s);
  } else if (s.decay == 2) {
    Update<2>(p, g, m, v, n, s);
  } else {
    Update<0>(p, g, m, v, n, s);
  }
}

#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && !defined(__clang__)
__attribute__((target_clones("avx512f", "avx2", "default"), flatten))
#endif
void SgdUpdate(float* p, const float* g, float* buf, int64_t n, const SgdScalars& s) {
  if (s.weight_decay != 0) {
    SgdMomentum<true>(p, g, buf, n, s);
  } else {
    SgdMomentum<false>(p, g, buf, n, s);
  }
}

#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && !defined(__clang__)
__attribute__((target_clones("avx512f", "avx2", "default"), flatten))
#endif
double SumOfSquares(const float* __restrict x, int64_t n) {
  constexpr int64_t kLanes = 16;
  float lanes[kLanes] = {};
  const int64_t whole = n - n % kLanes;
  for (int64_t i = 0; i < whole; i += kLanes) {
    for (int64_t k = 0; k < kLanes; ++k) lanes[k] += x[i + k] * x[i + k];
  }
  double total = 0.0;
  for (int64_t k = 0; k < kLanes; ++k) total += lanes[k];
  for (int64_t i = whole; i < n; ++i) total += static_cast<double>(x[i] * x[i]);
  return total;
}

}  // namespace segtorch
