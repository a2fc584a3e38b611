// Per-iteration learning-rate schedules with linear warm-up (libtorch 1.13 has only StepLR).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace segtorch {

struct ScheduleOptions {
  std::string type = "constant";  // constant | poly | cosine | step
  int64_t total = 0;              // iterations in the run (poly, cosine)
  int64_t warmup = 0;             // linear warm-up iterations
  double warmup_start = 0.1;      // factor at iteration 0 of the warm-up
  double power = 0.9;             // poly
  double min_factor = 0.0;        // poly/cosine floor, as a factor of the base lr
  std::vector<int64_t> milestones;  // step: iterations where the lr is multiplied by gamma
  int64_t step_size = 0;          // step: every step_size iterations (when no milestones)
  double gamma = 0.1;             // step
};

// Multiplier of the base learning rate at iteration `iter` (0-based).
double LrFactor(const ScheduleOptions& s, int64_t iter);

}  // namespace segtorch
