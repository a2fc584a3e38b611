// A serial executor: one native thread running jobs in the order they were posted.
// Each model owns one (one job at a time per model, in call order); free functions share one.
#pragma once
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

namespace segtorch {

class Executor {
 public:
  // threads > 0 pins libtorch's intra-op threads of this executor's thread (e.g. 1 for the data
  // executor, so augmentation never competes with a model's threads); 0 follows SetDesiredThreads.
  explicit Executor(int threads = 0);
  ~Executor();
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  void Post(std::function<void()> job);

 private:
  void Loop();
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  bool stop_ = false;
  int threads_ = 0;
  std::thread thread_;
};

// Thread count applied to every job's thread (libtorch/OpenMP settings are per thread).
void SetDesiredThreads(int n);
int DesiredThreads();
void ApplyThreadSettings();

}  // namespace segtorch
