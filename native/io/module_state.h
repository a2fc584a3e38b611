// A module's parameters and buffers as named tensors, and a state dict copied back into them with
// every name, shape (and optionally dtype) checked first: what state-dict files and model files
// (train/checkpoint.h) map onto a network.
#pragma once
#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "io/state_dict.h"

namespace segtorch {

// What loading a state dict found.
struct StateDictReport {
  std::vector<std::string> missing;     // ours, absent from the file
  std::vector<std::string> unexpected;  // in the file, not ours
  std::vector<std::string> mismatched;  // same name, other shape ("name: file [..] vs model [..]")
  int64_t loaded = 0;
};

// "[2, 3, 4]"
std::string ShapeString(at::IntArrayRef s);

// Parameters (detached) then buffers, with their state-dict names.
TensorList NamedTensors(const torch::nn::Module& net);

// Copies `file` (name -> tensor) into the parameters and buffers of `net` under `prefix`; strict:
// any missing, unexpected or mis-shaped (or, with exact_dtype, other-typed) name is an error that
// names `path` and `what` (the model, e.g. "pspnet/resnet18"), and nothing is changed.
StateDictReport ApplyStateDict(torch::nn::Module& net, const std::map<std::string, torch::Tensor>& file,
                               const std::string& path, bool strict, const std::string& prefix, bool exact_dtype,
                               const std::string& what);

}  // namespace segtorch
