// The inner loop of blocks/dropout.cc's training dropout, on plain arrays (no libtorch header): compiled
// for AVX-512, AVX2 and baseline x86-64 and chosen at load time by the CPU (GCC's target_clones, as
// train/optimizer_kernel.cc). Element e of a dense tensor is kept iff DropoutKeeps(seed, e, threshold):
// a counter-based draw (SplitMix64 of seed + e), so that the mask depends on the seed and the element's
// index only, never on the thread that computes it, and the backward pass recomputes it instead of
// storing it.
#pragma once
#include <cstdint>

namespace segtorch {

// 2^32 x the probability of keeping an element, rounded (the threshold DropoutKeeps compares with).
inline uint64_t DropoutThreshold(double keep) {
  const double t = keep * 4294967296.0 + 0.5;
  return t <= 0 ? 0 : t >= 4294967296.0 ? uint64_t{4294967296} : static_cast<uint64_t>(t);
}

// SplitMix64's output function (Steele, Lea and Flood 2014) of seed + (e + 1) x the golden gamma.
inline uint64_t DropoutDraw(uint64_t seed, uint64_t e) {
  uint64_t z = seed + (e + 1) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Whether element e is kept: the draw's low 32 bits, uniform on [0, 2^32), below the threshold.
inline bool DropoutKeeps(uint64_t seed, uint64_t e, uint64_t threshold) { return (DropoutDraw(seed, e) & 0xFFFFFFFFull) < threshold; }

// out[i] = in[i] * scale where element (first + i) is kept, else 0, for i in [0, n): float, and bfloat16
// stored as its 16 bits (computed in float, rounded once to nearest even).
void DropoutApplyFloat(const float* in, float* out, int64_t first, int64_t n, uint64_t seed, uint64_t threshold, float scale);
void DropoutApplyBFloat16(const uint16_t* in, uint16_t* out, int64_t first, int64_t n, uint64_t seed, uint64_t threshold, float scale);

}  // namespace segtorch
