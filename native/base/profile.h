// SEGTORCH_PROFILE=<prefix>: every native job that runs libtorch work (model jobs, predict,
// training steps, export) is recorded by libtorch's profiler and written as a Chrome trace
// (chrome://tracing, Perfetto) to <prefix>.<pid>.<job>.json when it ends: the operators, their
// inputs' shapes and times, as torch.autograd.profiler writes them. bench/op_profile.py --trace
// sums a trace by kind of operation. Unset (the default): nothing is recorded and nothing costs.
#pragma once
#include <memory>

namespace segtorch {

class JobProfile {
 public:
  virtual ~JobProfile() = default;
};

// A recording for the job about to run on this thread, or nullptr when SEGTORCH_PROFILE is unset
// or the profiler cannot start (then it says why on stderr, once). The trace is written when the
// returned object is destroyed.
std::unique_ptr<JobProfile> StartJobProfile() noexcept;

}  // namespace segtorch
