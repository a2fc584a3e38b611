// PyTorch's SyncBatchNorm over a ProcessGroup: in training, each BatchNorm2d normalises with the
// mean and variance of the whole global batch (every rank's samples), and its backward uses the
// gradient sums of every rank; the running statistics are updated from the global ones. Parameters,
// buffers and the state dict are those of BatchNorm2d (nothing is converted, only a hook is set).
// Collective: every rank runs the same forward and backward, in the same order.
#pragma once
#include <torch/torch.h>

#include <memory>

#include "blocks/batch_norm.h"
#include "dist/process_group.h"

namespace segtorch {
namespace dist {

class SyncBatchNorm : public BatchNormSync {
 public:
  explicit SyncBatchNorm(std::shared_ptr<ProcessGroup> group) : group_(std::move(group)) {}
  torch::Tensor Forward(const torch::Tensor& input, const torch::Tensor& weight, const torch::Tensor& bias,
                        torch::Tensor& running_mean, torch::Tensor& running_var, double momentum, double eps) override;

 private:
  std::shared_ptr<ProcessGroup> group_;
};

// Sets (group) or clears (nullptr) the synchronisation of every BatchNorm2d of `net`; the number set.
int64_t SetSyncBatchNorm(torch::nn::Module& net, std::shared_ptr<ProcessGroup> group);

}  // namespace dist
}  // namespace segtorch
