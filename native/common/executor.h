// A serial executor: one native thread running jobs in the order they were posted.
// Each model owns one (one job at a time per model, in call order); free functions share one.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

namespace segtorch {

class Executor {
 public:
  // apply_thread_settings = false: a thread that runs no libtorch parallel work (the data
  // executor's plain loops) and never calls at::set_num_threads, which besides the calling thread's
  // OpenMP count also changes process-wide state (pthreadpool size, MKL threads, oneDNN cache).
  explicit Executor(bool apply_thread_settings = true);
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
  std::atomic<uint64_t> posted_{0};  // jobs ever posted: a poll compares it with the jobs taken
  bool apply_thread_settings_ = true;
  std::thread thread_;
};

// Thread count applied to every job's thread (libtorch/OpenMP settings are per thread).
void SetDesiredThreads(int n);
int DesiredThreads();
void ApplyThreadSettings();
// How long an idle executor polls for its next job before sleeping (SEGTORCH_SPIN_US, default 100;
// 0 sleeps at once).
int SpinMicros();

}  // namespace segtorch
