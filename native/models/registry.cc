// The one list to edit when adding an architecture.
#include <map>

#include "common/errors.h"
#include "models/fcn.h"
#include "models/segmentation_model.h"

namespace segtorch {

namespace {
const std::map<std::string, ModelFactory>& Registry() {
  static const std::map<std::string, ModelFactory> registry = {
      {"fcn", CreateFCN},
  };
  return registry;
}
}  // namespace

std::vector<std::string> Architectures() {
  std::vector<std::string> names;
  for (auto& kv : Registry()) names.push_back(kv.first);
  return names;
}

ModelPtr CreateNetwork(const ModelConfig& config) {
  auto it = Registry().find(config.arch);
  if (it == Registry().end()) {
    std::string allowed;
    for (auto& n : Architectures()) allowed += (allowed.empty() ? "" : ", ") + n;
    ThrowRange("Expected arch to be one of " + allowed + " but received " + config.arch);
  }
  return it->second(config);
}

}  // namespace segtorch
