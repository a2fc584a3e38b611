// Model files (format 2): weights, configuration and, for a checkpoint, the training state. Written
// and read here; the Segmenter (core/segmenter.h) maps them onto its network and TrainingState.
#pragma once
#include <torch/torch.h>

#include <map>
#include <string>

#include "io/state_dict.h"

namespace segtorch {

// What a model file holds besides the weights and the configuration.
struct ModelFileState {
  int64_t steps = 0;
  bool channels_last = false;  // the layout the weights were saved in
  // A checkpoint (training state): the fields below are written only then.
  bool training = false;
  int64_t micro = 0;
  double loss_scale = 0;
  std::string optimizer_signature;  // "" when no optimizer was built
  std::string fit_state;            // the caller's JSON (fit())
};

// Atomic: written to a temporary file, fsynced, renamed over `path`. `optimizer_state` (named
// tensors, GroupedOptimizer::State()) and the CPU random generator's state are stored with
// state.training.
void WriteModelFile(const std::string& path, const std::string& config_json, const TensorList& weights,
                    const ModelFileState& state, const TensorList& optimizer_state);

struct ModelFile {
  std::map<std::string, torch::Tensor> weights;
  ModelFileState state;  // training: whether the file has training.pkl; fit_state "" when none
  std::map<std::string, torch::Tensor> optimizer_state;  // empty without an optimizer signature
  torch::Tensor rng;  // undefined when absent; checked to be a valid CPU generator state
};

// Reads and checks the whole file (structure, CRCs, records) before anything is returned;
// `default_loss_scale` when the file has none.
ModelFile ReadModelFile(const std::string& path, double default_loss_scale);

// segtorch/config.json of a model file.
std::string ReadModelFileConfig(const std::string& path);

// Sets the CPU random generator's state (checked by ReadModelFile).
void SetCpuRngState(const torch::Tensor& rng);

}  // namespace segtorch
