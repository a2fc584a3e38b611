#include "common/napi_util.h"

#include <atomic>
#include <cstdlib>
#include <mutex>

namespace segtorch {

namespace {

void CallJs(Napi::Env env, Napi::Function, std::nullptr_t*, Job* raw);
using Channel = Napi::TypedThreadSafeFunction<std::nullptr_t, Job, CallJs>;

constexpr const char* kShutDown = "segtorch has shut down: the process or worker thread is exiting";
constexpr const char* kUnknown = "unknown native error";

// Where executor threads hand finished jobs to the JS thread. Closed (under `mu`) when the
// environment exits: from then on no thread calls the channel, which may be gone.
struct Gate {
  std::mutex mu;
  bool open = true;
  Channel channel;
};

// The process is exiting (atexit): jobs that finish now are dropped, whatever their environment.
std::atomic<bool> g_process_exiting{false};

struct AddonState {
  std::shared_ptr<Gate> gate = std::make_shared<Gate>();
  int pending = 0;        // jobs in flight; the channel keeps the loop alive only while > 0
  bool shut_down = false;  // Shutdown() ran: no new executors or jobs
  bool released = false;   // the channel was released (cleanup hook)
  std::unique_ptr<Executor> shared;
  std::unique_ptr<Executor> data;  // created on first use
};

AddonState* State(Napi::Env env) { return env.GetInstanceData<AddonState>(); }

// Frees a job that will never settle (its environment is exiting) without touching JS: the
// environment frees the references itself, so they are not deleted here. Any thread.
void DropJob(Job* raw) noexcept {
  if (!raw) return;
  try {
    for (auto& r : raw->keep_alive) r.SuppressDestruct();
    delete raw;
  } catch (...) {
  }
}

void Fail(Job& job, ErrorKind kind, std::string message) noexcept {
  job.failed = true;
  job.error_kind = kind;
  job.error_message = std::move(message);  // noexcept move
}

// Executor thread: runs the job; an exception becomes the job's error.
void Execute(Job& job) noexcept {
  try {
    if (job.execute) job.execute();
  } catch (const std::exception& e) {
    Fail(job, KindOf(e), CleanMessage(e));
  } catch (...) {
    Fail(job, ErrorKind::kError, std::string());
  }
}

// Executor thread: hands the finished job to the JS thread, or drops it when the environment or
// the process is exiting.
void Deliver(const std::shared_ptr<Gate>& gate, Job* raw) noexcept {
  try {
    std::lock_guard<std::mutex> lock(gate->mu);
    if (gate->open && !g_process_exiting.load() && gate->channel.BlockingCall(raw) == napi_ok) return;
  } catch (...) {
  }
  DropJob(raw);
}

void Reject(Napi::Env env, Napi::Promise::Deferred& deferred, ErrorKind kind, const std::string& message) noexcept {
  try {
    deferred.Reject(ToJsError(env, kind, message.empty() ? std::string(kUnknown) : message).Value());
    return;
  } catch (...) {
  }
  try {
    deferred.Reject(Napi::Error::New(env, kUnknown).Value());
  } catch (...) {
    // JS cannot run any more (a worker being terminated): the promise stays pending.
  }
}

// JS thread: resolves with complete()'s value or rejects; never throws.
void Settle(Napi::Env env, Job& job) noexcept {
  if (!job.failed) {
    try {
      Napi::Value result = job.complete ? job.complete(env) : env.Undefined();
      job.deferred.Resolve(result);
      return;
    } catch (const Napi::Error& e) {
      try {
        job.deferred.Reject(e.Value());
        return;
      } catch (...) {
      }
      Fail(job, ErrorKind::kError, std::string());
    } catch (const std::exception& e) {
      Fail(job, KindOf(e), CleanMessage(e));
    } catch (...) {
      Fail(job, ErrorKind::kError, std::string());
    }
  }
  Reject(env, job.deferred, job.error_kind, job.error_message);
}

void CallJs(Napi::Env env, Napi::Function, std::nullptr_t*, Job* raw) {
  if (env == nullptr) {  // environment shutting down: drop references without touching JS
    DropJob(raw);
    return;
  }
  std::unique_ptr<Job> job(raw);
  try {
    Napi::HandleScope scope(env);
    Settle(env, *job);
  } catch (...) {
  }
  try {
    if (job->on_settled) job->on_settled();
  } catch (...) {
  }
  try {
    AddonState* st = State(env);
    if (st && --st->pending == 0 && !st->released) st->gate->channel.Unref(env);
  } catch (...) {
  }
}

size_t ElementSize(at::ScalarType t) { return c10::elementSize(t); }

struct ExternalTensor {
  at::Tensor tensor;
  int64_t reported = 0;
};

// Stops this environment's executors (the running job finishes, queued ones are dropped) and
// closes the channel to it. JS thread; idempotent.
void Shutdown(AddonState* st) noexcept {
  if (!st || st->shut_down) return;
  st->shut_down = true;
  try {
    std::lock_guard<std::mutex> lock(st->gate->mu);
    st->gate->open = false;
  } catch (...) {
  }
  Executor::StopGroup(st);
}

void StopAtExit() {
  g_process_exiting.store(true);
  Executor::StopAll();
}

}  // namespace

void InitAsync(Napi::Env env) {
  auto* st = new AddonState();
  env.SetInstanceData<AddonState>(st);  // deleted at environment teardown
  st->gate->channel = Channel::New(env, "segtorch", 0, 1);
  st->gate->channel.Unref(env);
  st->shared = NewExecutor(env);
  // A worker thread that ends or is terminated, or the main thread ending normally: stop the
  // executors (waiting for running jobs), then release the channel; nothing calls it after.
  env.AddCleanupHook([st]() {
    Shutdown(st);
    if (!st->released) {
      st->released = true;
      st->gate->channel.Release();
    }
  });
  // process.exit() on the main thread runs no cleanup hook: lib/binding.ts calls shutdown() from
  // process.on('exit'), and this handler is the last line, before libtorch's static destructors
  // (registered earlier, so they run later).
  static std::once_flag once;
  std::call_once(once, [] { std::atexit(StopAtExit); });
}

void ShutdownJs(const Napi::CallbackInfo& info) { Shutdown(State(info.Env())); }

std::unique_ptr<Executor> NewExecutor(Napi::Env env, bool apply_thread_settings) {
  AddonState* st = State(env);
  if (!st || st->shut_down) throw Napi::Error::New(env, kShutDown);
  try {
    return std::make_unique<Executor>(apply_thread_settings, st);
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, "segtorch could not start a native thread: " + CleanMessage(e));
  }
}

Executor& SharedExecutor(Napi::Env env) { return *State(env)->shared; }

Executor& DataExecutor(Napi::Env env) {
  AddonState* st = State(env);
  if (!st->data) st->data = NewExecutor(env, false);
  return *st->data;
}

Napi::Promise Schedule(Napi::Env env, Executor& executor, std::unique_ptr<Job> job) {
  AddonState* st = State(env);
  Napi::Promise promise = job->deferred.Promise();
  std::shared_ptr<Gate> gate = st->gate;
  Job* raw = job.get();
  bool posted = !st->shut_down && executor.Post([raw, gate]() {
    Execute(*raw);
    Deliver(gate, raw);
  }, [raw]() { DropJob(raw); });
  if (!posted) {  // the executor was stopped: settle now
    Reject(env, job->deferred, ErrorKind::kError, kShutDown);
    if (job->on_settled) job->on_settled();
    return promise;
  }
  job.release();  // owned by the posted closure until CallJs (or DropJob)
  try {
    if (st->pending++ == 0 && !st->released) st->gate->channel.Ref(env);
  } catch (...) {  // the job is queued: it settles anyway, only the loop is not held open for it
  }
  return promise;
}

Napi::Error ToJsError(Napi::Env env, ErrorKind kind, const std::string& message) {
  switch (kind) {
    case ErrorKind::kTypeError:
      return Napi::TypeError::New(env, message);
    case ErrorKind::kRangeError:
      return Napi::RangeError::New(env, message);
    default: {
      Napi::Error e = Napi::Error::New(env, message);
      e.Set("code", Napi::String::New(env, "ERR_SEGTORCH_NATIVE"));
      return e;
    }
  }
}

Napi::Error ToJsError(Napi::Env env, const std::exception& e) { return ToJsError(env, KindOf(e), CleanMessage(e)); }

at::ScalarType ParseDType(const std::string& name) {
  if (name == "float32") return at::kFloat;
  if (name == "float16") return at::kHalf;
  if (name == "bfloat16") return at::kBFloat16;
  if (name == "int32") return at::kInt;
  if (name == "int64") return at::kLong;
  if (name == "uint8") return at::kByte;
  if (name == "bool") return at::kBool;
  ThrowType("Expected a dtype (float32, float16, bfloat16, int32, int64, uint8, bool) but received " + name);
}

std::string DTypeName(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return "float32";
    case at::kHalf: return "float16";
    case at::kBFloat16: return "bfloat16";
    case at::kInt: return "int32";
    case at::kLong: return "int64";
    case at::kByte: return "uint8";
    case at::kBool: return "bool";
    default: ThrowType(std::string("tensor dtype ") + c10::toString(t) + " has no JS equivalent");
  }
}

at::Tensor TensorFromJs(const Napi::Value& v, Job* job) {
  if (!v.IsObject()) ThrowType("Expected a segtorch Tensor");
  Napi::Object o = v.As<Napi::Object>();
  Napi::Value handle = o.Get("handle");
  if (handle.IsExternal()) {
    auto* ext = handle.As<Napi::External<ExternalTensor>>().Data();
    if (!ext->tensor.defined()) ThrowError("tensor was disposed");
    if (job) job->KeepAlive(handle);
    return ext->tensor;
  }
  at::ScalarType dtype = ParseDType(o.Get("dtype").As<Napi::String>().Utf8Value());
  Napi::Array shape_js = o.Get("shape").As<Napi::Array>();
  std::vector<int64_t> shape(shape_js.Length());
  int64_t numel = 1;
  for (uint32_t i = 0; i < shape_js.Length(); ++i) {
    shape[i] = shape_js.Get(i).As<Napi::Number>().Int64Value();
    numel *= shape[i];
  }
  Napi::Value data = o.Get("data");
  if (!data.IsTypedArray()) ThrowType("Expected tensor data to be a TypedArray");
  Napi::TypedArray arr = data.As<Napi::TypedArray>();
  Napi::Value backing = arr.ArrayBuffer();
  if (!backing.IsArrayBuffer()) {
    ThrowType("Expected tensor data in an ArrayBuffer but received a view of a SharedArrayBuffer (another thread may "
              "change or grow it during the call): pass it through segtorch's tensor(), which copies shared memory when a call starts");
  }
  if (backing.As<Napi::Object>().Get("resizable").ToBoolean().Value()) {
    ThrowType("Expected tensor data in a fixed-length ArrayBuffer but received a view of a resizable ArrayBuffer (resize() "
              "could free memory the call reads): pass it through segtorch's tensor(), which copies it when a call starts");
  }
  size_t bytes = arr.ByteLength();
  if (bytes != static_cast<size_t>(numel) * ElementSize(dtype)) {
    ThrowRange("tensor data holds " + std::to_string(bytes) + " bytes but shape and dtype need " +
               std::to_string(numel * ElementSize(dtype)));
  }
  Napi::ArrayBuffer buf = backing.As<Napi::ArrayBuffer>();
  uint8_t* ptr = static_cast<uint8_t*>(buf.Data()) + arr.ByteOffset();
  if (job) job->KeepAlive(arr);
  if (numel == 0) return at::empty(shape, at::TensorOptions().dtype(dtype));
  return at::from_blob(ptr, shape, at::TensorOptions().dtype(dtype));
}

Napi::Value TensorToJs(Napi::Env env, at::Tensor t) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("dtype", DTypeName(t.scalar_type()));
  Napi::Array shape = Napi::Array::New(env, t.dim());
  for (int64_t i = 0; i < t.dim(); ++i) shape.Set(static_cast<uint32_t>(i), Napi::Number::New(env, static_cast<double>(t.size(i))));
  o.Set("shape", shape);
  o.Set("device", t.device().str());
  if (t.device().is_cpu()) {
    t = t.contiguous();
    if (t.numel() > 0 && (t.storage_offset() != 0 || t.storage().nbytes() != t.nbytes())) t = t.clone();
    size_t n = t.nbytes();
    if (n == 0) {
      o.Set("buffer", Napi::ArrayBuffer::New(env, 0));
      return o;
    }
    auto* ext = new ExternalTensor{t, static_cast<int64_t>(n)};
    Napi::ArrayBuffer buf = Napi::ArrayBuffer::New(
        env, t.data_ptr(), n,
        [](Napi::Env env, void*, ExternalTensor* hint) {
          Napi::MemoryManagement::AdjustExternalMemory(env, -hint->reported);
          delete hint;
        },
        ext);
    Napi::MemoryManagement::AdjustExternalMemory(env, ext->reported);
    o.Set("buffer", buf);
    // The same tensor behind a handle (its bytes reported once, by the buffer): native calls read
    // the tensor from it, so that a job keeps the memory alive after the JS tensor is disposed.
    std::unique_ptr<ExternalTensor> pin(new ExternalTensor{t, 0});
    o.Set("handle", Napi::External<ExternalTensor>::New(env, pin.get(), [](Napi::Env, ExternalTensor* e) { delete e; }));
    pin.release();
  } else {
    auto* ext = new ExternalTensor{t, static_cast<int64_t>(t.nbytes())};
    auto handle = Napi::External<ExternalTensor>::New(env, ext, [](Napi::Env env, ExternalTensor* e) {
      Napi::MemoryManagement::AdjustExternalMemory(env, -e->reported);
      delete e;
    });
    Napi::MemoryManagement::AdjustExternalMemory(env, ext->reported);
    o.Set("handle", handle);
  }
  return o;
}

void ReleaseHandle(const Napi::Value& v) {
  if (!v.IsExternal()) return;
  auto* ext = v.As<Napi::External<ExternalTensor>>().Data();
  Napi::MemoryManagement::AdjustExternalMemory(v.Env(), -ext->reported);
  ext->reported = 0;
  ext->tensor = at::Tensor();
}

std::string GetString(const Napi::Object& o, const char* key, const std::string& def) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return def;
  if (!v.IsString()) ThrowType(std::string("Expected a string for ") + key);
  return v.As<Napi::String>().Utf8Value();
}

double GetNumber(const Napi::Object& o, const char* key, double def) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return def;
  if (!v.IsNumber()) ThrowType(std::string("Expected a number for ") + key);
  return v.As<Napi::Number>().DoubleValue();
}

bool GetBool(const Napi::Object& o, const char* key, bool def) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return def;
  if (!v.IsBoolean()) ThrowType(std::string("Expected a boolean for ") + key);
  return v.As<Napi::Boolean>().Value();
}

std::vector<double> GetNumbers(const Napi::Object& o, const char* key) {
  std::vector<double> out;
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return out;
  if (!v.IsArray()) ThrowType(std::string("Expected an array of numbers for ") + key);
  Napi::Array a = v.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); ++i) out.push_back(a.Get(i).As<Napi::Number>().DoubleValue());
  return out;
}

Napi::Object MetricsObject(Napi::Env env, const Metrics& m) {
  Napi::Object o = Napi::Object::New(env);
  auto arr = [&](const std::vector<double>& v) {
    Napi::Array a = Napi::Array::New(env, v.size());
    for (size_t i = 0; i < v.size(); ++i) a.Set(static_cast<uint32_t>(i), Napi::Number::New(env, v[i]));
    return a;
  };
  o.Set("mIoU", m.miou);
  o.Set("pixelAccuracy", m.pixel_accuracy);
  o.Set("meanAccuracy", m.mean_accuracy);
  o.Set("fwIoU", m.fw_iou);
  o.Set("meanDice", m.mean_dice);
  o.Set("perClassIoU", arr(m.iou));
  o.Set("perClassAccuracy", arr(m.accuracy));
  o.Set("perClassDice", arr(m.dice));
  return o;
}

LossOptions ReadLossOptions(const Napi::Object& o) {
  LossOptions l;
  l.ignore_index = static_cast<int64_t>(GetNumber(o, "ignoreIndex", static_cast<double>(l.ignore_index)));
  l.label_smoothing = GetNumber(o, "labelSmoothing", l.label_smoothing);
  l.ohem_threshold = GetNumber(o, "ohemThreshold", l.ohem_threshold);
  l.ohem_min_kept = static_cast<int64_t>(GetNumber(o, "ohemMinKept", static_cast<double>(l.ohem_min_kept)));
  l.focal_gamma = GetNumber(o, "focalGamma", l.focal_gamma);
  l.dice_smooth = GetNumber(o, "diceSmooth", l.dice_smooth);
  std::vector<double> w = GetNumbers(o, "classWeights");
  if (!w.empty()) l.class_weights = torch::tensor(w, torch::kFloat);
  return l;
}

CrfOptions ReadCrfOptions(const Napi::Object& o) {
  CrfOptions c;
  c.enabled = true;
  Napi::Value g = o.Get("gaussian"), b = o.Get("bilateral");
  if (g.IsObject()) {
    c.gaussian_sxy = GetNumber(g.As<Napi::Object>(), "sxy", c.gaussian_sxy);
    c.gaussian_compat = GetNumber(g.As<Napi::Object>(), "compat", c.gaussian_compat);
  }
  if (b.IsObject()) {
    c.bilateral_sxy = GetNumber(b.As<Napi::Object>(), "sxy", c.bilateral_sxy);
    c.bilateral_srgb = GetNumber(b.As<Napi::Object>(), "srgb", c.bilateral_srgb);
    c.bilateral_compat = GetNumber(b.As<Napi::Object>(), "compat", c.bilateral_compat);
  }
  c.iterations = static_cast<int64_t>(GetNumber(o, "iterations", static_cast<double>(c.iterations)));
  return c;
}

InferOptions ReadInferOptions(const Napi::Value& v) {
  InferOptions o;
  if (!v.IsObject()) return o;
  Napi::Object obj = v.As<Napi::Object>();
  o.mode = GetString(obj, "mode", o.mode);
  std::vector<double> crop = GetNumbers(obj, "crop"), stride = GetNumbers(obj, "stride");
  if (crop.size() == 2) {
    o.crop_h = static_cast<int64_t>(crop[0]);
    o.crop_w = static_cast<int64_t>(crop[1]);
  }
  if (stride.size() == 2) {
    o.stride_h = static_cast<int64_t>(stride[0]);
    o.stride_w = static_cast<int64_t>(stride[1]);
  }
  std::vector<double> scales = GetNumbers(obj, "scales");
  if (!scales.empty()) o.scales = scales;
  o.flip = GetBool(obj, "flip", o.flip);
  o.output = GetString(obj, "output", o.output);
  o.precision = GetString(obj, "precision", o.precision);
  o.channels_last = GetBool(obj, "channelsLast", o.channels_last);
  o.fold_batch_norm = GetBool(obj, "foldBatchNorm", o.fold_batch_norm);
  Napi::Value crf = obj.Get("crf");
  if (crf.IsObject()) o.crf = ReadCrfOptions(crf.As<Napi::Object>());
  return o;
}

}  // namespace segtorch
