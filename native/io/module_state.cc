#include "io/module_state.h"

#include <sstream>

#include "base/errors.h"

namespace segtorch {

std::string ShapeString(at::IntArrayRef s) {
  std::ostringstream o;
  o << "[";
  for (size_t i = 0; i < s.size(); ++i) o << (i ? ", " : "") << s[i];
  o << "]";
  return o.str();
}

TensorList NamedTensors(const torch::nn::Module& net) {
  TensorList tensors;
  for (const auto& kv : net.named_parameters()) tensors.emplace_back(kv.key(), kv.value().detach());
  for (const auto& kv : net.named_buffers()) tensors.emplace_back(kv.key(), kv.value());
  return tensors;
}

StateDictReport ApplyStateDict(torch::nn::Module& net, const std::map<std::string, torch::Tensor>& file,
                               const std::string& path, bool strict, const std::string& prefix, bool exact_dtype,
                               const std::string& what) {
  std::map<std::string, torch::Tensor> ours;
  for (const auto& kv : net.named_parameters()) ours[kv.key()] = kv.value();
  for (const auto& kv : net.named_buffers()) ours[kv.key()] = kv.value();
  StateDictReport report;
  std::vector<std::pair<torch::Tensor, torch::Tensor>> copies;
  for (const auto& kv : ours) {
    if (kv.first.compare(0, prefix.size(), prefix) != 0) continue;
    std::string key = kv.first.substr(prefix.size());
    auto it = file.find(key);
    if (it == file.end()) {
      report.missing.push_back(key);
    } else if (it->second.sizes() != kv.second.sizes()) {
      report.mismatched.push_back(key + ": file " + ShapeString(it->second.sizes()) + " vs model " + ShapeString(kv.second.sizes()));
    } else if (exact_dtype && it->second.scalar_type() != kv.second.scalar_type()) {
      report.mismatched.push_back(key + ": file " + c10::toString(it->second.scalar_type()) + " vs model " +
                                  c10::toString(kv.second.scalar_type()));
    } else {
      copies.emplace_back(kv.second, it->second);
    }
  }
  for (const auto& kv : file) {
    if (!ours.count(prefix + kv.first)) report.unexpected.push_back(kv.first);
  }
  if (strict && (!report.missing.empty() || !report.unexpected.empty() || !report.mismatched.empty())) {
    auto list = [](const std::vector<std::string>& v) {
      std::string s;
      for (size_t i = 0; i < v.size() && i < 8; ++i) s += (i ? ", " : "") + v[i];
      if (v.size() > 8) s += ", ... (" + std::to_string(v.size()) + " in all)";
      return s.empty() ? std::string("none") : s;
    };
    ThrowError(path + " does not match this " + what + " model (nothing was loaded): missing keys: " +
               list(report.missing) + "; unexpected keys: " + list(report.unexpected) + "; mis-shaped keys: " + list(report.mismatched));
  }
  torch::NoGradGuard no_grad;
  for (auto& c : copies) c.first.copy_(c.second.to(c.first.device(), c.first.scalar_type()));
  report.loaded = static_cast<int64_t>(copies.size());
  return report;
}

}  // namespace segtorch
