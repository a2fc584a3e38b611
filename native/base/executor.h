// A serial executor: one native thread running jobs in the order they were posted.
// Each model owns one (one job at a time per model, in call order); free functions share one.
//
// Shutdown. A running libtorch operation cannot be interrupted, so every way of ending an executor
// waits for the job that is running: Close() (a model's dispose(), the destructor) runs what is
// still queued and joins the thread; Stop() (the process or a worker exiting) cancels what is
// queued and joins. Every executor is listed in a process-wide registry under a group (one per
// Node.js environment), so that StopGroup() ends one environment's threads from its exit handler
// or cleanup hook, and StopAll() ends every thread before the process's static destructors run.
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
  // group: what StopGroup() matches (a Node.js environment); nullptr for none. Throws
  // std::system_error when no thread can be created.
  explicit Executor(bool apply_thread_settings = true, const void* group = nullptr);
  ~Executor();  // Close()
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  // Queues `job`. Returns false, and keeps neither function, once the executor is closed or
  // stopped. `cancel` runs instead of `job` when Stop() drops it from the queue (on the thread
  // that calls Stop()); it must not throw.
  bool Post(std::function<void()> job, std::function<void()> cancel = nullptr);

  // Takes no more jobs, runs those already queued, then ends the thread (joined). Idempotent.
  void Close() noexcept;
  // Takes no more jobs, cancels those queued, waits for the running one, ends the thread. Idempotent.
  void Stop() noexcept;
  bool stopped() const noexcept { return closed_.load(); }

  // Stop() every executor of `group` / of the process. Safe from any thread but an executor's own.
  static void StopGroup(const void* group) noexcept;
  static void StopAll() noexcept;

 private:
  struct Item {
    std::function<void()> run, cancel;
  };
  void Loop() noexcept;
  void Finish(bool cancel_queued) noexcept;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Item> queue_;
  bool stop_ = false;                // the thread ends once the queue is empty (mu_)
  std::atomic<bool> closed_{false};  // Post() refuses
  std::mutex join_mu_;               // one joiner at a time
  std::atomic<uint64_t> posted_{0};  // jobs ever posted: a poll compares it with the jobs taken
  bool apply_thread_settings_ = true;
  const void* group_ = nullptr;
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
