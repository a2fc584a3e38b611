// A TorchScript segmentation model exported from Python (torch.jit.script / torch.jit.trace then
// .save), run with the same inference as our own networks (whole / sliding window, multi-scale,
// flip; labels, probabilities or logits) and evaluated the same way. Plain libtorch.
//
// The module's output may be a tensor [N, C, H, W]; a dict with an 'out' entry (torchvision's
// segmentation models); or a tuple / list whose first element is one of those. Outputs at another
// resolution than the input are resized bilinearly to the input size.
#pragma once
#include <torch/script.h>
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "core/segmenter.h"
#include "infer/inference.h"
#include "train/metrics.h"

namespace segtorch {

struct ScriptConfig {
  std::string path;
  std::string device = "cpu";
  int64_t in_channels = 3;
  std::vector<double> mean, std;  // uint8 images: x / 255, then (x - mean) / std
  int64_t num_classes = 0;        // 0: learned from the probe forward
  int64_t probe_h = 64, probe_w = 64;  // probe input size; 0: no probe (num_classes required)
};

class ScriptSegmenter {
 public:
  // Loads the module (clear errors for files that are not TorchScript), switches it to eval mode
  // and probes it with zeros [1, in_channels, probe_h, probe_w] to learn and check its output.
  explicit ScriptSegmenter(ScriptConfig config);

  torch::Tensor Predict(const torch::Tensor& images, const InferOptions& options);
  void EvalReset(int64_t ignore_index);
  void EvalUpdate(const torch::Tensor& images, const torch::Tensor& masks, const InferOptions& options);
  EvalResult EvalCompute() const;

  const ScriptConfig& config() const { return config_; }
  int64_t num_classes() const { return config_.num_classes; }
  int64_t NumParameters() const;
  const torch::Device& device() const { return device_; }

 private:
  torch::Tensor PrepareImages(const torch::Tensor& images) const;
  // Normalised images -> float logits [N, K, H, W] at the input size.
  torch::Tensor Logits(const torch::Tensor& x);

  ScriptConfig config_;
  torch::Device device_;
  torch::jit::Module module_;
  torch::Tensor mean_, std_;
  Evaluation evaluation_;
};

// What a TorchScript module returned, in words ("a tensor of shape [2, 5]", "a str", ...).
std::string DescribeIValue(const c10::IValue& v);

}  // namespace segtorch
