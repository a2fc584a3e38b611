// The Node-API side of the boundary: async jobs on native executors, tensors in and out, option
// readers, error conversion. Nothing below native/common/ and addon.cc sees a Napi type.
#pragma once
#include <napi.h>

#include <ATen/ATen.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/errors.h"
#include "common/executor.h"
#include "infer/crf.h"
#include "infer/inference.h"
#include "train/losses.h"
#include "train/metrics.h"

namespace segtorch {

// A unit of async work. `execute` runs on an executor thread and must not touch Napi values;
// `complete` runs on the JS thread and builds the result. Anything in `keep_alive` (input arrays,
// the model object) stays referenced until the job has settled.
struct Job {
  std::function<void()> execute;
  std::function<Napi::Value(Napi::Env)> complete;
  std::function<void()> on_settled;  // JS thread, after resolve/reject (e.g. model busy count)
  std::vector<Napi::Reference<Napi::Value>> keep_alive;

  // filled by the executor
  bool failed = false;
  ErrorKind error_kind = ErrorKind::kError;
  std::string error_message;
  Napi::Promise::Deferred deferred;
  explicit Job(Napi::Env env) : deferred(Napi::Promise::Deferred::New(env)) {}
  void KeepAlive(Napi::Value v) { keep_alive.emplace_back(Napi::Persistent(v)); }
};

// Initialise per-environment state (the completion channel, the shared executor) and the exit
// handling: when the environment exits (a worker ends or is terminated, the main thread ends, or
// process.exit() through shutdown()), its executors are stopped and joined (a running job
// finishes, queued ones are dropped and never settle) and no thread calls into it afterwards.
void InitAsync(Napi::Env env);
// shutdown(): what process.on('exit') calls (lib/binding.ts): process.exit() runs no cleanup hook.
void ShutdownJs(const Napi::CallbackInfo& info);
// A new executor of this environment (stopped when it exits); a JS error when it is exiting or
// no thread can be created.
std::unique_ptr<Executor> NewExecutor(Napi::Env env, bool apply_thread_settings = true);
Executor& SharedExecutor(Napi::Env env);
// One thread for data work (augmentation: single-threaded loops, no libtorch parallelism), so
// that it overlaps a model's training step on the model's own executor.
Executor& DataExecutor(Napi::Env env);
// Queue `job` on `executor`; returns the promise that settles when it is done. Nothing that goes
// wrong in the job, in its complete() or in settling escapes: it becomes the promise's rejection
// (a fixed message when even that cannot be built). Rejects at once when the executor is stopped.
Napi::Promise Schedule(Napi::Env env, Executor& executor, std::unique_ptr<Job> job);

// Errors
Napi::Error ToJsError(Napi::Env env, ErrorKind kind, const std::string& message);
Napi::Error ToJsError(Napi::Env env, const std::exception& e);
// Run `f` turning every C++ exception into a JS exception (for synchronous methods).
template <typename F>
auto Guarded(Napi::Env env, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    throw ToJsError(env, e);
  } catch (...) {
    throw Napi::Error::New(env, "unknown native error");
  }
}

// Tensors. JS side: { dtype, shape, data?: TypedArray, handle?: External }.
at::ScalarType ParseDType(const std::string& name);
std::string DTypeName(at::ScalarType t);
// Wraps the JS memory without copying; the array is added to `job` keep-alive when given. A
// tensor with a handle (native memory) is taken from the handle: the job's at::Tensor shares its
// storage, so disposing the JS tensor while the job is queued or running frees nothing until the
// job ends. Views of a SharedArrayBuffer or of a resizable ArrayBuffer are refused (TypeError):
// memory that another thread or a resize() can take away while the job runs (lib/tensor.ts copies
// them before the call).
at::Tensor TensorFromJs(const Napi::Value& v, Job* job);
// CPU tensors come back as an external ArrayBuffer owning the tensor, plus a handle holding the
// same tensor (what TensorFromJs reads); others as a handle only.
Napi::Value TensorToJs(Napi::Env env, at::Tensor t);
void ReleaseHandle(const Napi::Value& v);

// { mIoU, pixelAccuracy, meanAccuracy, fwIoU, meanDice, perClassIoU, perClassAccuracy, perClassDice }
Napi::Object MetricsObject(Napi::Env env, const Metrics& m);

// { ignoreIndex, labelSmoothing, ohemThreshold, ohemMinKept, focalGamma, diceSmooth, classWeights }
LossOptions ReadLossOptions(const Napi::Object& o);

// { gaussian: { sxy, compat }, bilateral: { sxy, srgb, compat }, iterations }; enabled = true.
CrfOptions ReadCrfOptions(const Napi::Object& o);

// predict / evaluate options from JS (validated in TypeScript), one reader for every model kind.
InferOptions ReadInferOptions(const Napi::Value& v);

// Option readers (TypeScript fills every default; these are the last line of defence).
std::string GetString(const Napi::Object& o, const char* key, const std::string& def);
double GetNumber(const Napi::Object& o, const char* key, double def);
bool GetBool(const Napi::Object& o, const char* key, bool def);
std::vector<double> GetNumbers(const Napi::Object& o, const char* key);

}  // namespace segtorch
