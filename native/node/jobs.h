// The Node-API side of the boundary: async jobs on native executors and error conversion (tensors:
// node/tensor_bridge.h, option readers: node/options.h). Nothing outside native/node/ sees a Napi type.
#pragma once
#include <napi.h>

#include <ATen/ATen.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/errors.h"
#include "base/executor.h"

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
// One thread for the distributed module's own collectives (init's rendezvous, barrier, the
// evaluation's all-reduce): they block for up to their timeout, never on the shared executor.
Executor& DistExecutor(Napi::Env env);
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

// The body of a JS function that returns a promise: `read(job)` (JS thread) reads the arguments,
// adding the JS memory it wraps to `job`, and returns the work: a callable of plain C++ values run
// on `executor(env)` whose result `to_js(env, result)` turns into the promise's value (JS thread).
// A C++ exception while reading becomes a JS exception; one in the work, a rejection.
template <typename Read, typename ToJs>
Napi::Value RunAsync(const Napi::CallbackInfo& info, Executor& (*executor)(Napi::Env), Read&& read, ToJs to_js) {
  Napi::Env env = info.Env();
  return Guarded(env, [&]() -> Napi::Value {
    auto job = std::make_unique<Job>(env);
    auto work = read(*job);
    auto result = std::make_shared<decltype(work())>();
    job->execute = [work, result]() { *result = work(); };
    job->complete = [result, to_js](Napi::Env env) -> Napi::Value { return to_js(env, *result); };
    return Schedule(env, executor(env), std::move(job));
  });
}

}  // namespace segtorch
