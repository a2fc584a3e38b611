#include "core/segmenter.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <type_traits>

#include <iterator>
#include <map>
#include <sstream>

#include "backbones/backbone.h"
#include "common/alloc_budget.h"
#include "common/archive.h"
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
  // cuDNN picks the fastest algorithm per input shape (training shapes repeat batch after batch).
  if (device_.is_cuda()) at::globalContext().setBenchmarkCuDNN(true);
  {
    AllocationBudget budget(config_.max_build_bytes, "the network this file's configuration describes");
    net_ = CreateNetwork(config_);
  }
  if (config_.max_parameters > 0 && NumParameters(false) > config_.max_parameters) {
    ThrowRange("the network this configuration describes has " + std::to_string(NumParameters(false)) +
               " parameters, more than maxParameters (" + std::to_string(config_.max_parameters) + ")");
  }
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
  // To a GPU: through pinned host memory so that the copy is asynchronous (it overlaps the work
  // already queued on the stream, e.g. the end of the previous step) and the host does not wait.
  torch::Tensor host = images;
  if (device_.is_cuda() && images.is_cpu() && !images.is_pinned()) host = images.pin_memory();
  torch::Tensor x = host.to(device_, /*non_blocking=*/true);
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
  torch::Tensor host = masks;
  if (device_.is_cuda() && masks.is_cpu() && !masks.is_pinned()) host = masks.pin_memory();
  torch::Tensor m = host.to(device_, /*non_blocking=*/true).to(torch::kLong);
  torch::Tensor bad = ((m < 0) | (m >= config_.num_classes)) & (m != ignore_index);
  if (bad.any().item<bool>()) {
    int64_t value = m.masked_select(bad).flatten()[0].item<int64_t>();
    ThrowRange("Expected mask labels in [0, " + std::to_string(config_.num_classes) + ") or ignoreIndex " +
               std::to_string(ignore_index) + " but received " + std::to_string(value));
  }
  if (m.is_inference()) m = m.clone();
  return m;
}

SegOutput Segmenter::Run(const torch::Tensor& x, SegmentationModel* net) {
  if (!net) net = net_.get();
  int64_t h = x.size(2), w = x.size(3), k = net->input_multiple();
  int64_t ph = (k - h % k) % k, pw = (k - w % k) % k;
  if (ph == 0 && pw == 0) return net->forward(x);
  // Zero padding after normalisation is padding with the mean colour.
  torch::Tensor padded = F::pad(x, F::PadFuncOptions({0, pw, 0, ph}));
  SegOutput out = net->forward(padded);
  auto crop = [&](const torch::Tensor& t) {
    if (t.size(2) == padded.size(2) && t.size(3) == padded.size(3)) return t.narrow(2, 0, h).narrow(3, 0, w);
    // Outputs at another scale (cascades): keep the share that covers the unpadded image.
    int64_t oh = (h * t.size(2) + padded.size(2) - 1) / padded.size(2);
    int64_t ow = (w * t.size(3) + padded.size(3) - 1) / padded.size(3);
    return t.narrow(2, 0, std::max<int64_t>(1, oh)).narrow(3, 0, std::max<int64_t>(1, ow));
  };
  out.out = crop(out.out);
  for (auto& a : out.aux) a.second = crop(a.second);
  return out;
}

SegOutput Segmenter::Forward(const torch::Tensor& images, const std::string& precision) {
  torch::NoGradGuard no_grad;
  if (net_->is_training()) ++changes_;  // BN statistics move
  torch::Tensor x = PrepareImages(images);
  SegOutput out;
  {
    AutocastGuard guard(device_, at::kBFloat16, precision == "bf16");
    out = Run(channels_last_ ? x.contiguous(at::MemoryFormat::ChannelsLast) : x);
  }
  out.out = out.out.to(torch::kFloat).contiguous();
  for (auto& a : out.aux) a.second = a.second.to(torch::kFloat);
  return out;
}

std::vector<torch::Tensor> Segmenter::Features(const torch::Tensor& images) {
  torch::NoGradGuard no_grad;
  if (net_->is_training()) ++changes_;
  auto children = net_->named_children();
  auto* child = children.find("backbone");
  std::shared_ptr<BackboneImpl> backbone = child ? std::dynamic_pointer_cast<BackboneImpl>(*child) : nullptr;
  if (!backbone) ThrowRange("Expected an architecture with a backbone for features() but " + config_.arch + " has none");
  auto feats = backbone->forward(PrepareImages(images));
  for (auto& f : feats) f = f.contiguous();
  return feats;
}

int64_t Segmenter::WeightsVersion() const {
  int64_t v = changes_;
  for (const auto& p : net_->parameters()) v += static_cast<int64_t>(p._version());
  for (const auto& b : net_->buffers()) v += static_cast<int64_t>(b._version());
  return v;
}

namespace {
// Convolution weights and biases (Conv2d, ConvTranspose2d) of `net` to `dtype`, layout kept.
void CastConvolutions(torch::nn::Module& net, at::ScalarType dtype) {
  auto cast = [dtype](torch::Tensor& t) {
    if (t.defined() && t.scalar_type() != dtype) t.set_data(t.data().to(dtype));
  };
  for (auto& m : net.modules(/*include_self=*/false)) {
    if (auto* conv = m->as<torch::nn::Conv2d>()) {
      cast(conv->weight);
      cast(conv->bias);
    } else if (auto* up = m->as<torch::nn::ConvTranspose2d>()) {
      cast(up->weight);
      cast(up->bias);
    }
  }
}
}  // namespace

SegmentationModel& Segmenter::FoldedNet(bool channels_last, at::ScalarType dtype) {
  torch::NoGradGuard no_grad;
  int64_t version = WeightsVersion();
  if (!folded_ || folded_source_ != net_.get()) {
    // A fresh copy of the architecture; which BNs fold is found once, by tracing it.
    folded_.reset();
    fold_pairs_.clear();
    ModelPtr copy = CreateNetwork(config_);
    copy->to(device_);
    copy->eval();
    int64_t k = copy->input_multiple(), s = std::max<int64_t>(64, 2 * k);
    s = (s + k - 1) / k * k;
    torch::Tensor example = torch::randn({1, config_.in_channels, s, s}, torch::TensorOptions().device(device_));
    fold_pairs_ = FindFoldPairs(*copy, [&]() {
      SegOutput out = copy->forward(example);
      std::vector<torch::Tensor> all{out.out};
      for (auto& a : out.aux) all.push_back(a.second);
      return all;
    });
    folded_ = copy;
    folded_source_ = net_.get();
    folded_version_ = -1;
    folded_channels_last_ = false;
    folded_dtype_ = at::kFloat;
  }
  if (folded_version_ != version || folded_dtype_ != dtype) {
    // Copied and folded in fp32 (the scale in double), then cast once to the inference type.
    if (folded_dtype_ != at::kFloat) CastConvolutions(*folded_, at::kFloat);
    folded_dtype_ = at::kFloat;
    UnfoldBatchNorm(fold_pairs_);
    auto src_p = net_->named_parameters(), dst_p = folded_->named_parameters();
    for (const auto& kv : src_p) dst_p[kv.key()].copy_(kv.value());
    auto src_b = net_->named_buffers(), dst_b = folded_->named_buffers();
    for (const auto& kv : src_b) dst_b[kv.key()].copy_(kv.value());
    FoldBatchNorm(fold_pairs_);
    if (dtype != at::kFloat) CastConvolutions(*folded_, dtype);
    folded_dtype_ = dtype;
    folded_version_ = version;
  }
  if (folded_channels_last_ != channels_last) {
    auto format = channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
    for (auto& p : folded_->parameters()) {
      if (p.dim() == 4) p.set_data(p.data().contiguous(format));
    }
    for (const auto& pair : fold_pairs_) pair.conv->weight.set_data(pair.conv->weight.data().contiguous(format));
    folded_channels_last_ = channels_last;
  }
  return *folded_;
}

torch::Tensor Segmenter::Predict(const torch::Tensor& images, const InferOptions& options) {
  if (options.precision != "fp32" && options.precision != "bf16" && options.precision != "fp16") {
    ThrowRange("Expected precision 'fp32', 'bf16' or 'fp16' for inference but received '" + options.precision + "'");
  }
  if (options.precision == "fp16" && device_.is_cpu()) {
    ThrowRange("Expected precision 'fp32' or 'bf16' on the CPU but received 'fp16' (fp16 autocast needs CUDA)");
  }
  bool was_training = net_->is_training();
  torch::Tensor result;
  try {
    SegmentationModel* net = net_.get();
    at::ScalarType dtype = options.precision == "fp16" ? at::kHalf : options.precision == "bf16" ? at::kBFloat16 : at::kFloat;
    if (options.fold_batch_norm) {
      net = &FoldedNet(options.channels_last, dtype);
    } else {
      net_->eval();
      SetLayout(options.channels_last);
    }
    c10::InferenceMode inference;
    torch::Tensor x = PrepareImages(images);
    if (options.channels_last) x = x.contiguous(at::MemoryFormat::ChannelsLast);
    LogitsFn logits = [&](const torch::Tensor& input) {
      AutocastGuard guard(device_, dtype, dtype != at::kFloat);
      return Run(input, net).out;
    };
    // The CRF's colours: the images on a 0..255 scale (float images are taken as normalised with
    // this model's mean and std).
    torch::Tensor colours;
    if (options.crf.enabled) colours = images.scalar_type() == torch::kByte ? images : (x * std_ + mean_).mul_(255.0);
    result = InferWithCrf(logits, x, colours, options);
  } catch (...) {
    net_->train(was_training);
    throw;
  }
  net_->train(was_training);
  // Inference tensors cannot enter autograd later (e.g. as pseudo-labels): return a normal tensor.
  return result.clone();
}

namespace {
bool IsNoDecay(const std::string& name, const torch::Tensor& p) {
  // Biases and normalisation weights (1-D parameters) get no weight decay.
  return p.dim() <= 1 || (name.size() >= 5 && name.compare(name.size() - 5, 5, ".bias") == 0);
}

template <typename Options>
Options& GroupOptions(torch::optim::OptimizerParamGroup& g) {
  return static_cast<Options&>(g.options());
}
}  // namespace

void Segmenter::EnsureOptimizer(const TrainStepOptions& t) {
  const OptimizerOptions& o = t.optimizer;
  if (o.type != "sgd" && o.type != "adam" && o.type != "adamw") {
    ThrowRange("Expected optimizer.type 'sgd', 'adam' or 'adamw' but received '" + o.type + "'");
  }
  bool grouped = t.head_lr_multiplier != 1.0 || t.no_decay_norm_bias;
  std::string signature = o.type + (grouped ? "/groups:" + std::to_string(t.head_lr_multiplier) + (t.no_decay_norm_bias ? "/nodecay" : "") : "");
  if (!optimizer_ || optimizer_signature_ != signature) {
    // Groups: backbone / head (head lr x multiplier), each split into decay / no-decay.
    std::vector<std::vector<torch::Tensor>> params(4);
    for (const auto& kv : net_->named_parameters()) {
      if (!kv.value().requires_grad()) continue;
      bool head = kv.key().compare(0, 9, "backbone.") != 0;
      bool nodecay = t.no_decay_norm_bias && IsNoDecay(kv.key(), kv.value());
      params[(grouped && head ? 2 : 0) + (nodecay ? 1 : 0)].push_back(kv.value());
    }
    std::vector<torch::optim::OptimizerParamGroup> groups;
    group_base_lr_.clear();
    group_kinds_.clear();
    for (int g = 0; g < 4; ++g) {
      if (params[g].empty()) continue;
      double lr = o.lr * (g >= 2 ? t.head_lr_multiplier : 1.0);
      double wd = (g % 2 == 1) ? 0.0 : o.weight_decay;
      std::unique_ptr<torch::optim::OptimizerOptions> opts;
      if (o.type == "sgd") {
        opts = std::make_unique<torch::optim::SGDOptions>(torch::optim::SGDOptions(lr).momentum(o.momentum).weight_decay(wd).nesterov(o.nesterov));
      } else if (o.type == "adam") {
        opts = std::make_unique<torch::optim::AdamOptions>(torch::optim::AdamOptions(lr).betas({o.beta1, o.beta2}).eps(o.eps).weight_decay(wd));
      } else {
        opts = std::make_unique<torch::optim::AdamWOptions>(torch::optim::AdamWOptions(lr).betas({o.beta1, o.beta2}).eps(o.eps).weight_decay(wd));
      }
      groups.emplace_back(params[g], std::move(opts));
      group_base_lr_.push_back(lr);
      group_kinds_.push_back({g >= 2 ? t.head_lr_multiplier : 1.0, g % 2 == 1});
    }
    if (o.type == "sgd") {
      optimizer_ = std::make_unique<torch::optim::SGD>(groups, torch::optim::SGDOptions(o.lr));
    } else if (o.type == "adam") {
      optimizer_ = std::make_unique<torch::optim::Adam>(groups, torch::optim::AdamOptions(o.lr));
    } else {
      optimizer_ = std::make_unique<torch::optim::AdamW>(groups, torch::optim::AdamWOptions(o.lr));
    }
    optimizer_signature_ = signature;
    if (!pending_optimizer_.empty() && pending_signature_ == signature) RestoreOptimizerState(pending_optimizer_);
    pending_optimizer_.clear();
  }
  // Same optimizer: take the new hyper-parameters, keep its state (momentum buffers, moments).
  auto& groups = optimizer_->param_groups();
  for (size_t i = 0; i < groups.size() && i < group_kinds_.size(); ++i) {
    double wd = group_kinds_[i].no_decay ? 0.0 : o.weight_decay;
    group_base_lr_[i] = o.lr * group_kinds_[i].lr_multiplier;
    if (o.type == "sgd") {
      GroupOptions<torch::optim::SGDOptions>(groups[i]).momentum(o.momentum).weight_decay(wd).nesterov(o.nesterov);
    } else if (o.type == "adam") {
      GroupOptions<torch::optim::AdamOptions>(groups[i]).betas({o.beta1, o.beta2}).eps(o.eps).weight_decay(wd);
    } else {
      GroupOptions<torch::optim::AdamWOptions>(groups[i]).betas({o.beta1, o.beta2}).eps(o.eps).weight_decay(wd);
    }
  }
}

void Segmenter::SetLearningRates(double factor) {
  auto& groups = optimizer_->param_groups();
  for (size_t i = 0; i < groups.size() && i < group_base_lr_.size(); ++i) {
    groups[i].options().set_lr(group_base_lr_[i] * factor);
  }
}

void Segmenter::SetLayout(bool channels_last) {
  if (channels_last == channels_last_) return;
  torch::NoGradGuard no_grad;
  auto format = channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  for (auto& p : net_->parameters()) {
    if (p.dim() == 4) p.set_data(p.data().contiguous(format));
  }
  channels_last_ = channels_last;
  ++changes_;
}

torch::Tensor Segmenter::Loss(const torch::Tensor& x, const torch::Tensor& y, const TrainStepOptions& o, StepResult* parts,
                              const torch::Tensor& depth) {
  SegOutput out;
  {
    bool autocast = o.precision == "bf16" || o.precision == "fp16";
    AutocastGuard guard(device_, o.precision == "fp16" ? at::kHalf : at::kBFloat16, autocast);
    out = Run(channels_last_ ? x.contiguous(at::MemoryFormat::ChannelsLast) : x);
  }
  LossOptions lo = o.loss_options;
  lo.ignore_index = o.ignore_index;
  torch::Tensor main = SegmentationLoss(o.loss, out.out.to(torch::kFloat), y, lo);
  torch::Tensor loss = main;
  std::vector<std::pair<std::string, torch::Tensor>> terms{{"main", main}};
  for (auto& a : out.aux) {
    torch::Tensor l;
    double w = 0;
    if (a.first == "depth") {
      if (!depth.defined()) continue;  // multi-task models without depth targets: segmentation only
      l = DepthLoss(a.second.to(torch::kFloat), depth.to(a.second.device()), o.depth_loss);
      w = o.depth_weight;
    } else {
      l = net_->AuxLoss(a.first, a.second.to(torch::kFloat), y, o.ignore_index);
      if (!l.defined()) continue;
      w = net_->AuxWeight(a.first, o.aux_weight);
    }
    loss = loss + w * l;
    terms.emplace_back(a.first, l);
  }
  if (parts) {
    for (auto& t : terms) parts->parts.emplace_back(t.first, t.second.item<double>());
    parts->loss = loss.item<double>();
  }
  return loss;
}

// Gradients are released rather than zeroed (PyTorch 2.x's zero_grad(set_to_none=True)): between
// steps they take no memory, and backward allocates each one as the activations it needs are freed,
// so a step's peak holds the activations or the gradients, not both at full size. An optimizer step
// skips parameters without a gradient (no weight decay on a parameter the loss did not reach).
void Segmenter::ClearGradients() {
  for (auto& p : net_->parameters()) p.mutable_grad() = torch::Tensor();
}

StepResult Segmenter::TrainStep(const torch::Tensor& images, const torch::Tensor& masks, const TrainStepOptions& o,
                                const torch::Tensor& depth) {
  if (o.precision == "fp16" && device_.is_cpu()) {
    ThrowRange("Expected precision 'fp32' or 'bf16' on the CPU but received 'fp16' (fp16 autocast needs CUDA)");
  }
  if (o.accumulate < 1) ThrowRange("Expected accumulate >= 1");
  torch::Tensor x = PrepareImages(images);
  torch::Tensor y = PrepareMasks(masks, images, o.ignore_index);
  torch::Tensor d;
  if (depth.defined()) {
    d = depth.to(device_, torch::kFloat);
    if (d.dim() == 4) d = d.squeeze(1);
    if (d.sizes() != y.sizes()) ThrowRange("Expected depth targets of shape [N, H, W] (or [N, 1, H, W]) matching the masks");
  }
  EnsureOptimizer(o);
  SetLayout(o.channels_last);
  ++changes_;
  bool was_training = net_->is_training();
  net_->train();
  StepResult result;
  try {
    if (micro_ % o.accumulate == 0) ClearGradients();
    torch::Tensor loss = Loss(x, y, o, &result, d);
    bool fp16 = o.precision == "fp16";
    if (!std::isfinite(result.loss) && !fp16) {
      ClearGradients();
      ThrowError("training step " + std::to_string(steps_ + 1) + " produced a non-finite loss (" +
                 std::to_string(result.loss) + "); the weights were not updated. Lower the learning rate or check the data.");
    }
    (loss * ((fp16 ? scaler_.scale : 1.0) / static_cast<double>(o.accumulate))).backward();
    ++micro_;
    if (micro_ % o.accumulate == 0) {
      auto params = net_->parameters();
      bool ok = fp16 ? scaler_.UnscaleAndCheck(params) : true;
      if (ok) {
        if (o.clip_grad_norm > 0) torch::nn::utils::clip_grad_norm_(params, o.clip_grad_norm);
        double factor = LrFactor(o.schedule, steps_);
        SetLearningRates(factor);
        result.lr = group_base_lr_.empty() ? 0 : group_base_lr_[0] * factor;
        for (double b : group_base_lr_) result.lrs.push_back(b * factor);
        optimizer_->step();
        ++steps_;
        result.updated = true;
      } else {
        result.skipped = true;
      }
      ClearGradients();
    } else {
      result.lr = group_base_lr_.empty() ? 0 : group_base_lr_[0] * LrFactor(o.schedule, steps_);
    }
  } catch (...) {
    net_->train(was_training);
    throw;
  }
  net_->train(was_training);
  result.step = steps_;
  return result;
}

void Segmenter::Seed(uint64_t seed) { torch::manual_seed(seed); }

void Segmenter::EvalReset(int64_t ignore_index) { evaluation_.Reset(config_.num_classes, ignore_index, device_); }

void Segmenter::EvalUpdate(const torch::Tensor& images, const torch::Tensor& masks, const InferOptions& options) {
  evaluation_.Update(images, masks, options, [this](const torch::Tensor& x, const InferOptions& o) { return Predict(x, o); });
}

EvalResult Segmenter::EvalCompute() const { return evaluation_.Compute(); }

std::vector<std::string> Segmenter::ParametersWithoutGradient(const torch::Tensor& images, const torch::Tensor& masks,
                                                              const TrainStepOptions& o) {
  torch::Tensor x = PrepareImages(images);
  torch::Tensor y = PrepareMasks(masks, images, o.ignore_index);
  SetLayout(o.channels_last);
  ++changes_;
  bool was_training = net_->is_training();
  net_->train();
  ClearGradients();
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
  ClearGradients();
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
  return ApplyStateDict(file, path, strict, prefix, /*exact_dtype=*/false);
}

StateDictReport Segmenter::ApplyStateDict(const std::map<std::string, torch::Tensor>& file, const std::string& path,
                                          bool strict, const std::string& prefix, bool exact_dtype) {
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
    ThrowError(path + " does not match this " + config_.arch + "/" + config_.backbone + " model (nothing was loaded): missing keys: " +
               list(report.missing) + "; unexpected keys: " + list(report.unexpected) + "; mis-shaped keys: " + list(report.mismatched));
  }
  torch::NoGradGuard no_grad;
  for (auto& c : copies) c.first.copy_(c.second.to(c.first.device(), c.first.scalar_type()));
  ++changes_;
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
constexpr int64_t kFormat = 2;
}  // namespace

// Model files (format 2) are zip archives as torch.save writes them, read back with our own checked
// reader (common/archive.h, common/state_dict.h), never with libtorch's TorchScript loader:
//   data.pkl              the network's state dict (Python's torch.load reads it as an OrderedDict)
//   segtorch/format       "2"
//   segtorch/config.json  the configuration the network is rebuilt from
//   segtorch/state        "key value" lines: steps, micro, loss_scale, optimizer (its signature)
//   segtorch/fit.json     the fit() state of a checkpoint (optional)
//   training.pkl          optimizer state and RNG state of a checkpoint (optional):
//                         "rng", "optimizer.<group>.<param>.<field>"
// Every record is CRC-checked on reading; every tensor's name, shape and dtype is checked against the
// network built from the configuration before anything is copied into it.
void Segmenter::Save(const std::string& path, bool training_state, const std::string& fit_state) const {
  TensorList weights;
  for (const auto& kv : net_->named_parameters()) weights.emplace_back(kv.key(), kv.value().detach());
  for (const auto& kv : net_->named_buffers()) weights.emplace_back(kv.key(), kv.value());
  std::ostringstream state;
  state.precision(17);
  state << "steps " << steps_ << "\n";
  state << "channels_last " << (channels_last_ ? 1 : 0) << "\n";
  std::vector<std::pair<std::string, TensorList>> pickles{{"data.pkl", std::move(weights)}};
  std::vector<std::pair<std::string, std::string>> records{{"segtorch/format", std::to_string(kFormat)},
                                                           {"segtorch/config.json", config_.json}};
  if (training_state) {
    state << "micro " << micro_ << "\n";
    state << "loss_scale " << scaler_.scale << "\n";
    TensorList training;
    if (optimizer_) {
      state << "optimizer " << optimizer_signature_ << "\n";
      training = OptimizerState();
    }
    auto gen = at::detail::getDefaultCPUGenerator();
    {
      std::lock_guard<std::mutex> lock(gen.mutex());
      training.emplace_back("rng", gen.get_state());
    }
    pickles.emplace_back("training.pkl", std::move(training));
    records.emplace_back("segtorch/fit.json", fit_state);
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

namespace {
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

// The key libtorch's optimizers index their per-parameter state with: a string in libtorch 1.x, the
// TensorImpl pointer in 2.x.
template <typename Map>
typename Map::key_type StateKey(const Map&, const torch::Tensor& p) {
  using Key = typename Map::key_type;
  if constexpr (std::is_same<Key, std::string>::value) {
    std::ostringstream os;
    os << static_cast<const void*>(p.unsafeGetTensorImpl());
    return os.str();
  } else {
    return Key(p.unsafeGetTensorImpl());
  }
}
// Adam's and AdamW's per-parameter states have the same fields: to named tensors and back.
template <typename State, typename Add>
void AddAdamState(const State& a, const Add& add) {
  add("step", torch::tensor(a.step(), torch::kLong));
  add("exp_avg", a.exp_avg());
  add("exp_avg_sq", a.exp_avg_sq());
  add("max_exp_avg_sq", a.max_exp_avg_sq());
}

template <typename State>
std::unique_ptr<torch::optim::OptimizerParamState> MakeAdamState(const torch::Tensor& step, const torch::Tensor& m1,
                                                                 const torch::Tensor& m2, const torch::Tensor& mx) {
  auto s = std::make_unique<State>();
  s->step(step.item<int64_t>()).exp_avg(m1).exp_avg_sq(m2);
  if (mx.defined()) s->max_exp_avg_sq(mx);
  return s;
}
}  // namespace

TensorList Segmenter::OptimizerState() const {
  TensorList out;
  auto& state = optimizer_->state();
  const auto& groups = optimizer_->param_groups();
  for (size_t g = 0; g < groups.size(); ++g) {
    for (size_t i = 0; i < groups[g].params().size(); ++i) {
      const auto& p = groups[g].params()[i];
      auto it = state.find(StateKey(state, p));
      if (it == state.end() || !it->second) continue;
      std::string base = "optimizer." + std::to_string(g) + "." + std::to_string(i) + ".";
      auto add = [&](const char* field, const torch::Tensor& t) {
        if (t.defined()) out.emplace_back(base + field, t.detach());
      };
      if (auto* s = dynamic_cast<torch::optim::SGDParamState*>(it->second.get())) {
        add("momentum_buffer", s->momentum_buffer());
      } else if (auto* a = dynamic_cast<torch::optim::AdamParamState*>(it->second.get())) {
        AddAdamState(*a, add);
      } else if (auto* w = dynamic_cast<torch::optim::AdamWParamState*>(it->second.get())) {
        AddAdamState(*w, add);
      }
    }
  }
  return out;
}

void Segmenter::RestoreOptimizerState(const std::map<std::string, torch::Tensor>& saved) {
  auto& state = optimizer_->state();
  const auto& groups = optimizer_->param_groups();
  const bool sgd = dynamic_cast<torch::optim::SGD*>(optimizer_.get()) != nullptr;
  const bool adamw = dynamic_cast<torch::optim::AdamW*>(optimizer_.get()) != nullptr;
  size_t used = 0;
  auto field = [&](const std::string& base, const char* name, const torch::Tensor& p, bool* found) -> torch::Tensor {
    auto it = saved.find(base + name);
    if (it == saved.end()) return torch::Tensor();
    *found = true;
    ++used;
    const torch::Tensor& t = it->second;
    if (std::string(name) == "step") {
      if (t.numel() != 1 || t.scalar_type() != torch::kLong || t.item<int64_t>() < 0)
        ThrowError("the checkpoint's optimizer state '" + base + name + "' is not a step count");
      return t;
    }
    if (t.sizes() != p.sizes() || !t.is_floating_point())
      ThrowError("the checkpoint's optimizer state '" + base + name + "' has shape " + ShapeString(t.sizes()) +
                 ", its parameter " + ShapeString(p.sizes()));
    return t.to(p.device(), p.scalar_type()).contiguous(p.suggest_memory_format());
  };
  // Everything is checked before the optimizer is touched.
  std::vector<std::pair<torch::Tensor, std::unique_ptr<torch::optim::OptimizerParamState>>> restored;
  for (size_t g = 0; g < groups.size(); ++g) {
    for (size_t i = 0; i < groups[g].params().size(); ++i) {
      const auto& p = groups[g].params()[i];
      std::string base = "optimizer." + std::to_string(g) + "." + std::to_string(i) + ".";
      bool found = false;
      if (sgd) {
        auto m = field(base, "momentum_buffer", p, &found);
        if (!found) continue;
        auto s = std::make_unique<torch::optim::SGDParamState>();
        s->momentum_buffer(m);
        restored.emplace_back(p, std::move(s));
      } else {
        auto step = field(base, "step", p, &found);
        auto m1 = field(base, "exp_avg", p, &found);
        auto m2 = field(base, "exp_avg_sq", p, &found);
        auto mx = field(base, "max_exp_avg_sq", p, &found);
        if (!found) continue;
        if (!step.defined() || !m1.defined() || !m2.defined())
          ThrowError("the checkpoint's optimizer state for '" + base + "' is incomplete");
        if (adamw) restored.emplace_back(p, MakeAdamState<torch::optim::AdamWParamState>(step, m1, m2, mx));
        else restored.emplace_back(p, MakeAdamState<torch::optim::AdamParamState>(step, m1, m2, mx));
      }
    }
  }
  if (used != saved.size()) ThrowError("the checkpoint's optimizer state does not match this model's parameters");
  for (auto& r : restored) state[StateKey(state, r.first)] = std::move(r.second);
}

std::string Segmenter::ReadConfig(const std::string& path) {
  auto archive = OpenModelFile(path);
  return std::string(archive->Record("segtorch/config.json"));
}

std::string Segmenter::Load(const std::string& path) {
  auto archive = OpenModelFile(path);
  std::map<std::string, torch::Tensor> weights, training;
  std::map<std::string, std::string> state;
  try {
    for (auto& kv : ReadTensorDict(*archive, "data.pkl")) weights.emplace(std::move(kv.first), std::move(kv.second));
    if (archive->Has("training.pkl")) {
      for (auto& kv : ReadTensorDict(*archive, "training.pkl")) training.emplace(std::move(kv.first), std::move(kv.second));
    }
  } catch (const UserError&) {
    throw;
  } catch (const std::exception& e) {
    ThrowError("cannot load model: " + CleanMessage(e));
  }
  state = ParseState(path, archive->Record("segtorch/state"));
  int64_t steps = StateInt(path, state, "steps", 0);
  int64_t micro = StateInt(path, state, "micro", 0);
  int64_t channels_last = StateInt(path, state, "channels_last", 0);
  if (channels_last > 1) ThrowError(path + " has an invalid channels_last in its segtorch/state record");
  double loss_scale = StateDouble(path, state, "loss_scale", scaler_.scale);
  std::string signature = state.count("optimizer") ? state["optimizer"] : std::string();
  torch::Tensor rng;
  std::map<std::string, torch::Tensor> optimizer_state;
  for (auto& kv : training) {
    if (kv.first == "rng") rng = kv.second;
    else if (kv.first.compare(0, 10, "optimizer.") == 0 && !signature.empty()) optimizer_state.emplace(kv.first, kv.second);
    else ThrowError(path + " holds an unexpected training-state tensor '" + kv.first + "'");
  }
  if (rng.defined()) {
    // The CPU generator's state: checked by a throw-away generator first, so a bad one changes nothing.
    try {
      auto probe = at::make_generator<at::CPUGeneratorImpl>();
      probe.set_state(rng);
    } catch (const std::exception& e) {
      ThrowError(path + " holds an invalid random generator state: " + CleanMessage(e));
    }
  }
  // Names, shapes and dtypes against the network built from the configuration; nothing is changed
  // unless everything matches.
  ApplyStateDict(weights, path, /*strict=*/true, "", /*exact_dtype=*/true);
  // The layout the weights were saved in (the kernels, and so the last bits of the outputs, depend on it).
  SetLayout(channels_last == 1);
  folded_.reset();  // rebuilt from the new weights on the next predict
  folded_source_ = nullptr;
  optimizer_.reset();
  optimizer_signature_.clear();
  pending_optimizer_ = std::move(optimizer_state);
  pending_signature_ = signature;
  steps_ = steps;
  micro_ = micro;
  scaler_.scale = loss_scale;
  if (rng.defined()) {
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(rng);
  }
  return archive->Has("segtorch/fit.json") ? std::string(archive->Record("segtorch/fit.json")) : std::string();
}

}  // namespace segtorch
