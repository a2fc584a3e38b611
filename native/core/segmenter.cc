#include "core/segmenter.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>

#include <iterator>
#include <map>
#include <sstream>

#include "backbones/backbone.h"
#include "common/errors.h"
#include "common/state_dict.h"

namespace segtorch {

namespace F = torch::nn::functional;

torch::Device ParseDevice(const std::string& device) {
  torch::Device d = torch::kCPU;
  try {
    d = torch::Device(device);
  } catch (const std::exception&) {
    ThrowRange("Expected device 'cpu', 'cuda' or 'cuda:N' but received '" + device + "'");
  }
  if (d.is_cuda()) {
    if (!torch::cuda::is_available()) {
      ThrowError("device '" + device + "' requested but CUDA is not available: this segtorch is built against a " +
                 "libtorch without CUDA or no GPU is visible (see README: using a CUDA libtorch)");
    }
    int64_t n = static_cast<int64_t>(torch::cuda::device_count());
    if (d.has_index() && d.index() >= n) {
      ThrowRange("device '" + device + "' requested but only " + std::to_string(n) + " CUDA device(s) exist");
    }
  } else if (!d.is_cpu()) {
    ThrowRange("Expected device 'cpu', 'cuda' or 'cuda:N' but received '" + device + "'");
  }
  return d;
}

Segmenter::Segmenter(ModelConfig config) : config_(std::move(config)), device_(ParseDevice(config_.device)) {
  if (config_.num_classes < 1) ThrowRange("Expected numClasses >= 1 but received " + std::to_string(config_.num_classes));
  if (config_.in_channels < 1) ThrowRange("Expected inChannels >= 1 but received " + std::to_string(config_.in_channels));
  net_ = CreateNetwork(config_);
  net_->to(device_);
  net_->eval();
  auto c = config_.in_channels;
  std::vector<float> mean(c, 0.5f), stdv(c, 0.5f);
  if (c == 3 && config_.mean.empty()) mean = {0.485f, 0.456f, 0.406f};
  if (c == 3 && config_.std.empty()) stdv = {0.229f, 0.224f, 0.225f};
  if (!config_.mean.empty()) {
    if (static_cast<int64_t>(config_.mean.size()) != c) ThrowRange("Expected mean to have inChannels entries");
    for (int64_t i = 0; i < c; ++i) mean[i] = static_cast<float>(config_.mean[i]);
  }
  if (!config_.std.empty()) {
    if (static_cast<int64_t>(config_.std.size()) != c) ThrowRange("Expected std to have inChannels entries");
    for (int64_t i = 0; i < c; ++i) stdv[i] = static_cast<float>(config_.std[i]);
  }
  mean_ = torch::tensor(mean).view({1, c, 1, 1}).to(device_);
  std_ = torch::tensor(stdv).view({1, c, 1, 1}).to(device_);
}

torch::Tensor Segmenter::PrepareImages(const torch::Tensor& images) const {
  if (images.dim() != 4) ThrowRange("Expected images of shape [N, C, H, W] but received " + std::to_string(images.dim()) + " dimensions");
  if (images.size(1) != config_.in_channels) {
    ThrowRange("Expected images with " + std::to_string(config_.in_channels) + " channels but received " +
               std::to_string(images.size(1)));
  }
  if (images.size(0) < 1 || images.size(2) < 1 || images.size(3) < 1) ThrowRange("Expected non-empty images");
  torch::Tensor x = images.to(device_, /*non_blocking=*/true);
  if (x.scalar_type() == torch::kByte) {
    x = x.to(torch::kFloat).div_(255.0).sub_(mean_).div_(std_);
  } else if (x.is_floating_point()) {
    x = x.to(torch::kFloat);
    if (!torch::isfinite(x).all().item<bool>()) ThrowRange("Expected finite image values but the images contain NaN or Inf");
  } else {
    ThrowType("Expected images of dtype uint8 or float32/float16/bfloat16 but received " +
              std::string(c10::toString(x.scalar_type())));
  }
  if (x.is_inference()) x = x.clone();
  return x;
}

torch::Tensor Segmenter::PrepareMasks(const torch::Tensor& masks, const torch::Tensor& images, int64_t ignore_index) const {
  if (masks.dim() != 3) ThrowRange("Expected masks of shape [N, H, W] but received " + std::to_string(masks.dim()) + " dimensions");
  if (masks.size(0) != images.size(0) || masks.size(1) != images.size(2) || masks.size(2) != images.size(3)) {
    ThrowRange("Expected masks of shape [" + std::to_string(images.size(0)) + ", " + std::to_string(images.size(2)) + ", " +
               std::to_string(images.size(3)) + "] to match the images but received [" + std::to_string(masks.size(0)) +
               ", " + std::to_string(masks.size(1)) + ", " + std::to_string(masks.size(2)) + "]");
  }
  auto st = masks.scalar_type();
  if (st != torch::kByte && st != torch::kLong && st != torch::kInt) {
    ThrowType("Expected masks of dtype uint8, int32 or int64 but received " + std::string(c10::toString(st)));
  }
  torch::Tensor m = masks.to(device_, /*non_blocking=*/true).to(torch::kLong);
  torch::Tensor bad = ((m < 0) | (m >= config_.num_classes)) & (m != ignore_index);
  if (bad.any().item<bool>()) {
    int64_t value = m.masked_select(bad).flatten()[0].item<int64_t>();
    ThrowRange("Expected mask labels in [0, " + std::to_string(config_.num_classes) + ") or ignoreIndex " +
               std::to_string(ignore_index) + " but received " + std::to_string(value));
  }
  if (m.is_inference()) m = m.clone();
  return m;
}

SegOutput Segmenter::Run(const torch::Tensor& x) {
  int64_t h = x.size(2), w = x.size(3), k = net_->input_multiple();
  int64_t ph = (k - h % k) % k, pw = (k - w % k) % k;
  if (ph == 0 && pw == 0) return net_->forward(x);
  // Zero padding after normalisation is padding with the mean colour.
  torch::Tensor padded = F::pad(x, F::PadFuncOptions({0, pw, 0, ph}));
  SegOutput out = net_->forward(padded);
  auto crop = [&](const torch::Tensor& t) {
    if (t.size(2) == padded.size(2) && t.size(3) == padded.size(3)) return t.narrow(2, 0, h).narrow(3, 0, w);
    return t;  // outputs at another scale (cascades) are left as they are
  };
  out.out = crop(out.out);
  for (auto& a : out.aux) a.second = crop(a.second);
  return out;
}

SegOutput Segmenter::Forward(const torch::Tensor& images) {
  torch::NoGradGuard no_grad;
  SegOutput out = Run(PrepareImages(images));
  out.out = out.out.contiguous();
  return out;
}

std::vector<torch::Tensor> Segmenter::Features(const torch::Tensor& images) {
  torch::NoGradGuard no_grad;
  auto children = net_->named_children();
  auto* child = children.find("backbone");
  std::shared_ptr<BackboneImpl> backbone = child ? std::dynamic_pointer_cast<BackboneImpl>(*child) : nullptr;
  if (!backbone) ThrowRange("Expected an architecture with a backbone for features() but " + config_.arch + " has none");
  auto feats = backbone->forward(PrepareImages(images));
  for (auto& f : feats) f = f.contiguous();
  return feats;
}

torch::Tensor Segmenter::Predict(const torch::Tensor& images) {
  bool was_training = net_->is_training();
  net_->eval();
  torch::Tensor labels;
  {
    torch::NoGradGuard no_grad;
    labels = Run(PrepareImages(images)).out.argmax(1).to(torch::kInt);
  }
  net_->train(was_training);
  return labels;
}

void Segmenter::EnsureOptimizer(const OptimizerOptions& o) {
  if (!optimizer_ || optimizer_type_ != o.type) {
    auto params = net_->parameters();
    if (o.type == "sgd") {
      optimizer_ = std::make_unique<torch::optim::SGD>(
          params, torch::optim::SGDOptions(o.lr).momentum(o.momentum).weight_decay(o.weight_decay).nesterov(o.nesterov));
    } else if (o.type == "adam") {
      optimizer_ = std::make_unique<torch::optim::Adam>(
          params, torch::optim::AdamOptions(o.lr).betas({o.beta1, o.beta2}).eps(o.eps).weight_decay(o.weight_decay));
    } else if (o.type == "adamw") {
      optimizer_ = std::make_unique<torch::optim::AdamW>(
          params, torch::optim::AdamWOptions(o.lr).betas({o.beta1, o.beta2}).eps(o.eps).weight_decay(o.weight_decay));
    } else {
      ThrowRange("Expected optimizer.type 'sgd', 'adam' or 'adamw' but received '" + o.type + "'");
    }
    optimizer_type_ = o.type;
    return;
  }
  // Same optimizer: take the new hyper-parameters, keep its state (momentum buffers, moments).
  for (auto& group : optimizer_->param_groups()) {
    if (o.type == "sgd") {
      auto& so = static_cast<torch::optim::SGDOptions&>(group.options());
      so.lr(o.lr).momentum(o.momentum).weight_decay(o.weight_decay).nesterov(o.nesterov);
    } else if (o.type == "adam") {
      auto& ao = static_cast<torch::optim::AdamOptions&>(group.options());
      ao.lr(o.lr).betas({o.beta1, o.beta2}).eps(o.eps).weight_decay(o.weight_decay);
    } else {
      auto& ao = static_cast<torch::optim::AdamWOptions&>(group.options());
      ao.lr(o.lr).betas({o.beta1, o.beta2}).eps(o.eps).weight_decay(o.weight_decay);
    }
  }
}


torch::Tensor Segmenter::Loss(const torch::Tensor& x, const torch::Tensor& y, const TrainStepOptions& o, StepResult* parts) {
  SegOutput out = Run(x);
  torch::Tensor main = SegmentationCrossEntropy(out.out, y, o.ignore_index);
  torch::Tensor loss = main;
  std::vector<std::pair<std::string, torch::Tensor>> terms{{"main", main}};
  for (auto& a : out.aux) {
    torch::Tensor l = net_->AuxLoss(a.first, a.second, y, o.ignore_index);
    if (!l.defined()) continue;
    loss = loss + net_->AuxWeight(a.first, o.aux_weight) * l;
    terms.emplace_back(a.first, l);
  }
  if (parts) {
    for (auto& t : terms) parts->parts.emplace_back(t.first, t.second.item<double>());
    parts->loss = loss.item<double>();
  }
  return loss;
}

StepResult Segmenter::TrainStep(const torch::Tensor& images, const torch::Tensor& masks, const TrainStepOptions& o) {
  torch::Tensor x = PrepareImages(images);
  torch::Tensor y = PrepareMasks(masks, images, o.ignore_index);
  EnsureOptimizer(o.optimizer);
  bool was_training = net_->is_training();
  net_->train();
  StepResult result;
  try {
    torch::Tensor loss = Loss(x, y, o, &result);
    if (!std::isfinite(result.loss)) {
      ThrowError("training step " + std::to_string(steps_ + 1) + " produced a non-finite loss (" +
                 std::to_string(result.loss) + "); the weights were not updated. Lower the learning rate or check the data.");
    }
    optimizer_->zero_grad();
    loss.backward();
    optimizer_->step();
  } catch (...) {
    net_->train(was_training);
    throw;
  }
  net_->train(was_training);
  result.step = ++steps_;
  return result;
}

std::vector<std::string> Segmenter::ParametersWithoutGradient(const torch::Tensor& images, const torch::Tensor& masks,
                                                              const TrainStepOptions& o) {
  torch::Tensor x = PrepareImages(images);
  torch::Tensor y = PrepareMasks(masks, images, o.ignore_index);
  bool was_training = net_->is_training();
  net_->train();
  for (auto& p : net_->parameters()) p.mutable_grad() = torch::Tensor();
  std::vector<std::string> missing;
  try {
    Loss(x, y, o, nullptr).backward();
    for (auto& kv : net_->named_parameters()) {
      const auto& g = kv.value().grad();
      if (kv.value().requires_grad() && (!g.defined() || !torch::isfinite(g).all().item<bool>())) missing.push_back(kv.key());
    }
  } catch (...) {
    net_->train(was_training);
    throw;
  }
  for (auto& p : net_->parameters()) p.mutable_grad() = torch::Tensor();
  net_->train(was_training);
  return missing;
}

namespace {
std::string ShapeString(at::IntArrayRef s) {
  std::ostringstream o;
  o << "[";
  for (size_t i = 0; i < s.size(); ++i) o << (i ? ", " : "") << s[i];
  o << "]";
  return o.str();
}

}  // namespace

void Segmenter::SaveStateDict(const std::string& path) const {
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (const auto& kv : net_->named_parameters()) tensors.emplace_back(kv.key(), kv.value().detach());
  for (const auto& kv : net_->named_buffers()) tensors.emplace_back(kv.key(), kv.value());
  try {
    WriteStateDict(path, tensors);
  } catch (const std::exception& e) {
    ThrowError(CleanMessage(e));
  }
}

std::vector<std::pair<std::string, std::vector<int64_t>>> Segmenter::StateDictShapes() const {
  std::vector<std::pair<std::string, std::vector<int64_t>>> out;
  for (const auto& kv : net_->named_parameters()) out.emplace_back(kv.key(), kv.value().sizes().vec());
  for (const auto& kv : net_->named_buffers()) out.emplace_back(kv.key(), kv.value().sizes().vec());
  return out;
}

StateDictReport Segmenter::LoadStateDict(const std::string& path, bool strict, const std::string& prefix) {
  std::map<std::string, torch::Tensor> file;
  try {
    for (auto& kv : ReadStateDict(path)) file.emplace(std::move(kv.first), std::move(kv.second));
  } catch (const UserError&) {
    throw;
  } catch (const std::exception& e) {
    ThrowError(CleanMessage(e));
  }
  std::map<std::string, torch::Tensor> ours;
  for (const auto& kv : net_->named_parameters()) ours[kv.key()] = kv.value();
  for (const auto& kv : net_->named_buffers()) ours[kv.key()] = kv.value();
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
    ThrowError(path + " does not match this " + config_.arch + "/" + config_.backbone + " model (nothing was loaded): missing keys: " +
               list(report.missing) + "; unexpected keys: " + list(report.unexpected) + "; mis-shaped keys: " + list(report.mismatched));
  }
  torch::NoGradGuard no_grad;
  for (auto& c : copies) c.first.copy_(c.second.to(c.first.device(), c.first.scalar_type()));
  report.loaded = static_cast<int64_t>(copies.size());
  return report;
}

int64_t Segmenter::NumParameters(bool trainable_only) const {
  int64_t n = 0;
  for (const auto& p : net_->parameters()) {
    if (!trainable_only || p.requires_grad()) n += p.numel();
  }
  return n;
}

namespace {
constexpr const char* kConfigKey = "segtorch_config";
constexpr const char* kFormatKey = "segtorch_format";
constexpr int64_t kFormat = 1;

void FsyncPath(const std::string& path, bool directory) {
  int fd = ::open(path.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

std::string DirName(const std::string& path) {
  auto pos = path.find_last_of('/');
  if (pos == std::string::npos) return ".";
  if (pos == 0) return "/";
  return path.substr(0, pos);
}
}  // namespace

void Segmenter::Save(const std::string& path) const {
  torch::serialize::OutputArchive archive;
  net_->save(archive);
  archive.write(kFormatKey, c10::IValue(kFormat));
  archive.write(kConfigKey, c10::IValue(config_.json));
  archive.write("segtorch_steps", c10::IValue(steps_));
  std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  try {
    archive.save_to(tmp);
  } catch (...) {
    std::remove(tmp.c_str());
    throw;
  }
  FsyncPath(tmp, false);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    ThrowError("could not move the saved model into place at " + path);
  }
  FsyncPath(DirName(path), true);
}

namespace {
torch::serialize::InputArchive OpenArchive(const std::string& path) {
  {
    std::ifstream f(path, std::ios::binary);
    if (!f) ThrowError("cannot open model file " + path + ": no such file or not readable");
  }
  torch::serialize::InputArchive archive;
  try {
    archive.load_from(path);
  } catch (const std::exception& e) {
    ThrowError(path + " is not a segtorch model file (" + CleanMessage(e) + ")");
  }
  c10::IValue format;
  if (!archive.try_read(kFormatKey, format) || !format.isInt()) {
    ThrowError(path + " is not a segtorch model file (no segtorch format marker)");
  }
  if (format.toInt() > kFormat) {
    ThrowError(path + " was written by a newer segtorch (format " + std::to_string(format.toInt()) + ")");
  }
  return archive;
}
}  // namespace

std::string Segmenter::ReadConfig(const std::string& path) {
  auto archive = OpenArchive(path);
  c10::IValue config;
  if (!archive.try_read(kConfigKey, config) || !config.isString()) ThrowError(path + " holds no segtorch configuration");
  return config.toStringRef();
}

void Segmenter::Load(const std::string& path) {
  auto archive = OpenArchive(path);
  // Load into a fresh network first so that a bad file leaves this model untouched.
  ModelPtr fresh = CreateNetwork(config_);
  try {
    fresh->load(archive);
  } catch (const std::exception& e) {
    ThrowError("cannot load " + path + " into this " + config_.arch + " model: " + CleanMessage(e));
  }
  fresh->to(device_);
  fresh->train(net_->is_training());
  net_ = fresh;
  optimizer_.reset();
  optimizer_type_.clear();
  c10::IValue steps;
  if (archive.try_read("segtorch_steps", steps) && steps.isInt()) steps_ = steps.toInt();
}

}  // namespace segtorch
