// Module initialisation: every export is listed here, nothing else.
#include <napi.h>

#include <torch/version.h>

#include <thread>

#include "common/model_wrap.h"
#include "common/napi_util.h"
#include "core/segmenter.h"

namespace segtorch {
namespace {

bool CpuHasNativeBf16() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512bf16") || __builtin_cpu_supports("amx-bf16");
#else
  return false;
#endif
}

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

Napi::Value ReadModelConfig(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guarded(env, [&]() -> Napi::Value {
    std::string path = info[0].As<Napi::String>().Utf8Value();
    auto job = std::make_unique<Job>(env);
    auto result = std::make_shared<std::string>();
    job->execute = [path, result]() { *result = Segmenter::ReadConfig(path); };
    job->complete = [result](Napi::Env env) -> Napi::Value { return Napi::String::New(env, *result); };
    return Schedule(env, SharedExecutor(env), std::move(job));
  });
}

// Copies a tensor to a device: Promise of a tensor descriptor.
Napi::Value ToDevice(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guarded(env, [&]() -> Napi::Value {
    auto job = std::make_unique<Job>(env);
    at::Tensor t = TensorFromJs(info[0], job.get());
    std::string device = info[1].As<Napi::String>().Utf8Value();
    auto result = std::make_shared<at::Tensor>();
    job->execute = [t, device, result]() {
      torch::Device d = ParseDevice(device);
      // A CPU copy must own its memory (the source may be JS memory released after this job).
      *result = d.is_cpu() && t.device().is_cpu() ? t.clone() : t.to(d);
    };
    job->complete = [result](Napi::Env env) -> Napi::Value { return TensorToJs(env, *result); };
    return Schedule(env, SharedExecutor(env), std::move(job));
  });
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

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  InitAsync(env);
  if (DesiredThreads() == 0) {
    unsigned n = std::thread::hardware_concurrency();
    SetDesiredThreads(n > 0 ? static_cast<int>(n) : 1);
  }
  exports.Set("backend", Napi::Function::New<Backend>(env, "backend"));
  exports.Set("setNumThreads", Napi::Function::New<SetNumThreads>(env, "setNumThreads"));
  exports.Set("readModelConfig", Napi::Function::New<ReadModelConfig>(env, "readModelConfig"));
  exports.Set("toDevice", Napi::Function::New<ToDevice>(env, "toDevice"));
  exports.Set("toCpuSync", Napi::Function::New<ToCpuSync>(env, "toCpuSync"));
  exports.Set("releaseHandle", Napi::Function::New<Release>(env, "releaseHandle"));
  exports.Set("detachBuffer", Napi::Function::New<DetachBuffer>(env, "detachBuffer"));
  exports.Set("NativeModel", ModelWrap::Init(env));
  return exports;
}

}  // namespace
}  // namespace segtorch

static Napi::Object InitSegtorch(Napi::Env env, Napi::Object exports) { return segtorch::Init(env, exports); }
NODE_API_MODULE(segtorch, InitSegtorch)
