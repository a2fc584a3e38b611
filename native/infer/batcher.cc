#include "infer/batcher.h"

#include <algorithm>
#include <sstream>

namespace segtorch {

void RequestBatcher::Configure(int64_t max_batch, double max_delay_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  max_batch_ = std::max<int64_t>(1, max_batch);
  max_delay_ = std::chrono::microseconds(static_cast<int64_t>(std::max(0.0, max_delay_ms) * 1000.0));
  enabled_.store(true);
  cv_.notify_all();
}

std::shared_ptr<BatchRequest> RequestBatcher::Submit(const at::Tensor& images, const std::string& key, BatchFn run) {
  auto r = std::make_shared<BatchRequest>();
  r->images = images;
  std::ostringstream k;
  k << key << '|' << images.scalar_type() << '|' << images.device() << '|' << images.dim();
  for (int64_t d = 1; d < images.dim(); ++d) k << 'x' << images.size(d);
  r->key = k.str();
  r->run = std::move(run);
  r->arrival = std::chrono::steady_clock::now();
  {
    std::lock_guard<std::mutex> lock(mu_);
    pending_.push_back(r);
    stats_.requests += 1;
    stats_.images += images.dim() > 0 ? images.size(0) : 0;
  }
  cv_.notify_all();
  return r;
}

int64_t RequestBatcher::PendingImages(const std::string& key) const {
  int64_t n = 0;
  for (const auto& p : pending_) {
    if (p->key == key) n += p->images.size(0);
  }
  return n;
}

at::Tensor RequestBatcher::Serve(const std::shared_ptr<BatchRequest>& request) {
  std::unique_lock<std::mutex> lock(mu_);
  if (!request->done) {
    auto deadline = request->arrival + max_delay_;
    cv_.wait_until(lock, deadline, [&] { return PendingImages(request->key) >= max_batch_; });
    // This request first, then the others of its key in arrival order, up to max_batch images.
    std::vector<std::shared_ptr<BatchRequest>> batch{request};
    int64_t n = request->images.size(0);
    for (auto it = pending_.begin(); it != pending_.end();) {
      const auto& p = *it;
      if (p == request) {
        it = pending_.erase(it);
      } else if (p->key == request->key && n + p->images.size(0) <= max_batch_) {
        n += p->images.size(0);
        batch.push_back(p);
        it = pending_.erase(it);
      } else {
        ++it;
      }
    }
    lock.unlock();
    Run(batch);
    lock.lock();
  }
  if (request->error) std::rethrow_exception(request->error);
  return request->result;
}

void RequestBatcher::Run(std::vector<std::shared_ptr<BatchRequest>>& batch) {
  auto alone = [this](BatchRequest& r) {
    try {
      r.result = r.run(r.images);
    } catch (...) {
      r.error = std::current_exception();
    }
    r.done = true;
    std::lock_guard<std::mutex> lock(mu_);
    stats_.runs += 1;
    stats_.largest = std::max(stats_.largest, r.images.size(0));
  };
  if (batch.size() == 1) {
    alone(*batch[0]);
    return;
  }
  std::vector<at::Tensor> inputs;
  int64_t n = 0;
  for (auto& r : batch) {
    inputs.push_back(r->images);
    n += r->images.size(0);
  }
  bool ok = false;
  try {
    at::Tensor out = batch[0]->run(at::cat(inputs, 0));
    if (out.dim() >= 1 && out.size(0) == n) {
      int64_t offset = 0;
      for (auto& r : batch) {
        int64_t k = r->images.size(0);
        r->result = out.narrow(0, offset, k).clone();
        offset += k;
      }
      ok = true;
    }
  } catch (...) {
    ok = false;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.runs += 1;
    if (ok) {
      stats_.batched += 1;
      stats_.largest = std::max(stats_.largest, n);
    } else {
      stats_.fallbacks += 1;
    }
  }
  if (ok) {
    for (auto& r : batch) r->done = true;
    return;
  }
  // One input spoiled the batch (or the batch failed as a whole): each request alone, so only the
  // requests that fail by themselves fail.
  for (auto& r : batch) alone(*r);
}

void RequestBatcher::CountUnbatched(int64_t images) {
  std::lock_guard<std::mutex> lock(mu_);
  stats_.requests += 1;
  stats_.images += images;
  stats_.runs += 1;
  stats_.largest = std::max(stats_.largest, images);
}

BatchStats RequestBatcher::Stats() {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

}  // namespace segtorch
