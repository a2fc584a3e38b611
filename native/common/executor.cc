#include "common/executor.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>

namespace segtorch {

namespace {
std::atomic<int> g_desired_threads{0};
thread_local int t_applied_threads = -1;
}  // namespace

void SetDesiredThreads(int n) { g_desired_threads.store(n); }
int DesiredThreads() { return g_desired_threads.load(); }

int SpinMicros() {
  static const int us = [] {
    const char* v = std::getenv("SEGTORCH_SPIN_US");
    if (!v || !*v) return 100;
    char* end = nullptr;
    long n = std::strtol(v, &end, 10);
    return (*end || n < 0) ? 100 : static_cast<int>(std::min(n, 100000L));
  }();
  return us;
}

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
    posted_.fetch_add(1, std::memory_order_release);
  }
  cv_.notify_one();
}

void Executor::Loop() {
  const auto spin = std::chrono::microseconds(SpinMicros());
  uint64_t taken = 0;
  for (;;) {
    std::function<void()> job;
    // Before sleeping, poll for a next job for a short while: a caller that awaits one job and
    // posts the next (a training loop, a request handler) finds this thread and its CPU awake.
    // Sleeping at once costs both wake-ups (this thread's, then the JS thread's) a full idle exit:
    // about 75 us per round trip on a virtual machine with idle cores, 6 us with the poll.
    if (spin.count() > 0 && posted_.load(std::memory_order_acquire) == taken) {
      auto until = std::chrono::steady_clock::now() + spin;
      while (posted_.load(std::memory_order_acquire) == taken && std::chrono::steady_clock::now() < until) {
        std::this_thread::yield();
      }
    }
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stop_ and drained
      job = std::move(queue_.front());
      queue_.pop_front();
      ++taken;
    }
    if (apply_thread_settings_) ApplyThreadSettings();
    job();  // jobs catch their own exceptions
  }
}

}  // namespace segtorch
