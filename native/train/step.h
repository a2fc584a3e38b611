// The training step: loss (main + weighted aux [+ depth]), backward, gradient accumulation,
// clipping, the fp16 loss scaler, the schedule and the optimizer update. Free functions over the
// network and a TrainingState; the Segmenter (core/segmenter.h) prepares the inputs on its device
// and gives the forward pass (padding, layout) as `run`.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "base/precision.h"
#include "models/segmentation_model.h"
#include "train/losses.h"
#include "train/optimizer.h"
#include "train/precision.h"
#include "train/schedule.h"

namespace segtorch {

// Every field is given by the caller: lib/train.ts holds the defaults, node/options.cc refuses a
// missing field. No field has a default here (zero-initialised only), so that the defaults live in
// one place.
struct TrainStepOptions {
  int64_t ignore_index{};
  double aux_weight{};
  OptimizerOptions optimizer;
  // Parameter groups: new layers (everything outside "backbone.") train at lr x this.
  double head_lr_multiplier{};
  // No weight decay on normalisation weights and on biases.
  bool no_decay_norm_bias{};
  ScheduleOptions schedule;
  std::string loss;  // ce | ohem | dice | focal | lovasz (main output)
  LossOptions loss_options;
  Precision precision{Precision::kFp32};  // fp16: CUDA only, with a dynamic loss scaler
  bool channels_last{};
  bool winograd{};          // fp32 3x3 convolutions' forward and input gradient by Winograd F(4x4, 3x3) (blocks/conv2d.h)
  double clip_grad_norm{};  // 0 = off
  int64_t accumulate{};     // micro-batches per optimizer update
  std::string depth_loss;   // l1 | berhu
  double depth_weight{};
};

struct StepResult {
  double loss = 0;
  std::vector<std::pair<std::string, double>> parts;
  int64_t step = 0;        // optimizer updates so far
  double lr = 0;           // learning rate of the first group at this step
  std::vector<double> lrs; // every parameter group's (backbone [, no-decay], head [, no-decay])
  bool updated = false;    // this call applied an optimizer update
  bool skipped = false;    // fp16: the update was skipped (inf/NaN gradients); other precisions throw
  double grad_norm = -1;   // with clipping: the gradients' global L2 norm before it (-1: not computed)
};

// Data-parallel training (dist/data_parallel.h implements it over a process group): what the step
// calls around its own work when the network is trained by several processes at once.
class DataParallelHooks {
 public:
  virtual ~DataParallelHooks() = default;
  // Before each forward pass (buffers from rank 0, as DistributedDataParallel's broadcast_buffers).
  virtual void BeforeForward(torch::nn::Module& net) = 0;
  // Before each backward pass; last_micro_batch: the one whose gradients are exchanged (earlier
  // ones accumulate locally, as DistributedDataParallel under no_sync()). check_finite: this rank's
  // gradients are checked before they are exchanged, and non-finite ones make every rank throw the
  // same error naming the rank (off for fp16, whose loss scaler skips such steps on every rank).
  virtual void BeforeBackward(torch::nn::Module& net, bool last_micro_batch, bool check_finite) = 0;
  // This rank's loss was not finite: its backward is skipped, and the exchange of the last
  // micro-batch makes every rank throw the same error (no rank updates its weights).
  virtual void NonFiniteLoss(double loss) = 0;
  // After the backward of the last micro-batch, before unscaling, clipping and the update: every
  // gradient becomes its average over the ranks.
  virtual void ReduceGradients(const std::vector<torch::Tensor>& params) = 0;
  // The number of processes (1: nothing is exchanged, and the step checks its own gradients).
  virtual int64_t WorldSize() const = 0;
};

// What training keeps between steps (and what a checkpoint stores).
struct TrainingState {
  GroupedOptimizer optimizer;
  LossScaler scaler;
  int64_t steps = 0;  // optimizer updates (= schedule position)
  int64_t micro = 0;  // micro-batches (gradient accumulation)
  std::shared_ptr<DataParallelHooks> parallel;  // not stored: set again by each process
};

// The network's forward pass on prepared images (padded to its input multiple, cropped back).
using RunFn = std::function<SegOutput(const torch::Tensor&)>;

// The total loss of one forward pass in training mode (autocast at o.precision); parts: the terms.
torch::Tensor TrainingLoss(SegmentationModel& net, const RunFn& run, const torch::Tensor& x, const torch::Tensor& y,
                           const TrainStepOptions& o, StepResult* parts, const torch::Tensor& depth = torch::Tensor());

// Drops every parameter's gradient (set to none, not zeroed).
void ClearGradients(torch::nn::Module& net);

// One micro-batch: forward, loss, backward; an optimizer update every o.accumulate calls. x, y, d:
// prepared images, labels and depth targets (or undefined) on the network's device; the optimizer is
// built (state.optimizer.Ensure). The network is in training mode during the call, as before after.
StepResult TrainStep(TrainingState& state, SegmentationModel& net, const RunFn& run, const torch::Tensor& x,
                     const torch::Tensor& y, const torch::Tensor& d, const TrainStepOptions& o);

// Forward + loss + backward without an update: names of trainable parameters left without a finite
// gradient. Gradients are cleared after.
std::vector<std::string> ParametersWithoutGradient(SegmentationModel& net, const RunFn& run, const torch::Tensor& x,
                                                   const torch::Tensor& y, const TrainStepOptions& o);

}  // namespace segtorch
