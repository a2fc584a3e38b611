#include "node/jobs.h"

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
  std::unique_ptr<Executor> dist;  // created on first use
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

Executor& DistExecutor(Napi::Env env) {
  AddonState* st = State(env);
  if (!st->dist) st->dist = NewExecutor(env, false);
  return *st->dist;
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

}  // namespace segtorch
