// A network tied to its device, input normalisation and memory layout: what a JS Model wraps.
// Training (train/step.h, train/optimizer.h, train/checkpoint.h) and inference (infer/) are done by
// the rooms they are named after; the segmenter prepares inputs on its device and hands them its
// network, forward pass and state. Plain libtorch, callable from C++; every method runs on the
// model's executor thread.
#pragma once
#include <torch/torch.h>

#include <map>
#include <tuple>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "base/precision.h"
#include "export/export.h"
#include "infer/evaluation.h"
#include "infer/compiled_net.h"
#include "infer/folded_net.h"
#include "infer/inference.h"
#include "io/module_state.h"
#include "models/segmentation_model.h"
#include "train/metrics.h"
#include "train/step.h"

namespace segtorch {

class Segmenter {
 public:
  explicit Segmenter(ModelConfig config);

  // Logits [N,K,H,W] (float32, on the model's device) in the current train/eval mode, no grad.
  SegOutput Forward(const torch::Tensor& images, Precision precision = Precision::kFp32);
  // The backbone's feature maps (shallow to deep) for the images, no grad, current mode.
  std::vector<torch::Tensor> Features(const torch::Tensor& images);
  // Eval mode, inference mode: class map [N,H,W] int32 (output "labels"), or probabilities /
  // logits [N,K,H,W]; whole-image or sliding-window, multi-scale and flip as in InferOptions.
  torch::Tensor Predict(const torch::Tensor& images, const InferOptions& options);
  CompiledNet::Stats compiled_stats() const { return compiled_.stats(); }
  // depth: optional per-pixel depth targets [N,1,H,W] or [N,H,W] (multi-task models).
  StepResult TrainStep(const torch::Tensor& images, const torch::Tensor& masks, const TrainStepOptions& options,
                       const torch::Tensor& depth = torch::Tensor());
  void Seed(uint64_t seed);

  // Streaming evaluation: a confusion matrix accumulated on the model's device.
  void EvalReset(int64_t ignore_index);
  void EvalUpdate(const torch::Tensor& images, const torch::Tensor& masks, const InferOptions& options);
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

  // Export (export/export.h): the network with BatchNorms folded, traced in eval mode on this
  // model's device; mode and weights are left as they are. The last export is kept (like the folded
  // copy predict keeps) and reused while the weights and options stay the same: exporting to
  // TorchScript and then to ONNX traces once.
  std::shared_ptr<const ExportGraph> TraceForExport(const ExportOptions& options);
  // Data-parallel training (dist/data_parallel.h): the step averages gradients over the ranks
  // through `parallel` (nullptr: this process alone).
  void SetDataParallel(std::shared_ptr<DataParallelHooks> parallel) { training_.parallel = std::move(parallel); }
  // What must be equal on every rank of a data-parallel run: the configuration without the device.
  std::string Description() const;

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
  int64_t steps() const { return training_.steps; }
  const torch::Device& device() const { return device_; }
  SegmentationModel& net() { return *net_; }

 private:
  // uint8 -> float /255 then (x - mean) / std; float types -> float32 as given. Moved to the device.
  // The images on the device as normalised floats (uint8 ones in `format`: one pass on the CPU, core/images.h).
  torch::Tensor PrepareImages(const torch::Tensor& images, at::MemoryFormat format = at::MemoryFormat::Contiguous) const;
  torch::Tensor PrepareMasks(const torch::Tensor& masks, const torch::Tensor& images, int64_t ignore_index) const;
  // Pads to the network's input multiple, runs it (default: net_), crops back.
  SegOutput Run(const torch::Tensor& x, SegmentationModel* net = nullptr);
  // Whether Predict computes labels by ResizedArgmax (infer/labels.h) rather than through Infer.
  bool FusedLabelsApply(const InferOptions& o) const;
  // Changes whenever a parameter or buffer of net_ is modified in place or replaced.
  int64_t WeightsVersion() const;
  // The state dict `file` copied into net_ (io/module_state.h), which counts as a change.
  StateDictReport ApplyStateDict(const std::map<std::string, torch::Tensor>& file, const std::string& path, bool strict,
                                 const std::string& prefix, bool exact_dtype);
  // The forward pass on prepared images in the current layout (train/step.h's RunFn).
  RunFn Runner();
  void SetLayout(bool channels_last);

  ModelConfig config_;
  torch::Device device_;
  ModelPtr net_;
  torch::Tensor mean_, std_;
  TrainingState training_;
  bool channels_last_ = false;
  // Part of WeightsVersion: calls that may change weights or BN statistics without bumping tensor
  // versions (set_data(); libtorch 1.13 batch_norm updates running stats behind autograd's back).
  int64_t changes_ = 0;
  // WeightsVersion when predict last ran the network itself (no fold) and its convolutions dropped the kernel
  // transforms they keep between calls (the fp32 Winograd's, the taps'): made from the weights of that time, which a
  // training step's one-pass optimizer update rewrites in place without a version bump.
  int64_t eager_version_ = -1;
  FoldedNet folded_;  // what predict runs with foldBatchNorm
  CompiledNet compiled_;  // what predict runs with compile
  std::shared_ptr<const ExportGraph> export_;  // the last export, for export_key_
  std::tuple<int64_t, int64_t, bool, int64_t, int> export_key_{0, 0, false, -1, 0};  // height, width, dynamic, weights version, dtype
  Evaluation evaluation_;
};

torch::Device ParseDevice(const std::string& device);

}  // namespace segtorch
