// Module initialisation: every export is listed here, with the free functions behind them (each a
// RunAsync over plain C++ work); the model classes are node/model_wrap.h and node/script_wrap.h.
#include <napi.h>

#include <torch/version.h>

#include <thread>

#include "base/alloc_budget.h"
#include "base/cpu.h"
#include "node/model_wrap.h"
#include "node/distributed.h"
#include "node/jobs.h"
#include "node/options.h"
#include "node/tensor_bridge.h"
#include "node/script_wrap.h"
#include "core/segmenter.h"
#include "data/augment.h"
#include "blocks/batch_norm.h"
#include "blocks/conv2d.h"
#include "blocks/dropout.h"
#include "blocks/max_pool.h"
#include "blocks/resize.h"
#include "infer/crf.h"
#include "infer/folded_net.h"
#include "train/losses.h"
#include "train/precision.h"
#include "train/metrics.h"

namespace segtorch {
namespace {

Napi::Value Backend(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guarded(env, [&]() -> Napi::Value {
    Napi::Object o = Napi::Object::New(env);
    o.Set("libtorch", TORCH_VERSION);
    bool cuda = torch::cuda::is_available();
    o.Set("cuda", cuda);
    o.Set("cudaDevices", Napi::Number::New(env, cuda ? static_cast<double>(torch::cuda::device_count()) : 0.0));
    o.Set("mkldnn", at::hasMKLDNN());
    o.Set("threads", DesiredThreads());
    o.Set("bf16", CpuHasNativeBf16());
    o.Set("prepack", PrepackEnabled());
    o.Set("winograd", WinogradAvailable());
    CpuInfo cpu = Cpu();
    Napi::Object c = Napi::Object::New(env);
    c.Set("model", cpu.model);
    c.Set("isa", cpu.isa);
    c.Set("vendor", cpu.vendor);
    o.Set("cpu", c);
    BlasInfo blas = Blas();
    Napi::Object b = Napi::Object::New(env);
    b.Set("name", blas.name);
    b.Set("path", blas.path);
    o.Set("blas", b);
    Napi::Array archs = Napi::Array::New(env);
    auto names = Architectures();
    for (size_t i = 0; i < names.size(); ++i) archs.Set(static_cast<uint32_t>(i), names[i]);
    o.Set("architectures", archs);
    return o;
  });
}

Napi::Value SetNumThreads(const Napi::CallbackInfo& info) {
  int n = info[0].As<Napi::Number>().Int32Value();
  if (n < 1) throw Napi::RangeError::New(info.Env(), "Expected a thread count >= 1 for setNumThreads but received " + std::to_string(n));
  SetDesiredThreads(n);
  return info.Env().Undefined();
}

Napi::Value CpuMemoryStats(const Napi::CallbackInfo& info) {
  CpuCacheStats st = GetCpuCacheStats();
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("limitBytes", static_cast<double>(st.limit_bytes));
  o.Set("cachedBytes", static_cast<double>(st.cached_bytes));
  o.Set("inUseBytes", static_cast<double>(st.in_use_bytes));
  o.Set("hits", static_cast<double>(st.hits));
  o.Set("misses", static_cast<double>(st.misses));
  return o;
}

Napi::Value EmptyCpuCacheJs(const Napi::CallbackInfo& info) {
  EmptyCpuCache();
  return info.Env().Undefined();
}

Napi::Value NumberToJs(Napi::Env env, double v) { return Napi::Number::New(env, v); }
Napi::Value TensorResultToJs(Napi::Env env, const at::Tensor& t) { return TensorToJs(env, t); }

Napi::Value ReadModelConfigFile(const Napi::CallbackInfo& info) {
  return RunAsync(info, SharedExecutor, [&](Job&) {
    std::string path = info[0].As<Napi::String>().Utf8Value();
    return [path]() { return Segmenter::ReadConfig(path); };
  }, [](Napi::Env env, const std::string& s) -> Napi::Value { return Napi::String::New(env, s); });
}

// Copies a tensor to a device: Promise of a tensor descriptor.
Napi::Value ToDevice(const Napi::CallbackInfo& info) {
  return RunAsync(info, SharedExecutor, [&](Job& job) {
    at::Tensor t = TensorFromJs(info[0], &job);
    std::string device = info[1].As<Napi::String>().Utf8Value();
    return [t, device]() {
      torch::Device d = ParseDevice(device);
      // A CPU copy must own its memory (the source may be JS memory released after this job).
      return d.is_cpu() && t.device().is_cpu() ? t.clone() : t.to(d);
    };
  }, TensorResultToJs);
}

// Blocking copy of a device tensor to the CPU (dataSync).
Napi::Value ToCpuSync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guarded(env, [&]() -> Napi::Value { return TensorToJs(env, TensorFromJs(info[0], nullptr).to(torch::kCPU)); });
}

Napi::Value Release(const Napi::CallbackInfo& info) {
  ReleaseHandle(info[0]);
  return info.Env().Undefined();
}

// Detaches an ArrayBuffer that native code created, releasing the tensor behind it now.
Napi::Value DetachBuffer(const Napi::CallbackInfo& info) {
  if (info[0].IsArrayBuffer()) {
    Napi::ArrayBuffer buf = info[0].As<Napi::ArrayBuffer>();
    if (!buf.IsDetached() && buf.ByteLength() > 0) buf.Detach();
  }
  return info.Env().Undefined();
}

// segmentationLoss(name, logits, labels, options) -> Promise<number>
Napi::Value ComputeLoss(const Napi::CallbackInfo& info) {
  return RunAsync(info, SharedExecutor, [&](Job& job) {
    std::string name = info[0].As<Napi::String>().Utf8Value();
    at::Tensor logits = TensorFromJs(info[1], &job);
    at::Tensor labels = TensorFromJs(info[2], &job);
    LossOptions o = ReadLossOptions(info[3].As<Napi::Object>());
    return [name, logits, labels, o]() {
      torch::NoGradGuard no_grad;
      return SegmentationLoss(name, logits.to(torch::kFloat), labels.to(torch::kLong), o).item<double>();
    };
  }, NumberToJs);
}

// depthLoss(pred, target, type) -> Promise<number>
Napi::Value ComputeDepthLoss(const Napi::CallbackInfo& info) {
  return RunAsync(info, SharedExecutor, [&](Job& job) {
    at::Tensor pred = TensorFromJs(info[0], &job);
    at::Tensor target = TensorFromJs(info[1], &job);
    std::string type = info[2].As<Napi::String>().Utf8Value();
    return [pred, target, type]() {
      torch::NoGradGuard no_grad;
      return DepthLoss(pred.to(torch::kFloat), target.to(torch::kFloat), type).item<double>();
    };
  }, NumberToJs);
}

// confusionMatrix(predictions, labels, numClasses, ignoreIndex) -> Promise<tensor int64 [K,K]>
Napi::Value Confusion(const Napi::CallbackInfo& info) {
  return RunAsync(info, SharedExecutor, [&](Job& job) {
    at::Tensor pred = TensorFromJs(info[0], &job);
    at::Tensor labels = TensorFromJs(info[1], &job);
    int64_t k = info[2].As<Napi::Number>().Int64Value();
    int64_t ignore = info[3].As<Napi::Number>().Int64Value();
    return [pred, labels, k, ignore]() {
      ConfusionMatrix cm(k, ignore, labels.device());
      cm.Update(pred, labels);
      return cm.matrix();
    };
  }, TensorResultToJs);
}

// _maxPool2d(x float32 [N,C,H,W], kernel, stride, padding, bf16, channelsLast, aten) -> Promise<float32>:
// for tests only: blocks/max_pool.h's inference pooling (aten false) or ATen's max_pool2d on x in
// the given type and layout, back as contiguous float32.
Napi::Value MaxPool2dJs(const Napi::CallbackInfo& info) {
  return RunAsync(info, SharedExecutor, [&](Job& job) {
    at::Tensor x = TensorFromJs(info[0], &job);
    const int64_t kernel = info[1].As<Napi::Number>().Int64Value();
    const int64_t stride = info[2].As<Napi::Number>().Int64Value();
    const int64_t padding = info[3].As<Napi::Number>().Int64Value();
    const bool bf16 = info[4].ToBoolean();
    const bool channels_last = info[5].ToBoolean();
    const bool aten = info[6].ToBoolean();
    return [x, kernel, stride, padding, bf16, channels_last, aten]() {
      c10::InferenceMode guard;
      at::Tensor in = x.to(bf16 ? at::kBFloat16 : at::kFloat)
                          .contiguous(channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous);
      at::Tensor y = aten ? at::max_pool2d(in, {kernel, kernel}, {stride, stride}, {padding, padding})
                          : MaxPool2d(in, kernel, stride, padding);
      if (y.suggest_memory_format() != in.suggest_memory_format() && y.size(1) > 1 && y.size(2) * y.size(3) > 1) {
        throw std::runtime_error("max pooling changed the layout");
      }
      return y.to(at::kFloat).contiguous();
    };
  }, TensorResultToJs);
}

// _batchNormTrain(x float32 [N,C,H,W], weight [C], bias [C], add [N,C,H,W] or null, dy [N,C,H,W], relu, fused, bf16)
// -> Promise<float32>: for tests only: one training forward and backward of bn(x) [+ add] [then ReLU],
// channels-last, with fresh running statistics (0 and 1, momentum 0.1): BatchNorm2dImpl::ForwardAct (fused
// true) or torch::batch_norm + add + relu_ (false); x, add and dy in bfloat16 where bf16 (as bf16 autocast's
// convolutions give them; weight, bias and statistics float32). Back as one float32 vector: y, dx, dweight,
// dbias, dadd (where add is given), running mean, running var, then 1 where the fused node ran, else 0.
Napi::Value BatchNormTrainJs(const Napi::CallbackInfo& info) {
  return RunAsync(info, SharedExecutor, [&](Job& job) {
    at::Tensor x = TensorFromJs(info[0], &job), w = TensorFromJs(info[1], &job), b = TensorFromJs(info[2], &job);
    at::Tensor add = info[3].IsNull() || info[3].IsUndefined() ? at::Tensor() : TensorFromJs(info[3], &job);
    at::Tensor dy = TensorFromJs(info[4], &job);
    const bool relu = info[5].ToBoolean(), fused = info[6].ToBoolean(), bf16 = info.Length() > 7 && info[7].ToBoolean();
    return [x, w, b, add, dy, relu, fused, bf16]() {
      if (x.dim() != 4 || w.dim() != 1 || w.size(0) != x.size(1) || !b.sizes().equals(w.sizes()) || !dy.sizes().equals(x.sizes()) ||
          (add.defined() && !add.sizes().equals(x.sizes()))) {
        ThrowRange("Expected x and dy [N, C, H, W], weight and bias [C], add null or x's shape");
      }
      torch::AutoGradMode grad(true);
      const auto cl = at::MemoryFormat::ChannelsLast;
      BatchNorm2d bn(x.size(1));
      bn->train();
      {
        torch::NoGradGuard no_grad;
        bn->weight.copy_(w.to(at::kFloat));
        bn->bias.copy_(b.to(at::kFloat));
      }
      const auto type = bf16 ? at::kBFloat16 : at::kFloat;
      at::Tensor xi = x.to(type).contiguous(cl).requires_grad_();
      at::Tensor ai = add.defined() ? add.to(type).contiguous(cl).requires_grad_() : at::Tensor();
      at::Tensor y;
      if (fused) {
        y = bn->ForwardAct(xi, relu, ai);
      } else {
        y = torch::batch_norm(xi, bn->weight, bn->bias, bn->running_mean, bn->running_var, true, 0.1, 1e-5, false);
        if (ai.defined()) y = y + ai;
        if (relu) y = y.relu();
      }
      const bool ran = y.grad_fn() != nullptr && y.grad_fn()->name().find("BatchNormActTrain") != std::string::npos;
      y.backward(dy.to(type).contiguous(cl));
      std::vector<at::Tensor> parts{y.detach().to(at::kFloat).contiguous().flatten(), xi.grad().to(at::kFloat).contiguous().flatten(),
                                    bn->weight.grad().flatten(), bn->bias.grad().flatten()};
      if (ai.defined()) parts.push_back(ai.grad().to(at::kFloat).contiguous().flatten());
      parts.push_back(bn->running_mean.detach().flatten());
      parts.push_back(bn->running_var.detach().flatten());
      parts.push_back(at::full({1}, ran ? 1.0f : 0.0f));
      return at::cat(parts);
    };
  }, TensorResultToJs);
}

// _convTrain(x float32 [N,C,H,W], weight [K,C/groups,kh,kw], bias [K] or null, dy [N,K,Ho,Wo],
// { stride, padding, dilation, groups, path: 'rule' | 'onednn' | 'gemm' | 'depthwise' | 'taps', bf16, infer }) ->
// Promise<float32>: for tests only: one training forward and backward of segtorch's Conv2d, channels-last, by the
// rules' path or the path named wherever the shape fits, whatever the CPU and type (a ConvTrainPathGuard: oneDNN's
// convolution, the matrix products of GemmConvTrain, the depthwise loops of blocks/depthwise.h, the taps' products of
// blocks/tap_conv.h), under CPU bf16 autocast where bf16. Back as one float32 vector: y, dx, dweight, dbias (where a
// bias is given), then the path that ran: 0 oneDNN's (libtorch's convolution), 1 the matrix products, 2 the depthwise
// loops, 3 the taps. With infer: relu(conv(x) + dy) without gradients instead (dy as the addend; the weight, the bias
// and x in bf16 where bf16, as an inference copy's), through ForwardAct: y, then the path (3 the taps, else 0).
Napi::Value ConvTrainJs(const Napi::CallbackInfo& info) {
  return RunAsync(info, SharedExecutor, [&](Job& job) {
    at::Tensor x = TensorFromJs(info[0], &job), w = TensorFromJs(info[1], &job);
    at::Tensor b = info[2].IsNull() || info[2].IsUndefined() ? at::Tensor() : TensorFromJs(info[2], &job);
    at::Tensor dy = TensorFromJs(info[3], &job);
    if (!info[4].IsObject()) ThrowType("Expected options { stride, padding, dilation, groups, path, bf16 }");
    const Napi::Object o = info[4].As<Napi::Object>();
    auto number = [&](const char* key) { return o.Get(key).ToNumber().Int64Value(); };
    const int64_t stride = number("stride"), pad = number("padding"), dil = number("dilation"), groups = number("groups");
    const std::string path_name = o.Get("path").ToString().Utf8Value();
    const bool bf16 = o.Get("bf16").ToBoolean(), infer = o.Get("infer").ToBoolean();
    const ConvTrainPath path = path_name == "gemm"        ? ConvTrainPath::kGemm
                               : path_name == "depthwise" ? ConvTrainPath::kDepthwise
                               : path_name == "taps"      ? ConvTrainPath::kTaps
                               : path_name == "rule"      ? ConvTrainPath::kRule
                                                          : ConvTrainPath::kOneDnn;
    return [x, w, b, dy, stride, pad, dil, groups, path, bf16, infer]() {
      if (x.dim() != 4 || w.dim() != 4 || groups < 1 || x.size(1) % groups != 0 || w.size(0) % groups != 0 ||
          w.size(1) * groups != x.size(1) || (b.defined() && (b.dim() != 1 || b.size(0) != w.size(0))) || dy.dim() != 4 ||
          stride < 1 || pad < 0 || dil < 1) {
        ThrowRange("Expected x [N, C, H, W], weight [K, C / groups, kh, kw], bias null or [K], dy the output's shape, stride >= 1, "
                   "padding >= 0, dilation >= 1");
      }
      torch::AutoGradMode grad(true);
      const auto cl = at::MemoryFormat::ChannelsLast;
      Conv2d conv(torch::nn::Conv2dOptions(x.size(1), w.size(0), {w.size(2), w.size(3)})
                      .stride(stride).padding(pad).dilation(dil).groups(groups).bias(b.defined()));
      {
        torch::NoGradGuard no_grad;
        conv->weight.set_data(w.to(at::kFloat).contiguous(cl));
        if (b.defined()) conv->bias.copy_(b.to(at::kFloat));
      }
      if (infer) {
        torch::NoGradGuard no_grad;
        const auto type = bf16 ? at::kBFloat16 : at::kFloat;
        conv->to(type);
        conv->Prepack(true);
        ConvTrainPathGuard guard(path);
        at::Tensor add = dy.to(type).contiguous(cl);
        const bool taps = conv->TapApplies(x.to(type).contiguous(cl));
        at::Tensor y = conv->ForwardAct(x.to(type).contiguous(cl), Activation::kReLU, add);
        if (!y.sizes().equals(dy.sizes())) ThrowRange("Expected dy the output's shape");
        return at::cat({y.to(at::kFloat).contiguous().flatten(), at::full({1}, taps ? 3.0f : 0.0f)});
      }
      at::Tensor xi = x.to(at::kFloat).contiguous(cl).requires_grad_();
      at::Tensor y;
      {
        ConvTrainPathGuard guard(path);
        AutocastGuard autocast(torch::kCPU, at::kBFloat16, bf16);
        y = conv->forward(xi);
      }
      const std::string node = y.grad_fn() != nullptr ? y.grad_fn()->name() : "";
      // Modified in place as a ReLU or a residual addition may do after any convolution (autograd refuses that for a
      // view made inside a custom function): exact, y * 1.
      y.mul_(1);
      const float ran = node.find("GemmConvTrain") != std::string::npos    ? 1.0f
                        : node.find("DepthwiseTrain") != std::string::npos ? 2.0f
                        : node.find("TapConvTrain") != std::string::npos   ? 3.0f
                                                                           : 0.0f;
      if (!y.sizes().equals(dy.sizes())) ThrowRange("Expected dy the output's shape");
      y.backward(dy.to(y.scalar_type()).contiguous(cl));
      std::vector<at::Tensor> parts{y.detach().to(at::kFloat).contiguous().flatten(), xi.grad().to(at::kFloat).contiguous().flatten(),
                                    conv->weight.grad().contiguous().flatten()};
      if (b.defined()) parts.push_back(conv->bias.grad().flatten());
      parts.push_back(at::full({1}, ran));
      return at::cat(parts);
    };
  }, TensorResultToJs);
}

// _dropoutTrain(x float32 [N,C,H,W], dy (x's shape), p, bf16, channelsLast, seed) -> Promise<float32>: for tests only:
// one training forward and backward of nn::Dropout(p) through segtorch's Dropout (blocks/dropout.h) after
// torch::manual_seed(seed), x and dy in bfloat16 where bf16. Back as one float32 vector: y, dx (NCHW order), then 1
// where the one-pass dropout ran, else 0.
Napi::Value DropoutTrainJs(const Napi::CallbackInfo& info) {
  return RunAsync(info, SharedExecutor, [&](Job& job) {
    at::Tensor x = TensorFromJs(info[0], &job), dy = TensorFromJs(info[1], &job);
    const double p = info[2].ToNumber().DoubleValue();
    const bool bf16 = info[3].ToBoolean(), cl = info[4].ToBoolean();
    const int64_t seed = info[5].ToNumber().Int64Value();
    return [x, dy, p, bf16, cl, seed]() {
      if (x.dim() != 4 || !dy.sizes().equals(x.sizes()) || !(p >= 0 && p <= 1)) ThrowRange("Expected x and dy [N, C, H, W] and p in [0, 1]");
      torch::AutoGradMode grad(true);
      torch::manual_seed(static_cast<uint64_t>(seed));
      const auto type = bf16 ? at::kBFloat16 : at::kFloat;
      const auto format = cl ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
      at::Tensor xi = x.to(type).contiguous(format).requires_grad_();
      torch::nn::Dropout drop(p);
      drop->train();
      at::Tensor y = Dropout(*drop, xi);
      const bool ran = y.grad_fn() != nullptr && y.grad_fn()->name().find("DropoutTrain") != std::string::npos;
      y.backward(dy.to(type).contiguous(format));
      return at::cat({y.detach().to(at::kFloat).contiguous().flatten(), xi.grad().to(at::kFloat).contiguous().flatten(),
                      at::full({1}, ran ? 1.0f : 0.0f)});
    };
  }, TensorResultToJs);
}

// _resizeTrain(x float32 [N,C,h,w], dy float32 [N,C,H,W], alignCorners, bf16, aten) -> Promise<float32>: for tests only:
// training's bilinear resize of NCHW logits (blocks/resize.h ResizeBilinearTrain) forward and backward, x and dy in
// bfloat16 where bf16; by ATen's operator where aten (an AsTracedScope). Back as one float32 vector: y, dx (NCHW),
// then 1 where segtorch's loops ran, else 0.
Napi::Value ResizeTrainJs(const Napi::CallbackInfo& info) {
  return RunAsync(info, SharedExecutor, [&](Job& job) {
    at::Tensor x = TensorFromJs(info[0], &job), dy = TensorFromJs(info[1], &job);
    const bool align = info[2].ToBoolean(), bf16 = info[3].ToBoolean(), aten = info[4].ToBoolean();
    return [x, dy, align, bf16, aten]() {
      if (x.dim() != 4 || dy.dim() != 4 || dy.size(0) != x.size(0) || dy.size(1) != x.size(1)) {
        ThrowRange("Expected x [N, C, h, w] and dy [N, C, H, W]");
      }
      torch::AutoGradMode grad(true);
      const auto type = bf16 ? at::kBFloat16 : at::kFloat;
      at::Tensor xi = x.to(type).contiguous().requires_grad_();
      at::Tensor y;
      if (aten) {
        AsTracedScope scope;
        y = ResizeBilinearTrain(xi, dy.size(2), dy.size(3), align);
      } else {
        y = ResizeBilinearTrain(xi, dy.size(2), dy.size(3), align);
      }
      const bool ran = y.grad_fn() != nullptr && y.grad_fn()->name().find("ResizeTrain") != std::string::npos;
      y.backward(dy.to(type).contiguous());
      return at::cat({y.detach().to(at::kFloat).contiguous().flatten(), xi.grad().to(at::kFloat).contiguous().flatten(),
                      at::full({1}, ran ? 1.0f : 0.0f)});
    };
  }, TensorResultToJs);
}

// metricsFromConfusion(confusion int64 [K,K]) -> metrics (synchronous: K x K is small)
Napi::Value MetricsFromConfusion(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guarded(env, [&]() -> Napi::Value { return MetricsObject(env, ComputeMetrics(TensorFromJs(info[0], nullptr))); });
}

// Per-sample tensors from an array of [H, W, ...] tensors or one batched tensor ([N, C, H, W] images
// become [H, W, C] views, not copies; [N, H, W] masks / depth are split).
std::vector<at::Tensor> SampleTensors(const Napi::Value& v, Job* job, bool images) {
  std::vector<at::Tensor> out;
  if (v.IsUndefined() || v.IsNull()) return out;
  if (v.IsArray()) {
    Napi::Array a = v.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); ++i) out.push_back(TensorFromJs(a.Get(i), job));
    return out;
  }
  at::Tensor t = TensorFromJs(v, job);
  if (t.dim() != (images ? 4 : 3)) ThrowRange(images ? "Expected images of shape [N, C, H, W]" : "Expected masks or depth of shape [N, H, W]");
  for (int64_t i = 0; i < t.size(0); ++i) out.push_back(images ? t[i].permute({1, 2, 0}) : t[i]);
  return out;
}

// augmentBatch(images, masks?, depth?, options, seed) -> Promise<{ images, masks?, depth? }>, on the
// data executor (one thread) so that it overlaps training steps on the models' executors.
Napi::Value AugmentBatchJs(const Napi::CallbackInfo& info) {
  return RunAsync(info, DataExecutor, [&](Job& job) {
    std::vector<at::Tensor> images = SampleTensors(info[0], &job, true);
    std::vector<at::Tensor> masks = SampleTensors(info[1], &job, false);
    std::vector<at::Tensor> depth = SampleTensors(info[2], &job, false);
    if ((!masks.empty() && masks.size() != images.size()) || (!depth.empty() && depth.size() != images.size())) {
      ThrowRange("Expected as many masks and depth maps as images");
    }
    std::vector<AugmentSample> samples(images.size());
    for (size_t i = 0; i < images.size(); ++i) {
      samples[i].image = images[i];
      if (!masks.empty()) samples[i].mask = masks[i];
      if (!depth.empty()) samples[i].depth = depth[i];
    }
    AugmentOptions a = ReadAugmentOptions(info[3].As<Napi::Object>());
    uint64_t seed = static_cast<uint64_t>(info[4].As<Napi::Number>().DoubleValue());
    return [samples, a, seed]() { return AugmentBatch(samples, a, seed); };
  }, [](Napi::Env env, const AugmentResult& result) -> Napi::Value {
    Napi::Object out = Napi::Object::New(env);
    out.Set("images", TensorToJs(env, result.images));
    if (result.masks.defined()) out.Set("masks", TensorToJs(env, result.masks));
    if (result.depth.defined()) out.Set("depth", TensorToJs(env, result.depth));
    return out;
  });
}

// crf(image [C,H,W] | [1,C,H,W] | [H,W,C] (channelsLast), probs [K,H,W] | [1,K,H,W], options,
// channelsLast) -> Promise<float32 tensor shaped as probs>: the dense CRF on the shared executor
// (the lattice filtering uses libtorch's intra-op threads). TypeScript has checked the shapes.
Napi::Value CrfJs(const Napi::CallbackInfo& info) {
  return RunAsync(info, SharedExecutor, [&](Job& job) {
    at::Tensor image = TensorFromJs(info[0], &job);
    at::Tensor probs = TensorFromJs(info[1], &job);
    CrfOptions o = ReadCrfOptions(info[2].As<Napi::Object>());
    bool channels_last = info.Length() > 3 && info[3].IsBoolean() && info[3].As<Napi::Boolean>().Value();
    return [image, probs, o, channels_last]() {
      at::Tensor im = image.dim() == 4 ? image[0] : image;
      if (channels_last) im = im.permute({2, 0, 1});
      at::Tensor p = probs.dim() == 4 ? probs[0] : probs;
      return DenseCrf(im, p, o).reshape(probs.sizes()).to(probs.device());
    };
  }, TensorResultToJs);
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  InitAsync(env);
  if (DesiredThreads() == 0) {
    unsigned n = std::thread::hardware_concurrency();
    SetDesiredThreads(n > 0 ? static_cast<int>(n) : 1);
  }
  exports.Set("shutdown", Napi::Function::New<ShutdownJs>(env, "shutdown"));
  exports.Set("backend", Napi::Function::New<Backend>(env, "backend"));
  exports.Set("setNumThreads", Napi::Function::New<SetNumThreads>(env, "setNumThreads"));
  exports.Set("cpuMemoryStats", Napi::Function::New<CpuMemoryStats>(env, "cpuMemoryStats"));
  exports.Set("emptyCpuCache", Napi::Function::New<EmptyCpuCacheJs>(env, "emptyCpuCache"));
  exports.Set("readModelConfig", Napi::Function::New<ReadModelConfigFile>(env, "readModelConfig"));
  exports.Set("toDevice", Napi::Function::New<ToDevice>(env, "toDevice"));
  exports.Set("toCpuSync", Napi::Function::New<ToCpuSync>(env, "toCpuSync"));
  exports.Set("releaseHandle", Napi::Function::New<Release>(env, "releaseHandle"));
  exports.Set("detachBuffer", Napi::Function::New<DetachBuffer>(env, "detachBuffer"));
  exports.Set("segmentationLoss", Napi::Function::New<ComputeLoss>(env, "segmentationLoss"));
  exports.Set("depthLoss", Napi::Function::New<ComputeDepthLoss>(env, "depthLoss"));
  exports.Set("confusionMatrix", Napi::Function::New<Confusion>(env, "confusionMatrix"));
  exports.Set("metricsFromConfusion", Napi::Function::New<MetricsFromConfusion>(env, "metricsFromConfusion"));
  exports.Set("crf", Napi::Function::New<CrfJs>(env, "crf"));
  exports.Set("_maxPool2d", Napi::Function::New<MaxPool2dJs>(env, "_maxPool2d"));
  exports.Set("_batchNormTrain", Napi::Function::New<BatchNormTrainJs>(env, "_batchNormTrain"));
  exports.Set("_convTrain", Napi::Function::New<ConvTrainJs>(env, "_convTrain"));
  exports.Set("_dropoutTrain", Napi::Function::New<DropoutTrainJs>(env, "_dropoutTrain"));
  exports.Set("_resizeTrain", Napi::Function::New<ResizeTrainJs>(env, "_resizeTrain"));
  exports.Set("augmentBatch", Napi::Function::New<AugmentBatchJs>(env, "augmentBatch"));
  exports.Set("distAvailable", Napi::Function::New<DistAvailable>(env, "distAvailable"));
  exports.Set("distInit", Napi::Function::New<DistInit>(env, "distInit"));
  exports.Set("distBarrier", Napi::Function::New<DistBarrier>(env, "distBarrier"));
  exports.Set("distAllReduce", Napi::Function::New<DistAllReduce>(env, "distAllReduce"));
  exports.Set("distDestroy", Napi::Function::New<DistDestroy>(env, "distDestroy"));
  exports.Set("distStats", Napi::Function::New<DistStats>(env, "distStats"));
  exports.Set("NativeModel", ModelWrap::Init(env));
  exports.Set("NativeScriptModel", ScriptWrap::Init(env));
  return exports;
}

}  // namespace
}  // namespace segtorch

static Napi::Object InitSegtorch(Napi::Env env, Napi::Object exports) { return segtorch::Init(env, exports); }
NODE_API_MODULE(segtorch, InitSegtorch)
