#include "base/profile.h"

#include <torch/csrc/autograd/profiler_legacy.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace segtorch {

namespace {

class LegacyProfile : public JobProfile {
 public:
  explicit LegacyProfile(const std::string& file) : record_(file) {}

 private:
  torch::autograd::profiler::RecordProfile record_;
};

}  // namespace

std::unique_ptr<JobProfile> StartJobProfile() noexcept {
  static const char* prefix = std::getenv("SEGTORCH_PROFILE");
  if (prefix == nullptr || prefix[0] == '\0') return nullptr;
  static std::atomic<long> job{0};
  static std::atomic<bool> warned{false};
  const std::string file = std::string(prefix) + "." + std::to_string(static_cast<long>(getpid())) + "." + std::to_string(++job) + ".json";
  try {
    return std::make_unique<LegacyProfile>(file);
  } catch (const std::exception& e) {
    // One profiler per process at a time: a job on another model's thread may hold it.
    if (!warned.exchange(true)) std::fprintf(stderr, "segtorch: SEGTORCH_PROFILE: cannot record %s: %s\n", file.c_str(), e.what());
    return nullptr;
  }
}

}  // namespace segtorch
