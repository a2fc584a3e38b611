#include "train/schedule.h"

#include <algorithm>
#include <cmath>

namespace segtorch {

double LrFactor(const ScheduleOptions& s, int64_t iter) {
  double factor = 1.0;
  if (s.type == "poly" && s.total > 0) {
    double progress = std::min(1.0, static_cast<double>(iter) / static_cast<double>(s.total));
    factor = s.min_factor + (1.0 - s.min_factor) * std::pow(1.0 - progress, s.power);
  } else if (s.type == "cosine" && s.total > 0) {
    double progress = std::min(1.0, static_cast<double>(iter) / static_cast<double>(s.total));
    factor = s.min_factor + (1.0 - s.min_factor) * 0.5 * (1.0 + std::cos(M_PI * progress));
  } else if (s.type == "step") {
    int64_t drops = 0;
    if (!s.milestones.empty()) {
      for (int64_t m : s.milestones) drops += iter >= m ? 1 : 0;
    } else if (s.step_size > 0) {
      drops = iter / s.step_size;
    }
    factor = std::pow(s.gamma, static_cast<double>(drops));
  }
  if (s.warmup > 0 && iter < s.warmup) {
    double alpha = static_cast<double>(iter) / static_cast<double>(s.warmup);
    factor *= s.warmup_start + (1.0 - s.warmup_start) * alpha;
  }
  return factor;
}

}  // namespace segtorch
