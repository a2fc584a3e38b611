// bfloat16 as its 16 bits, for the plain-C++ kernels (no libtorch header there): widening to float,
// and ATen's float -> bfloat16 conversion.
#pragma once
#include <cstdint>
#include <cstring>

namespace segtorch {

inline float BFloat16BitsToFloat(uint16_t b) {
  uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// Round to nearest even, NaN kept a (quiet) NaN: what ATen's float -> bfloat16 conversion gives.
inline uint16_t FloatToBFloat16Bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  const uint32_t rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
  return f != f ? static_cast<uint16_t>(0x7FC0u) : static_cast<uint16_t>(rounded);
}

// A float32 or bfloat16 (its 16 bits) element read as float, and a float written as either (bfloat16 rounded once,
// to nearest even): for the kernels' templates over both types.
inline float LoadFloat(float v) { return v; }
inline float LoadFloat(uint16_t v) { return BFloat16BitsToFloat(v); }
inline void StoreFloat(float v, float* out) { *out = v; }
inline void StoreFloat(float v, uint16_t* out) { *out = FloatToBFloat16Bits(v); }

}  // namespace segtorch
