#include "core/segmenter.h"

#include <algorithm>
#include <map>
#include <sstream>

#include "backbones/backbone.h"
#include "base/alloc_budget.h"
#include "base/errors.h"
#include "blocks/conv2d.h"
#include "core/images.h"
#include "infer/labels.h"
#include "train/checkpoint.h"

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

torch::Tensor Segmenter::PrepareImages(const torch::Tensor& images, at::MemoryFormat format) const {
  if (images.dim() != 4) ThrowRange("Expected images of shape [N, C, H, W] but received " + std::to_string(images.dim()) + " dimensions");
  if (images.size(1) != config_.in_channels) {
    ThrowRange("Expected images with " + std::to_string(config_.in_channels) + " channels but received " +
               std::to_string(images.size(1)));
  }
  if (images.size(0) < 1 || images.size(2) < 1 || images.size(3) < 1) ThrowRange("Expected non-empty images");
  // A new tensor (an inference one only when made under predict's InferenceMode, where it stays).
  if (images.scalar_type() == torch::kByte && images.is_cpu() && device_.is_cpu()) return NormalizeBytes(images, mean_, std_, format);
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
  if (x.is_inference() && !c10::InferenceMode::is_enabled()) x = x.clone();
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
  ApplyDeferredResize(out);  // the crop below is at the padded size
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

SegOutput Segmenter::Forward(const torch::Tensor& images, Precision precision) {
  torch::NoGradGuard no_grad;
  if (net_->is_training()) ++changes_;  // BN statistics move
  torch::Tensor x = PrepareImages(images, channels_last_ ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous);
  SegOutput out;
  {
    AutocastGuard guard(device_, at::kBFloat16, precision == Precision::kBf16);
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

bool Segmenter::FusedLabelsApply(const InferOptions& o) const {
  // Infer's single pass (one scale of 1, no flip, whole image) asking for labels, eager, on the CPU.
  return FusedLabelsEnabled() && device_.is_cpu() && o.output == "labels" && o.mode == "whole" && o.scales.size() == 1 &&
         o.scales[0] == 1.0 && !o.flip && !o.crf.enabled && !o.compile;
}

torch::Tensor Segmenter::Predict(const torch::Tensor& images, const InferOptions& options) {
  if (options.precision == Precision::kFp16 && device_.is_cpu()) {
    ThrowRange("Expected precision 'fp32' or 'bf16' on the CPU but received 'fp16' (fp16 autocast needs CUDA)");
  }
  bool was_training = net_->is_training();
  torch::Tensor result;
  try {
    SegmentationModel* net = net_.get();
    at::ScalarType dtype = AutocastType(options.precision);
    if (options.fold_batch_norm) {
      net = &folded_.Get(config_, *net_, device_, WeightsVersion(), options.channels_last, dtype,
                          /*prepack=*/!options.compile);
    } else {
      net_->eval();
      SetLayout(options.channels_last);
      // A prediction after a training step ran the fp32 Winograd with the step's old weights (2.6 % off the logits).
      if (const int64_t v = WeightsVersion(); v != eager_version_) {
        PrepackConvolutions(*net_, false);
        eager_version_ = v;
      }
    }
    c10::InferenceMode inference;
    torch::Tensor x = PrepareImages(images, options.channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous);
    if (options.channels_last) x = x.contiguous(at::MemoryFormat::ChannelsLast);
    const int64_t version = options.compile ? 2 * WeightsVersion() + (options.fold_batch_norm ? 1 : 0) : 0;
    const std::vector<torch::Tensor> weights = options.compile ? net->parameters() : std::vector<torch::Tensor>();
    // The eager network under the prediction's precision and Winograd choice.
    auto eager = [&](const torch::Tensor& input) {
      AutocastGuard guard(device_, dtype, dtype != at::kFloat);
      WinogradGuard winograd(options.winograd);  // Conv2dImpl::WinogradApplies / Bf16WinogradApplies
      return Run(input, net);
    };
    LogitsFn logits = [&](const torch::Tensor& input) {
      if (!options.compile) return eager(input).out;
      AutocastGuard guard(device_, dtype, dtype != at::kFloat);
      return compiled_.Run([&](const torch::Tensor& t) { return Run(t, net).out; }, weights, input, version, dtype, options.channels_last);
    };
    // The CRF's colours: the images on a 0..255 scale (float images are taken as normalised with
    // this model's mean and std).
    torch::Tensor colours;
    if (options.crf.enabled) colours = images.scalar_type() == torch::kByte ? images : (x * std_ + mean_).mul_(255.0);
    if (FusedLabelsApply(options)) {
      // Labels at the image's size in one pass over the network's own logits (infer/labels.h): the
      // network's final resize deferred, its argmax fused with it.
      SegOutput out;
      {
        DeferFinalResize defer;
        out = eager(x);
      }
      result = out.resize_to.empty() ? ResizedArgmax(out.out, out.out.size(2), out.out.size(3), false)
                                     : ResizedArgmax(out.out, out.resize_to[0], out.resize_to[1], out.resize_align_corners);
    } else {
      result = InferWithCrf(logits, x, colours, options);
    }
  } catch (...) {
    net_->train(was_training);
    throw;
  }
  net_->train(was_training);
  // Inference tensors cannot enter autograd later (e.g. as pseudo-labels): return a normal tensor.
  return result.clone();
}

std::shared_ptr<const ExportGraph> Segmenter::TraceForExport(const ExportOptions& options) {
  auto key = std::make_tuple(options.height, options.width, options.dynamic, WeightsVersion(), static_cast<int>(options.dtype));
  if (!export_ || key != export_key_) {
    export_.reset();
    export_ = std::make_shared<const ExportGraph>(segtorch::TraceForExport(config_, *net_, device_, options));
    export_key_ = key;
  }
  return export_;
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

RunFn Segmenter::Runner() {
  return [this](const torch::Tensor& x) { return Run(channels_last_ ? x.contiguous(at::MemoryFormat::ChannelsLast) : x); };
}

StepResult Segmenter::TrainStep(const torch::Tensor& images, const torch::Tensor& masks, const TrainStepOptions& o,
                                const torch::Tensor& depth) {
  if (o.precision == Precision::kFp16 && device_.is_cpu()) {
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
  training_.optimizer.Ensure(*net_, o.optimizer, o.head_lr_multiplier, o.no_decay_norm_bias);
  SetLayout(o.channels_last);
  ++changes_;
  WinogradTrainingGuard winograd(o.winograd);  // Conv2dImpl::Fp32WinogradTrainingApplies
  return segtorch::TrainStep(training_, *net_, Runner(), x, y, d, o);
}

void Segmenter::Seed(uint64_t seed) { torch::manual_seed(seed); }

std::string Segmenter::Description() const {
  const ModelConfig& c = config_;
  std::ostringstream s;
  s << c.arch << " " << c.backbone << " classes " << c.num_classes << " in " << c.in_channels << " stride " << c.output_stride
    << " aux " << c.aux << " mean";
  for (double m : c.mean) s << " " << m;
  s << " std";
  for (double m : c.std) s << " " << m;
  for (auto& kv : c.numbers) s << " " << kv.first << "=" << kv.second;
  for (auto& kv : c.strings) s << " " << kv.first << "=" << kv.second;
  return s.str();
}

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
  return segtorch::ParametersWithoutGradient(*net_, Runner(), x, y, o);
}

void Segmenter::SaveStateDict(const std::string& path) const {
  try {
    WriteStateDict(path, NamedTensors(*net_));
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
  StateDictReport report =
      segtorch::ApplyStateDict(*net_, file, path, strict, prefix, exact_dtype, config_.arch + "/" + config_.backbone);
  ++changes_;
  return report;
}

int64_t Segmenter::NumParameters(bool trainable_only) const {
  int64_t n = 0;
  for (const auto& p : net_->parameters()) {
    if (!trainable_only || p.requires_grad()) n += p.numel();
  }
  return n;
}

// Model files: train/checkpoint.h.
void Segmenter::Save(const std::string& path, bool training_state, const std::string& fit_state) const {
  ModelFileState state;
  state.steps = training_.steps;
  state.channels_last = channels_last_;
  TensorList optimizer_state;
  if (training_state) {
    state.training = true;
    state.micro = training_.micro;
    state.loss_scale = training_.scaler.scale;
    state.fit_state = fit_state;
    if (training_.optimizer.built()) {
      state.optimizer_signature = training_.optimizer.signature();
      optimizer_state = training_.optimizer.State();
    }
  }
  WriteModelFile(path, config_.json, NamedTensors(*net_), state, optimizer_state);
}

std::string Segmenter::ReadConfig(const std::string& path) { return ReadModelFileConfig(path); }

std::string Segmenter::Load(const std::string& path) {
  ModelFile file = ReadModelFile(path, training_.scaler.scale);
  // Names, shapes and dtypes against the network built from the configuration; nothing is changed
  // unless everything matches.
  ApplyStateDict(file.weights, path, /*strict=*/true, "", /*exact_dtype=*/true);
  // The layout the weights were saved in (the kernels, and so the last bits of the outputs, depend on it).
  SetLayout(file.state.channels_last);
  folded_.Reset();  // rebuilt from the new weights on the next predict
  compiled_.Reset();
  export_.reset();
  training_.optimizer.Reset(std::move(file.optimizer_state), file.state.optimizer_signature);
  training_.steps = file.state.steps;
  training_.micro = file.state.micro;
  training_.scaler.scale = file.state.loss_scale;
  if (file.rng.defined()) SetCpuRngState(file.rng);
  return file.state.fit_state;
}

}  // namespace segtorch
