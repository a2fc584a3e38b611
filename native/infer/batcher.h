// Request batching for services: single-image predict calls from many concurrent callers are
// collected on the model's executor thread and run as one forward. Plain libtorch, no Node-API.
//
// Protocol (one batcher per model, its executor running jobs one at a time in posting order):
// the JS thread Submit()s each request before posting its job; the job calls Serve(). The first
// job of a request not yet served waits until `max_batch` images with the same key are pending or
// `max_delay_ms` have passed since the request arrived, takes up to `max_batch` images of that
// key (its own request first, then in arrival order), runs them as one batch, and stores every
// request's result; the later jobs of the requests it served only pick their result up.
#pragma once
#include <ATen/ATen.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace segtorch {

// Runs a batch of images [N, C, H, W] and returns a tensor whose first dimension is N.
using BatchFn = std::function<at::Tensor(const at::Tensor&)>;

struct BatchRequest {
  at::Tensor images;
  std::string key;  // requests batch together only when their keys are equal
  BatchFn run;
  std::chrono::steady_clock::time_point arrival;
  bool done = false;
  at::Tensor result;
  std::exception_ptr error;
};

struct BatchStats {
  int64_t requests = 0;  // predict calls submitted
  int64_t images = 0;    // images in them
  int64_t runs = 0;      // native forwards (a batch, or a request run alone)
  int64_t batched = 0;   // runs that served more than one request
  int64_t largest = 0;   // most images in one run
  int64_t fallbacks = 0; // batches that failed and were re-run request by request
};

class RequestBatcher {
 public:
  RequestBatcher() = default;
  // max_batch: images per forward (>= 1); max_delay_ms: how long the first request of a batch
  // waits for others (>= 0). Applies to requests submitted from now on.
  void Configure(int64_t max_batch, double max_delay_ms);
  bool enabled() const { return enabled_.load(); }
  void Disable() { enabled_.store(false); }

  // JS thread. `key` must describe everything but the images that the result depends on (the
  // options); the images' dtype, device and [C, H, W] are added here.
  std::shared_ptr<BatchRequest> Submit(const at::Tensor& images, const std::string& key, BatchFn run);
  // Executor thread: the request's result, or its error rethrown.
  at::Tensor Serve(const std::shared_ptr<BatchRequest>& request);
  // Counts a run that did not go through the batcher (batching off).
  void CountUnbatched(int64_t images);
  BatchStats Stats();

 private:
  void Run(std::vector<std::shared_ptr<BatchRequest>>& batch);
  int64_t PendingImages(const std::string& key) const;  // mu_ held

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<BatchRequest>> pending_;
  std::atomic<bool> enabled_{false};
  int64_t max_batch_ = 1;
  std::chrono::microseconds max_delay_{0};
  BatchStats stats_;
};

}  // namespace segtorch
