#pragma once

#include <cstdlib>
#include <cstring>

namespace segtorch {

// The measurement switches (SEGTORCH_WINOGRAD_FP32=0, SEGTORCH_PREPACK=0, ...): "0" turns a switch
// off, "1" on; unset or anything else leaves it at `fallback`. Read once by each caller (a static).
inline bool EnvSwitch(const char* name, bool fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr) return fallback;
  if (std::strcmp(v, "0") == 0) return false;
  if (std::strcmp(v, "1") == 0) return true;
  return fallback;
}

// A whole decimal number from the environment within [lo, hi]; `fallback` when unset, not a number
// or out of range.
inline long EnvInteger(const char* name, long fallback, long lo, long hi) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  const long n = std::strtol(v, &end, 10);
  return *end != '\0' || n < lo || n > hi ? fallback : n;
}

}  // namespace segtorch
