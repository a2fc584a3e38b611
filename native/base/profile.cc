#include "base/profile.h"

#include <torch/csrc/autograd/profiler_legacy.h>
#include <torch/version.h>
#if TORCH_VERSION_MAJOR >= 2
#include <torch/csrc/autograd/profiler_kineto.h>
#endif
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

#if TORCH_VERSION_MAJOR >= 2
// SEGTORCH_PROFILE_SHAPES=1 (libtorch 2.x): the Kineto profiler, whose trace gives each operator's input sizes
// ("Input Dims"): which layer an operator belongs to.
class ShapesProfile : public JobProfile {
 public:
  explicit ShapesProfile(std::string file) : file_(std::move(file)) {
    const torch::profiler::impl::ProfilerConfig config(torch::profiler::impl::ProfilerState::KINETO, /*report_input_shapes=*/true);
    const std::set<torch::profiler::impl::ActivityType> cpu{torch::profiler::impl::ActivityType::CPU};
    torch::autograd::profiler::prepareProfiler(config, cpu);
    torch::autograd::profiler::enableProfiler(config, cpu);
  }
  ~ShapesProfile() override {
    try {
      if (auto result = torch::autograd::profiler::disableProfiler()) result->save(file_);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "segtorch: SEGTORCH_PROFILE: cannot write %s: %s\n", file_.c_str(), e.what());
    }
  }

 private:
  std::string file_;
};
#endif

}  // namespace

std::unique_ptr<JobProfile> StartJobProfile() noexcept {
  static const char* prefix = std::getenv("SEGTORCH_PROFILE");
  if (prefix == nullptr || prefix[0] == '\0') return nullptr;
  static std::atomic<long> job{0};
  static std::atomic<bool> warned{false};
  const std::string file = std::string(prefix) + "." + std::to_string(static_cast<long>(getpid())) + "." + std::to_string(++job) + ".json";
  try {
#if TORCH_VERSION_MAJOR >= 2
    static const char* shapes = std::getenv("SEGTORCH_PROFILE_SHAPES");
    if (shapes != nullptr && std::string(shapes) == "1") return std::make_unique<ShapesProfile>(file);
#endif
    return std::make_unique<LegacyProfile>(file);
  } catch (const std::exception& e) {
    // One profiler per process at a time: a job on another model's thread may hold it.
    if (!warned.exchange(true)) std::fprintf(stderr, "segtorch: SEGTORCH_PROFILE: cannot record %s: %s\n", file.c_str(), e.what());
    return nullptr;
  }
}

}  // namespace segtorch
