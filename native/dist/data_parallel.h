// DistributedDataParallel's semantics over a ProcessGroup, for the training step (train/step.h's
// DataParallelHooks): at construction, the model is checked to be the same on every rank (names,
// shapes and dtypes of parameters and buffers, and the caller's description of it) and rank 0's
// parameters and buffers are copied to every rank; before each forward, rank 0's buffers again
// (broadcast_buffers); after the last micro-batch's backward, every gradient is averaged over the
// ranks in buckets of about `bucket_bytes`, in reverse registration order (the order backward
// produces them), issued together and then waited for. The buckets are reduced after the backward,
// not from autograd hooks during it: no overlap of communication with the backward.
// A parameter that no rank gave a gradient keeps none (the optimizer skips it, as on one process).
#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "dist/process_group.h"
#include "train/step.h"

namespace segtorch {
namespace dist {

// Every field given by the caller (lib/fit.ts and lib/model.ts fill the defaults: 25 MB buckets,
// broadcast buffers, no SyncBN).
struct DataParallelOptions {
  int64_t bucket_bytes{};
  bool broadcast_buffers{};
  bool sync_batch_norm{};    // every BatchNorm2d synchronised (dist/sync_batch_norm.h)
  std::string description;  // the model's configuration: must be equal on every rank
};

class DataParallel : public DataParallelHooks {
 public:
  // Collective: every rank constructs it at the same point. Throws (every rank) when the models
  // differ. Sets or clears the BatchNorm2d synchronisation of `net` (options.sync_batch_norm).
  DataParallel(std::shared_ptr<ProcessGroup> group, torch::nn::Module& net, const DataParallelOptions& options);
  void BeforeForward(torch::nn::Module& net) override;
  void ReduceGradients(const std::vector<torch::Tensor>& params) override;

  int64_t buckets() const { return static_cast<int64_t>(buckets_.size()); }
  // Bytes all-reduced by the last ReduceGradients (gradients and the presence flags).
  int64_t last_bytes() const { return last_bytes_; }

 private:
  std::shared_ptr<ProcessGroup> group_;
  DataParallelOptions options_;
  std::vector<std::vector<size_t>> buckets_;  // indices into the trainable parameters
  int64_t steps_ = 0;
  int64_t last_bytes_ = 0;
};

// Copies rank `root`'s tensors into every rank's, one flat buffer per dtype and device.
void BroadcastTensors(ProcessGroup& group, const std::vector<torch::Tensor>& tensors, int64_t root, const std::string& what);

}  // namespace dist
}  // namespace segtorch
