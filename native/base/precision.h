// The numeric precision a forward pass runs in: parsed once from its name at the boundary
// (node/options.cc), an enum below it.
#pragma once
#include <c10/core/ScalarType.h>

#include <string>

#include "base/errors.h"

namespace segtorch {

enum class Precision { kFp32, kBf16, kFp16 };  // fp16: CUDA only (autocast, dynamic loss scaler)

inline const char* PrecisionName(Precision p) {
  switch (p) {
    case Precision::kBf16: return "bf16";
    case Precision::kFp16: return "fp16";
    default: return "fp32";
  }
}

// 'fp32' | 'bf16' | 'fp16'; anything else is a RangeError naming `what`.
inline Precision ParsePrecision(const std::string& name, const std::string& what) {
  if (name == "fp32") return Precision::kFp32;
  if (name == "bf16") return Precision::kBf16;
  if (name == "fp16") return Precision::kFp16;
  ThrowRange("Expected precision 'fp32', 'bf16' or 'fp16' for " + what + " but received '" + name + "'");
}

// The autocast type of a precision (kFloat: no autocast).
inline at::ScalarType AutocastType(Precision p) {
  return p == Precision::kFp16 ? at::kHalf : p == Precision::kBf16 ? at::kBFloat16 : at::kFloat;
}

}  // namespace segtorch
