// Per-iteration learning-rate schedules with linear warm-up (libtorch 1.13 has only StepLR).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace segtorch {

// Every field is given by the caller (defaults: lib/train.ts; read by node/options.cc).
struct ScheduleOptions {
  std::string type;               // constant | poly | cosine | step
  int64_t total{};                // iterations in the run (poly, cosine)
  int64_t warmup{};               // linear warm-up iterations
  double warmup_start{};          // factor at iteration 0 of the warm-up
  double power{};                 // poly
  double min_factor{};            // poly/cosine floor, as a factor of the base lr
  std::vector<int64_t> milestones;  // step: iterations where the lr is multiplied by gamma
  int64_t step_size{};            // step: every step_size iterations (when no milestones)
  double gamma{};                 // step
};

// Multiplier of the base learning rate at iteration `iter` (0-based).
double LrFactor(const ScheduleOptions& s, int64_t iter);

}  // namespace segtorch
