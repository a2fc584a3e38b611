#include "common/executor.h"

#include <ATen/Parallel.h>

#include <atomic>

namespace segtorch {

namespace {
std::atomic<int> g_desired_threads{0};
thread_local int t_applied_threads = -1;
}  // namespace

void SetDesiredThreads(int n) { g_desired_threads.store(n); }
int DesiredThreads() { return g_desired_threads.load(); }

void ApplyThreadSettings() {
  int n = g_desired_threads.load();
  if (n > 0 && n != t_applied_threads) {
    at::set_num_threads(n);
    t_applied_threads = n;
  }
}

Executor::Executor(bool apply_thread_settings) : apply_thread_settings_(apply_thread_settings), thread_([this] { Loop(); }) {}

Executor::~Executor() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Executor::Post(std::function<void()> job) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(std::move(job));
  }
  cv_.notify_one();
}

void Executor::Loop() {
  for (;;) {
    std::function<void()> job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stop_ and drained
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    if (apply_thread_settings_) ApplyThreadSettings();
    job();  // jobs catch their own exceptions
  }
}

}  // namespace segtorch
