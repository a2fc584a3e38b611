#include "base/executor.h"

#include "base/env.h"
#include "base/profile.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <vector>

namespace segtorch {

namespace {
std::atomic<int> g_desired_threads{0};
thread_local int t_applied_threads = -1;

// Every live executor. Allocated once and never freed: StopAll() runs from an atexit handler,
// after which no static destructor may have taken the registry away.
std::mutex& RegistryMutex() {
  static auto* mu = new std::mutex();
  return *mu;
}
std::vector<Executor*>& LiveExecutors() {
  static auto* list = new std::vector<Executor*>();
  return *list;
}
}  // namespace

void SetDesiredThreads(int n) { g_desired_threads.store(n); }
int DesiredThreads() { return g_desired_threads.load(); }

int SpinMicros() {
  // SEGTORCH_SPIN_US: 0 to 100000 (above: the default, as for any other value EnvInteger rejects).
  static const int us = static_cast<int>(EnvInteger("SEGTORCH_SPIN_US", 100, 0, 100000));
  return us;
}

void ApplyThreadSettings() {
  int n = g_desired_threads.load();
  if (n > 0 && n != t_applied_threads) {
    at::set_num_threads(n);
    t_applied_threads = n;
  }
}

Executor::Executor(bool apply_thread_settings, const void* group)
    : apply_thread_settings_(apply_thread_settings), group_(group), thread_([this] { Loop(); }) {
  std::lock_guard<std::mutex> lock(RegistryMutex());
  LiveExecutors().push_back(this);
}

Executor::~Executor() {
  {
    // Unlisted first: StopAll() (which holds the registry lock) never sees an executor being destroyed.
    std::lock_guard<std::mutex> lock(RegistryMutex());
    auto& list = LiveExecutors();
    list.erase(std::remove(list.begin(), list.end(), this), list.end());
  }
  Close();
}

bool Executor::Post(std::function<void()> job, std::function<void()> cancel) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) return false;
    queue_.push_back(Item{std::move(job), std::move(cancel)});
    posted_.fetch_add(1, std::memory_order_release);
  }
  cv_.notify_one();
  return true;
}

void Executor::Close() noexcept { Finish(false); }

void Executor::Stop() noexcept { Finish(true); }

void Executor::Finish(bool cancel_queued) noexcept {
  closed_.store(true);
  std::deque<Item> dropped;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    if (cancel_queued) dropped.swap(queue_);
  }
  cv_.notify_all();
  for (Item& item : dropped) {
    try {
      if (item.cancel) item.cancel();
      item = Item();  // the job's captures (tensors, a model) are released here
    } catch (...) {
    }
  }
  std::lock_guard<std::mutex> lock(join_mu_);
  if (!thread_.joinable()) return;
  // Never from the executor's own thread (a job cannot join itself): let it end by itself.
  if (thread_.get_id() == std::this_thread::get_id()) {
    thread_.detach();
  } else {
    thread_.join();
  }
}

void Executor::StopGroup(const void* group) noexcept {
  // Only the group's own (JS) thread destroys the group's executors, and it is the caller: the
  // list can be stopped outside the lock, so that other environments keep creating executors.
  std::vector<Executor*> mine;
  try {
    std::lock_guard<std::mutex> lock(RegistryMutex());
    for (Executor* e : LiveExecutors()) {
      if (e->group_ == group) mine.push_back(e);
    }
  } catch (...) {
    return;
  }
  for (Executor* e : mine) e->Stop();
}

void Executor::StopAll() noexcept {
  try {
    std::lock_guard<std::mutex> lock(RegistryMutex());
    for (Executor* e : LiveExecutors()) e->Stop();
  } catch (...) {
  }
}

void Executor::Loop() noexcept {
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
      job = std::move(queue_.front().run);
      queue_.pop_front();
      ++taken;
    }
    // Jobs catch their own exceptions; whatever escapes one anyway must not end the process
    // (an exception leaving a thread's function calls std::terminate).
    try {
      std::unique_ptr<JobProfile> profile;
      if (apply_thread_settings_) {
        ApplyThreadSettings();
        profile = StartJobProfile();
      }
      job();
    } catch (...) {
    }
    try {
      job = nullptr;
    } catch (...) {
    }
  }
}

}  // namespace segtorch
