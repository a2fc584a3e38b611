#include "core/script_segmenter.h"

#include <cstdio>
#include <fstream>
#include <sstream>

#include "core/images.h"
#include "io/archive.h"
#include "base/errors.h"
#include "io/state_dict.h"
#include "train/precision.h"

namespace segtorch {

namespace F = torch::nn::functional;

namespace {

std::string ShapeString(const torch::Tensor& t) {
  std::ostringstream s;
  s << '[';
  for (int64_t i = 0; i < t.dim(); ++i) s << (i ? ", " : "") << t.size(i);
  s << ']';
  return s.str();
}

const char* kExpected = "expected a [N, C, H, W] tensor, a dict with an 'out' entry, or a tuple/list whose first element is one of those";

// Checks the file before libtorch reads it, so that the common mistakes get a plain answer.
// The file, read once and checked before libtorch's loader sees it: zip structure and CRC-32 of every
// record (io/archive.h), and its pickles run by our checked VM in scan mode (nesting, value
// counts, every tensor's storage bounds). TorchScript code itself is compiled by libtorch: a file from
// a stranger is a program (README, "Security and limits").
std::shared_ptr<const Archive> CheckArchive(const std::string& path) {
  std::string bytes;
  try {
    bytes = Archive::ReadFile(path);
  } catch (const std::exception& e) {
    ThrowError("cannot load TorchScript: " + CleanMessage(e));
  }
  const unsigned char* head = reinterpret_cast<const unsigned char*>(bytes.data());
  if (bytes.size() < 4 || !(head[0] == 'P' && head[1] == 'K' && head[2] == 3 && head[3] == 4)) {
    std::string found;
    if (bytes.empty()) {
      found = "an empty file";
    } else if (head[0] == 0x80) {
      found = "a Python pickle (torch.save with _use_new_zipfile_serialization=False?)";
    } else {
      char hex[32];
      std::snprintf(hex, sizeof hex, "%02x %02x %02x %02x", head[0], bytes.size() > 1 ? head[1] : 0,
                    bytes.size() > 2 ? head[2] : 0, bytes.size() > 3 ? head[3] : 0);
      found = std::string("a file starting with bytes ") + hex;
    }
    ThrowError("Expected a TorchScript archive (the zip file torch.jit.save writes) for " + path + " but found " + found);
  }
  std::shared_ptr<const Archive> archive;
  try {
    archive = Archive::FromBytes(path, std::move(bytes));
  } catch (const std::exception& e) {
    ThrowError("Expected a complete TorchScript archive in " + path + " but the file is truncated or corrupt (" +
               CleanMessage(e) + ")");
  }
  if (!archive->Has("constants.pkl") || !archive->Has("data.pkl")) {
    ThrowError("Expected a TorchScript module in " + path +
               " but found a PyTorch zip archive without TorchScript code (torch.save of a state dict or of a "
               "Python object?). Export with torch.jit.script(model).save(file) or torch.jit.trace(model, x).save(file); "
               "a state dict loads into our own models with createModel() then model.loadStateDict()");
  }
  try {
    CheckPickle(*archive, "constants.pkl", "constants/");
    CheckPickle(*archive, "data.pkl", "data/");
  } catch (const std::exception& e) {
    ThrowError("cannot load TorchScript: " + CleanMessage(e));
  }
  return archive;
}

// The TorchScript interpreter prefixes the error with two tracebacks of the scripted code; keep
// the error itself (its last line, e.g. "RuntimeError: Given groups=1, weight of size ...").
std::string ScriptError(const std::exception& e) {
  std::string m = CleanMessage(e);
  if (m.find("Traceback of TorchScript") == std::string::npos) return m;
  size_t end = m.find_last_not_of("\n ");
  if (end == std::string::npos) return m;
  size_t start = m.rfind('\n', end);
  return m.substr(start == std::string::npos ? 0 : start + 1, end + 1 - (start == std::string::npos ? 0 : start + 1));
}

}  // namespace

std::string DescribeIValue(const c10::IValue& v) {
  if (v.isTensor()) {
    const torch::Tensor& t = v.toTensor();
    return "a " + std::string(c10::toString(t.scalar_type())) + " tensor of shape " + ShapeString(t);
  }
  if (v.isString()) return "a str";
  if (v.isNone()) return "None";
  if (v.isGenericDict()) {
    std::string keys;
    for (const auto& e : v.toGenericDict()) {
      if (!keys.empty()) keys += ", ";
      keys += e.key().isString() ? "'" + e.key().toStringRef() + "'" : e.key().tagKind();
    }
    return "a dict with keys [" + keys + "]";
  }
  if (v.isTuple()) return "a tuple of " + std::to_string(v.toTupleRef().elements().size()) + " element(s)";
  if (v.isList()) return "a list of " + std::to_string(v.toListRef().size()) + " element(s)";
  return "a value of type " + v.tagKind();
}

ScriptSegmenter::ScriptSegmenter(ScriptConfig config) : config_(std::move(config)), device_(ParseDevice(config_.device)) {
  auto archive = CheckArchive(config_.path);
  try {
    // The bytes that were checked, not the file again (it may have changed since).
    std::istringstream in(archive->bytes());
    archive.reset();
    module_ = torch::jit::load(in, device_);
  } catch (const std::exception& e) {
    std::string m = CleanMessage(e);
    if (m.find("constants.pkl") != std::string::npos || m.find("code/") != std::string::npos) {
      ThrowError("Expected a TorchScript module in " + config_.path +
                 " but found a PyTorch zip archive without TorchScript code (torch.save of a state dict or of a "
                 "Python object?). Export with torch.jit.script(model).save(file) or torch.jit.trace(model, x).save(file); "
                 "a state dict loads into our own models with createModel() then model.loadStateDict()");
    }
    if (m.find("zip") != std::string::npos || m.find("central directory") != std::string::npos) {
      ThrowError("Expected a complete TorchScript archive in " + config_.path + " but the zip file is truncated or corrupt (" + m + ")");
    }
    ThrowError("Expected a TorchScript module in " + config_.path + " but libtorch could not load it: " + m);
  }
  module_.eval();
  int64_t c = config_.in_channels;
  std::vector<float> mean(c, 0.5f), stdv(c, 0.5f);
  for (int64_t i = 0; i < c && i < static_cast<int64_t>(config_.mean.size()); ++i) mean[i] = static_cast<float>(config_.mean[i]);
  for (int64_t i = 0; i < c && i < static_cast<int64_t>(config_.std.size()); ++i) stdv[i] = static_cast<float>(config_.std[i]);
  mean_ = torch::tensor(mean).view({1, c, 1, 1}).to(device_);
  std_ = torch::tensor(stdv).view({1, c, 1, 1}).to(device_);
  if (config_.probe_h > 0 && config_.probe_w > 0) {
    torch::NoGradGuard no_grad;
    torch::Tensor x = torch::zeros({1, c, config_.probe_h, config_.probe_w}, torch::TensorOptions().device(device_));
    int64_t expected = config_.num_classes;
    torch::Tensor out;
    try {
      out = Logits(x);
    } catch (const UserError& e) {
      std::string m = e.what();
      if (m.rfind("the TorchScript module failed", 0) != 0) throw;  // an output of the wrong kind: as it is
      ThrowError("the TorchScript module in " + config_.path + " failed on a probe input of shape " + ShapeString(x) +
                 " (check inChannels and probeSize): " + m.substr(m.find("]: ") + 3));
    } catch (const std::exception& e) {
      ThrowError("the TorchScript module in " + config_.path + " failed on a probe input of shape " + ShapeString(x) +
                 " (check inChannels and probeSize): " + ScriptError(e));
    }
    if (expected > 0 && out.size(1) != expected) {
      ThrowRange("Expected the TorchScript module to output numClasses = " + std::to_string(expected) +
                 " channels but it outputs " + std::to_string(out.size(1)));
    }
    config_.num_classes = out.size(1);
  } else if (config_.num_classes < 1) {
    ThrowRange("Expected numClasses when the probe is off (probeSize 0)");
  }
}

torch::Tensor ScriptSegmenter::PrepareImages(const torch::Tensor& images) const {
  if (images.dim() != 4) ThrowRange("Expected images of shape [N, C, H, W] but received " + std::to_string(images.dim()) + " dimensions");
  if (images.size(1) != config_.in_channels) {
    ThrowRange("Expected images with " + std::to_string(config_.in_channels) + " channels but received " + std::to_string(images.size(1)));
  }
  if (images.scalar_type() == torch::kByte && images.is_cpu() && device_.is_cpu()) return NormalizeBytes(images, mean_, std_, at::MemoryFormat::Contiguous);
  torch::Tensor x = images.to(device_, /*non_blocking=*/true);
  if (x.scalar_type() == torch::kByte) return x.to(torch::kFloat).div_(255.0).sub_(mean_).div_(std_);
  if (!x.is_floating_point()) {
    ThrowType("Expected images of dtype uint8 or float32/float16/bfloat16 but received " + std::string(c10::toString(x.scalar_type())));
  }
  x = x.to(torch::kFloat);
  if (!torch::isfinite(x).all().item<bool>()) ThrowRange("Expected finite image values but the images contain NaN or Inf");
  return x;
}

torch::Tensor ScriptSegmenter::Logits(const torch::Tensor& x) {
  c10::IValue result;
  try {
    result = module_.forward({x});
  } catch (const std::exception& e) {
    ThrowError("the TorchScript module failed on an input of shape " + ShapeString(x) + ": " + ScriptError(e));
  }
  c10::IValue v = result;
  if (v.isTuple()) {
    const auto& e = v.toTupleRef().elements();
    if (!e.empty()) v = e[0];
  } else if (v.isList()) {
    auto l = v.toList();
    if (l.size() > 0) v = l.get(0);
  }
  if (v.isGenericDict()) {
    auto d = v.toGenericDict();
    bool string_keys = d.keyType()->kind() == c10::TypeKind::StringType;
    if (string_keys && d.contains(c10::IValue(std::string("out")))) v = d.at(c10::IValue(std::string("out")));
  }
  if (!v.isTensor()) {
    ThrowError(std::string("TorchScript module output for an input of shape ") + ShapeString(x) + ": " + kExpected + ", got " + DescribeIValue(result));
  }
  torch::Tensor t = v.toTensor();
  if (t.dim() != 4 || t.size(0) != x.size(0) || !t.is_floating_point()) {
    ThrowError(std::string("TorchScript module output for an input of shape ") + ShapeString(x) + ": " + kExpected +
               ", got " + DescribeIValue(v) + (v.isTensor() && !result.isTensor() ? " inside " + DescribeIValue(result) : ""));
  }
  t = t.to(torch::kFloat);
  if (t.size(2) != x.size(2) || t.size(3) != x.size(3)) {
    t = F::interpolate(t, F::InterpolateFuncOptions().size(std::vector<int64_t>{x.size(2), x.size(3)}).mode(torch::kBilinear).align_corners(false));
  }
  return t;
}

torch::Tensor ScriptSegmenter::Predict(const torch::Tensor& images, const InferOptions& options) {
  if (options.precision == Precision::kFp16) {
    ThrowRange("Expected precision 'fp32' or 'bf16' for inference but received 'fp16'");
  }
  // NoGradGuard, the portable choice for arbitrary user modules: InferenceMode would make the
  // module's outputs (and anything it caches from them) inference tensors, which cannot enter
  // autograd or in-place updates outside inference mode later.
  torch::NoGradGuard no_grad;
  torch::Tensor x = PrepareImages(images);
  LogitsFn logits = [&](const torch::Tensor& input) {
    AutocastGuard guard(device_, at::kBFloat16, options.precision == Precision::kBf16);
    return Logits(input);
  };
  torch::Tensor colours;
  if (options.crf.enabled) colours = images.scalar_type() == torch::kByte ? images.to(device_) : (x * std_ + mean_).mul_(255.0);
  torch::Tensor out = InferWithCrf(logits, x, colours, options);
  if (out.dim() == 4 && out.size(1) != config_.num_classes) {
    ThrowError("the TorchScript module output " + std::to_string(out.size(1)) + " classes but the probe found " +
               std::to_string(config_.num_classes));
  }
  return out;
}

void ScriptSegmenter::EvalReset(int64_t ignore_index) { evaluation_.Reset(config_.num_classes, ignore_index, device_); }

void ScriptSegmenter::EvalUpdate(const torch::Tensor& images, const torch::Tensor& masks, const InferOptions& options) {
  evaluation_.Update(images, masks, options, [this](const torch::Tensor& x, const InferOptions& o) { return Predict(x, o); });
}

EvalResult ScriptSegmenter::EvalCompute() const { return evaluation_.Compute(); }

int64_t ScriptSegmenter::NumParameters() const {
  int64_t n = 0;
  for (const auto& p : module_.parameters()) n += p.numel();
  return n;
}

}  // namespace segtorch
