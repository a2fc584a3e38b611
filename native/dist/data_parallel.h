// DistributedDataParallel's semantics over a ProcessGroup, for the training step (train/step.h's
// DataParallelHooks): at construction, the model is checked to be the same on every rank (names,
// shapes and dtypes of parameters and buffers, and the caller's description of it) and rank 0's
// parameters and buffers are copied to every rank; before each forward, rank 0's buffers again
// (broadcast_buffers); during the last micro-batch's backward, every gradient is averaged over the
// ranks in buckets of about `bucket_bytes`, in reverse registration order (the order backward
// produces them): a hook on each parameter copies its gradient into its bucket as autograd makes it,
// and a bucket whose gradients have all arrived is handed to the backend at once (in bucket order,
// the same on every rank), so that the reduction runs on the backend's threads while the backward
// goes on; the step waits for all of them after the backward. Buckets with a parameter that got no
// gradient on this rank are issued after the backward. A parameter that no rank gave a gradient
// keeps none (the optimizer skips it, as on one process). A non-finite loss on any rank, or
// non-finite gradients from a finite loss (each bucket is checked before it is handed over), is
// agreed on in the same exchange: every rank then throws the same error naming the ranks, and none
// updates its weights.
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
  ~DataParallel() override;
  void BeforeForward(torch::nn::Module& net) override;
  void BeforeBackward(torch::nn::Module& net, bool last_micro_batch, bool check_finite) override;
  int64_t WorldSize() const override;
  void NonFiniteLoss(double loss) override;
  void ReduceGradients(const std::vector<torch::Tensor>& params) override;

 private:
  struct Reducer;  // what the gradient hooks reach
  std::shared_ptr<ProcessGroup> group_;
  DataParallelOptions options_;
  std::shared_ptr<Reducer> reducer_;
};

// Copies rank `root`'s tensors into every rank's, one flat buffer per dtype and device.
void BroadcastTensors(ProcessGroup& group, const std::vector<torch::Tensor>& tensors, int64_t root, const std::string& what);

}  // namespace dist
}  // namespace segtorch
