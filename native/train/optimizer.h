// The optimizer of a network and its parameter groups: backbone and head (the head's learning
// rate x a multiplier), each split into decay / no-decay (biases and normalisation weights), and
// its per-parameter state as named tensors for checkpoints (train/checkpoint.h).
#pragma once
#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "io/state_dict.h"

namespace segtorch {

struct OptimizerOptions {
  std::string type;  // sgd | adam | adamw
  double lr = 0;
  double momentum = 0;
  double weight_decay = 0;
  bool nesterov = false;
  double beta1 = 0, beta2 = 0, eps = 0;
};

class GroupedOptimizer {
 public:
  // Builds the optimizer over the trainable parameters of `net` when there is none or its type or
  // grouping changed (then a checkpoint's pending state of the same signature is restored);
  // otherwise takes the new hyper-parameters and keeps the state (momentum buffers, moments).
  void Ensure(torch::nn::Module& net, const OptimizerOptions& o, double head_lr_multiplier, bool no_decay_norm_bias);
  // Every group's learning rate = its base rate x factor (the schedule's).
  void SetLearningRates(double factor);
  // Adam / AdamW / SGD: one fused pass per parameter on the CPU (libtorch's step where it does not
  // apply: other devices and dtypes, amsgrad, dampening). Every gradient is taken times grad_scale
  // (clipping's coefficient: ClipCoefficient), folded into that pass (a pass of its own otherwise).
  void Step(double grad_scale = 1.0);
  // Per group, before the schedule factor (backbone [, no-decay], head [, no-decay]).
  const std::vector<double>& base_lrs() const { return group_base_lr_; }
  bool built() const { return optimizer_ != nullptr; }
  // Type + grouping: what a checkpoint stores so that its state is restored into the same optimizer.
  const std::string& signature() const { return signature_; }
  // Per-parameter state as "optimizer.<group>.<param>.<field>" tensors.
  TensorList State() const;
  // Drops the optimizer; `pending` (a checkpoint's State()) is restored when Ensure next builds one
  // with `pending_signature`.
  void Reset(std::map<std::string, torch::Tensor> pending, std::string pending_signature);

 private:
  // Checked against the parameters before anything is applied.
  void Restore(const std::map<std::string, torch::Tensor>& saved);

  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  std::string signature_;
  std::vector<double> group_base_lr_;
  struct GroupKind {
    double lr_multiplier;
    bool no_decay;
  };
  std::vector<GroupKind> group_kinds_;
  std::map<std::string, torch::Tensor> pending_;
  std::string pending_signature_;
};

}  // namespace segtorch
