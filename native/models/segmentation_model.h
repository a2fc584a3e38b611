// What every architecture is: a torch::nn::Module that maps normalised images [N,C,H,W] to logits
// [N,K,H,W] (plus named auxiliary outputs in training mode), and the configuration that builds it.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace segtorch {

struct ModelConfig {
  std::string arch = "fcn";
  std::string backbone = "resnet50";
  int64_t num_classes = 21;
  int64_t in_channels = 3;
  int64_t output_stride = 8;
  bool aux = false;
  std::vector<double> mean, std;
  std::string device = "cpu";
  // Architecture-specific options (TypeScript validates and fills them).
  std::map<std::string, double> numbers;
  std::map<std::string, std::string> strings;
  // The configuration as the user's JSON, stored in checkpoints.
  std::string json;

  double Number(const std::string& key, double def) const {
    auto it = numbers.find(key);
    return it == numbers.end() ? def : it->second;
  }
  std::string String(const std::string& key, const std::string& def) const {
    auto it = strings.find(key);
    return it == strings.end() ? def : it->second;
  }
};

struct SegOutput {
  torch::Tensor out;                                        // [N,K,H,W] logits at input size
  std::vector<std::pair<std::string, torch::Tensor>> aux;   // training-mode extras, e.g. {"aux", ...}
};

class SegmentationModel : public torch::nn::Module {
 public:
  // x: normalised float images [N,C,H,W] whose H and W are multiples of input_multiple().
  virtual SegOutput forward(const torch::Tensor& x) = 0;
  // Inputs are padded to a multiple of this inside Segmenter, then cropped back.
  virtual int64_t input_multiple() const { return 32; }
};

using ModelPtr = std::shared_ptr<SegmentationModel>;
using ModelFactory = std::function<ModelPtr(const ModelConfig&)>;

// The registry (models/registry.cc): arch name -> factory.
ModelPtr CreateNetwork(const ModelConfig& config);
std::vector<std::string> Architectures();

}  // namespace segtorch
