#include "train/checkpoint.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <mutex>
#include <sstream>

#include "base/errors.h"
#include "io/archive.h"

namespace segtorch {

namespace {

constexpr int64_t kFormat = 2;

// The checked archive of a segtorch model file.
std::shared_ptr<const Archive> OpenModelFile(const std::string& path) {
  std::shared_ptr<const Archive> archive;
  try {
    archive = Archive::Read(path);
  } catch (const FileAccessError& e) {
    ThrowError("cannot open model file " + CleanMessage(e));
  } catch (const std::exception& e) {
    std::string m = CleanMessage(e);
    if (m.compare(0, path.size() + 2, path + ": ") == 0) m = m.substr(path.size() + 2);
    ThrowError(path + " is not a segtorch model file, or it is corrupt: " + m);
  }
  if (!archive->Has("segtorch/format")) {
    if (archive->Has("constants.pkl") || archive->Has("code/__torch__.py") || archive->Has("data.pkl"))
      ThrowError(path + " is not a segtorch model file (no segtorch/format record); files written by segtorch < 0.2 "
                 "(format 1) are no longer read: they could only be read by libtorch's TorchScript loader, which is "
                 "not safe on untrusted files");
    ThrowError(path + " is not a segtorch model file (no segtorch/format record)");
  }
  std::string_view format = archive->Record("segtorch/format");
  if (format != std::to_string(kFormat)) {
    bool digits = !format.empty() && format.size() < 10 &&
                  std::all_of(format.begin(), format.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (digits && std::stoll(std::string(format)) > kFormat)
      ThrowError(path + " was written by a newer segtorch (format " + std::string(format) + ")");
    ThrowError(path + " is not a segtorch model file (unknown format marker)");
  }
  if (!archive->Has("segtorch/config.json") || !archive->Has("data.pkl") || !archive->Has("segtorch/state"))
    ThrowError(path + " is an incomplete segtorch model file (a record is missing)");
  return archive;
}

// segtorch/state: "key value" lines.
std::map<std::string, std::string> ParseState(const std::string& path, std::string_view text) {
  std::map<std::string, std::string> out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    std::string_view line = text.substr(pos, nl - pos);
    pos = nl + 1;
    if (line.empty()) continue;
    size_t sp = line.find(' ');
    if (sp == std::string_view::npos || sp == 0) ThrowError(path + " has a malformed segtorch/state record");
    out[std::string(line.substr(0, sp))] = std::string(line.substr(sp + 1));
  }
  return out;
}

int64_t StateInt(const std::string& path, const std::map<std::string, std::string>& state, const char* key, int64_t def) {
  auto it = state.find(key);
  if (it == state.end()) return def;
  char* end = nullptr;
  errno = 0;
  long long v = std::strtoll(it->second.c_str(), &end, 10);
  if (errno || end == it->second.c_str() || *end || v < 0)
    ThrowError(path + " has an invalid " + key + " in its segtorch/state record");
  return static_cast<int64_t>(v);
}

double StateDouble(const std::string& path, const std::map<std::string, std::string>& state, const char* key, double def) {
  auto it = state.find(key);
  if (it == state.end()) return def;
  char* end = nullptr;
  double v = std::strtod(it->second.c_str(), &end);
  if (end == it->second.c_str() || *end || !std::isfinite(v) || v <= 0)
    ThrowError(path + " has an invalid " + key + " in its segtorch/state record");
  return v;
}

}  // namespace

// Model files (format 2) are zip archives as torch.save writes them, read back with our own checked
// reader (io/archive.h, io/state_dict.h), never with libtorch's TorchScript loader:
//   data.pkl              the network's state dict (Python's torch.load reads it as an OrderedDict)
//   segtorch/format       "2"
//   segtorch/config.json  the configuration the network is rebuilt from
//   segtorch/state        "key value" lines: steps, micro, loss_scale, optimizer (its signature)
//   segtorch/fit.json     the fit() state of a checkpoint (optional)
//   training.pkl          optimizer state and RNG state of a checkpoint (optional):
//                         "rng", "optimizer.<group>.<param>.<field>"
// Every record is CRC-checked on reading; every tensor's name, shape and dtype is checked against the
// network built from the configuration before anything is copied into it.
void WriteModelFile(const std::string& path, const std::string& config_json, const TensorList& weights,
                    const ModelFileState& s, const TensorList& optimizer_state) {
  std::ostringstream state;
  state.precision(17);
  state << "steps " << s.steps << "\n";
  state << "channels_last " << (s.channels_last ? 1 : 0) << "\n";
  std::vector<std::pair<std::string, TensorList>> pickles{{"data.pkl", weights}};
  std::vector<std::pair<std::string, std::string>> records{{"segtorch/format", std::to_string(kFormat)},
                                                           {"segtorch/config.json", config_json}};
  if (s.training) {
    state << "micro " << s.micro << "\n";
    state << "loss_scale " << s.loss_scale << "\n";
    TensorList training;
    if (!s.optimizer_signature.empty()) {
      state << "optimizer " << s.optimizer_signature << "\n";
      training = optimizer_state;
    }
    auto gen = at::detail::getDefaultCPUGenerator();
    {
      std::lock_guard<std::mutex> lock(gen.mutex());
      training.emplace_back("rng", gen.get_state());
    }
    pickles.emplace_back("training.pkl", std::move(training));
    records.emplace_back("segtorch/fit.json", s.fit_state);
  }
  records.emplace_back("segtorch/state", state.str());
  try {
    WriteTensorArchive(path, pickles, records);
  } catch (const UserError&) {
    throw;
  } catch (const std::exception& e) {
    ThrowError(CleanMessage(e));
  }
}

std::string ReadModelFileConfig(const std::string& path) {
  auto archive = OpenModelFile(path);
  return std::string(archive->Record("segtorch/config.json"));
}

ModelFile ReadModelFile(const std::string& path, double default_loss_scale) {
  auto archive = OpenModelFile(path);
  ModelFile f;
  std::map<std::string, torch::Tensor> training;
  try {
    for (auto& kv : ReadTensorDict(*archive, "data.pkl")) f.weights.emplace(std::move(kv.first), std::move(kv.second));
    if (archive->Has("training.pkl")) {
      for (auto& kv : ReadTensorDict(*archive, "training.pkl")) training.emplace(std::move(kv.first), std::move(kv.second));
    }
  } catch (const UserError&) {
    throw;
  } catch (const std::exception& e) {
    ThrowError("cannot load model: " + CleanMessage(e));
  }
  std::map<std::string, std::string> state = ParseState(path, archive->Record("segtorch/state"));
  f.state.steps = StateInt(path, state, "steps", 0);
  f.state.micro = StateInt(path, state, "micro", 0);
  int64_t channels_last = StateInt(path, state, "channels_last", 0);
  if (channels_last > 1) ThrowError(path + " has an invalid channels_last in its segtorch/state record");
  f.state.channels_last = channels_last == 1;
  f.state.loss_scale = StateDouble(path, state, "loss_scale", default_loss_scale);
  f.state.optimizer_signature = state.count("optimizer") ? state["optimizer"] : std::string();
  f.state.training = archive->Has("training.pkl");
  for (auto& kv : training) {
    if (kv.first == "rng") f.rng = kv.second;
    else if (kv.first.compare(0, 10, "optimizer.") == 0 && !f.state.optimizer_signature.empty()) f.optimizer_state.emplace(kv.first, kv.second);
    else ThrowError(path + " holds an unexpected training-state tensor '" + kv.first + "'");
  }
  if (f.rng.defined()) {
    // The CPU generator's state: checked by a throw-away generator first, so a bad one changes nothing.
    try {
      auto probe = at::make_generator<at::CPUGeneratorImpl>();
      probe.set_state(f.rng);
    } catch (const std::exception& e) {
      ThrowError(path + " holds an invalid random generator state: " + CleanMessage(e));
    }
  }
  f.state.fit_state = archive->Has("segtorch/fit.json") ? std::string(archive->Record("segtorch/fit.json")) : std::string();
  return f;
}

void SetCpuRngState(const torch::Tensor& rng) {
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(rng);
}

}  // namespace segtorch
