// A network together with its device, normalisation, optimizer and step count: what a JS Model
// wraps. Plain libtorch, callable from C++; every method runs on the model's executor thread.
#pragma once
#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/state_dict.h"
#include "core/evaluation.h"
#include "core/fold.h"
#include "infer/inference.h"
#include "models/segmentation_model.h"
#include "train/losses.h"
#include "train/metrics.h"
#include "train/precision.h"
#include "train/schedule.h"

namespace segtorch {

struct OptimizerOptions {
  std::string type = "sgd";  // sgd | adam | adamw
  double lr = 0.01;
  double momentum = 0.9;
  double weight_decay = 0.0;
  bool nesterov = false;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
};

struct TrainStepOptions {
  int64_t ignore_index = 255;
  double aux_weight = 0.4;
  OptimizerOptions optimizer;
  // Parameter groups: new layers (everything outside "backbone.") train at lr x this.
  double head_lr_multiplier = 1.0;
  // No weight decay on normalisation weights and on biases.
  bool no_decay_norm_bias = false;
  ScheduleOptions schedule;
  std::string loss = "ce";  // ce | ohem | dice | focal | lovasz (main output)
  LossOptions loss_options;
  std::string precision = "fp32";  // fp32 | bf16 | fp16 (fp16: CUDA only, with a dynamic loss scaler)
  bool channels_last = false;
  double clip_grad_norm = 0;  // 0 = off
  int64_t accumulate = 1;     // micro-batches per optimizer update
  std::string depth_loss = "berhu";
  double depth_weight = 1.0;
};

struct StepResult {
  double loss = 0;
  std::vector<std::pair<std::string, double>> parts;
  int64_t step = 0;        // optimizer updates so far
  double lr = 0;           // learning rate of the first group at this step
  std::vector<double> lrs; // every parameter group's (backbone [, no-decay], head [, no-decay])
  bool updated = false;    // this call applied an optimizer update
  bool skipped = false;    // fp16: the update was skipped (inf/NaN gradients)
};

// What loading a PyTorch state dict found.
struct StateDictReport {
  std::vector<std::string> missing;     // ours, absent from the file
  std::vector<std::string> unexpected;  // in the file, not ours
  std::vector<std::string> mismatched;  // same name, other shape ("name: file [..] vs model [..]")
  int64_t loaded = 0;
};

class Segmenter {
 public:
  explicit Segmenter(ModelConfig config);

  // Logits [N,K,H,W] (float32, on the model's device) in the current train/eval mode, no grad.
  SegOutput Forward(const torch::Tensor& images, const std::string& precision = "fp32");
  // The backbone's feature maps (shallow to deep) for the images, no grad, current mode.
  std::vector<torch::Tensor> Features(const torch::Tensor& images);
  // Eval mode, inference mode: class map [N,H,W] int32 (output "labels"), or probabilities /
  // logits [N,K,H,W]; whole-image or sliding-window, multi-scale and flip as in InferOptions.
  torch::Tensor Predict(const torch::Tensor& images, const InferOptions& options = InferOptions());
  // depth: optional per-pixel depth targets [N,1,H,W] or [N,H,W] (multi-task models).
  StepResult TrainStep(const torch::Tensor& images, const torch::Tensor& masks, const TrainStepOptions& options,
                       const torch::Tensor& depth = torch::Tensor());
  void Seed(uint64_t seed);

  // Streaming evaluation: a confusion matrix accumulated on the model's device.
  void EvalReset(int64_t ignore_index);
  void EvalUpdate(const torch::Tensor& images, const torch::Tensor& masks, const InferOptions& options = InferOptions());
  EvalResult EvalCompute() const;

  // Forward + loss + backward without an update: names of trainable parameters left without a
  // gradient (the shared test battery asserts this is empty). Gradients are cleared after.
  std::vector<std::string> ParametersWithoutGradient(const torch::Tensor& images, const torch::Tensor& masks,
                                                     const TrainStepOptions& options);
  // Reads a state dict saved by Python's torch.save(model.state_dict()). Only keys under `prefix`
  // are considered (e.g. "backbone."). strict: any missing, unexpected or mis-shaped key is an
  // error and nothing is changed; otherwise matching tensors are copied and the rest reported.
  StateDictReport LoadStateDict(const std::string& path, bool strict, const std::string& prefix = "");
  // Writes parameters and buffers as a state dict that Python's torch.load reads (an OrderedDict
  // with the same names: torchvision's where a twin exists). Atomic.
  void SaveStateDict(const std::string& path) const;
  // Names and shapes of parameters and buffers, as a state dict would have them.
  std::vector<std::pair<std::string, std::vector<int64_t>>> StateDictShapes() const;

  void SetTraining(bool on) { net_->train(on); }
  bool IsTraining() const { return net_->is_training(); }
  // Atomic: written to a temporary file, fsynced, renamed over `path`. With training state:
  // optimizer state, schedule position, step counters, RNG state and `fit_state` (the caller's JSON).
  void Save(const std::string& path, bool training_state = false, const std::string& fit_state = "") const;
  // Loads weights (and training state when present); returns the stored fit state ("" if none).
  std::string Load(const std::string& path);
  static std::string ReadConfig(const std::string& path);

  const ModelConfig& config() const { return config_; }
  int64_t NumParameters(bool trainable_only) const;
  int64_t steps() const { return steps_; }
  const torch::Device& device() const { return device_; }
  SegmentationModel& net() { return *net_; }

 private:
  // uint8 -> float /255 then (x - mean) / std; float types -> float32 as given. Moved to the device.
  torch::Tensor PrepareImages(const torch::Tensor& images) const;
  torch::Tensor PrepareMasks(const torch::Tensor& masks, const torch::Tensor& images, int64_t ignore_index) const;
  // Pads to the network's input multiple, runs it (default: net_), crops back.
  SegOutput Run(const torch::Tensor& x, SegmentationModel* net = nullptr);
  // The network predict() runs when folding: a copy of net_ in eval mode with every foldable
  // BatchNorm folded into its convolution, rebuilt when net_'s weights or buffers change.
  // dtype: the autocast type predict runs in (kFloat: none); convolution weights are kept in it so
  // that autocast does not cast them again on every call.
  SegmentationModel& FoldedNet(bool channels_last, at::ScalarType dtype);
  // Changes whenever a parameter or buffer of net_ is modified in place or replaced.
  int64_t WeightsVersion() const;
  void EnsureOptimizer(const TrainStepOptions& o);
  // The optimizer's per-parameter state as named tensors, and back (checked before it is applied).
  TensorList OptimizerState() const;
  void RestoreOptimizerState(const std::map<std::string, torch::Tensor>& saved);
  // Copies `file` (name -> tensor) into the parameters and buffers under `prefix`; strict: any
  // missing, unexpected or mis-shaped (or, with exact_dtype, other-typed) name is an error and nothing
  // is changed.
  StateDictReport ApplyStateDict(const std::map<std::string, torch::Tensor>& file, const std::string& path, bool strict,
                                 const std::string& prefix, bool exact_dtype);
  void SetLearningRates(double factor);
  void SetLayout(bool channels_last);
  // Drops every parameter's gradient (set to none, not zeroed).
  void ClearGradients();
  // The total loss of one forward pass (main + weighted aux [+ depth]) in training mode.
  torch::Tensor Loss(const torch::Tensor& x, const torch::Tensor& y, const TrainStepOptions& o, StepResult* parts,
                     const torch::Tensor& depth = torch::Tensor());

  ModelConfig config_;
  torch::Device device_;
  ModelPtr net_;
  torch::Tensor mean_, std_;
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  std::string optimizer_signature_;     // type + grouping: a change rebuilds the optimizer
  std::vector<double> group_base_lr_;   // per group, before the schedule factor
  struct GroupKind {
    double lr_multiplier;
    bool no_decay;
  };
  std::vector<GroupKind> group_kinds_;
  std::map<std::string, torch::Tensor> pending_optimizer_;  // from a checkpoint: "optimizer.<g>.<i>.<field>"
  std::string pending_signature_;
  int64_t steps_ = 0;   // optimizer updates (= schedule position)
  int64_t micro_ = 0;   // micro-batches (gradient accumulation)
  bool channels_last_ = false;
  // Part of WeightsVersion: calls that may change weights or BN statistics without bumping tensor
  // versions (set_data(); libtorch 1.13 batch_norm updates running stats behind autograd's back).
  int64_t changes_ = 0;
  // The folded copy for inference, the net_ and version it was made from, its pairs and layout.
  ModelPtr folded_;
  const SegmentationModel* folded_source_ = nullptr;
  int64_t folded_version_ = -1;
  std::vector<FoldPair> fold_pairs_;
  bool folded_channels_last_ = false;
  at::ScalarType folded_dtype_ = at::kFloat;
  LossScaler scaler_;
  Evaluation evaluation_;
};

torch::Device ParseDevice(const std::string& device);

}  // namespace segtorch
