// What the two JS model classes share: ModelWrap (our networks, a Segmenter) and ScriptWrap
// (TorchScript models, a ScriptSegmenter). Each instance owns an executor thread, so jobs on one
// model run one at a time in call order while the JS thread stays free; a busy count refuses
// dispose() while jobs are pending (onnxruntime-node's InferenceSessionWrap). Both classes get the
// same JS methods predict, evalReset / evalUpdate / evalCompute, setBatching, stats, dispose and
// busy from here, and build their own methods with Queue() and Loaded(). dispose() ends the
// executor thread (joined; nothing is queued then) and frees the model.
#pragma once
#include <napi.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "base/executor.h"
#include "infer/batcher.h"
#include "infer/evaluation.h"
#include "node/batching.h"
#include "node/jobs.h"
#include "node/options.h"
#include "node/tensor_bridge.h"

namespace segtorch {

// Where the two classes differ: the words for their set-up step (ModelWrap: init, ScriptWrap: load)
// and where dispose() frees the model.
struct WrapKind {
  const char* not_ready;     // a job before set-up ("this model is not initialised")
  const char* failed;        // a job after set-up failed ("this model failed to initialise")
  const char* again;         // set-up twice ("model already initialised")
  bool release_on_executor;  // dispose() frees the model on the executor thread, not on the JS thread
};

// Model: Segmenter or ScriptSegmenter (Predict, EvalReset, EvalUpdate, EvalCompute).
template <typename Derived, typename Model>
class ModelWrapBase : public Napi::ObjectWrap<Derived> {
 public:
  // No job can be pending: each job holds a reference to this object until it settles.
  ~ModelWrapBase() override { executor_.reset(); }

 protected:
  using Descriptors = std::vector<Napi::ClassPropertyDescriptor<Derived>>;

  ModelWrapBase(const Napi::CallbackInfo& info, const WrapKind& kind)
      : Napi::ObjectWrap<Derived>(info), kind_(kind), executor_(NewExecutor(info.Env())) {}

  // A class's own methods followed by the shared ones, for DefineClass.
  static Descriptors WithSharedMethods(Descriptors own) {
    using W = Napi::ObjectWrap<Derived>;
    own.push_back(W::InstanceMethod("predict", &ModelWrapBase::Predict));
    own.push_back(W::InstanceMethod("evalReset", &ModelWrapBase::EvalReset));
    own.push_back(W::InstanceMethod("evalUpdate", &ModelWrapBase::EvalUpdate));
    own.push_back(W::InstanceMethod("evalCompute", &ModelWrapBase::EvalCompute));
    own.push_back(W::InstanceMethod("setBatching", &ModelWrapBase::SetBatching));
    own.push_back(W::InstanceMethod("stats", &ModelWrapBase::Stats));
    own.push_back(W::InstanceMethod("dispose", &ModelWrapBase::Dispose));
    own.push_back(W::InstanceAccessor("busy", &ModelWrapBase::Busy, nullptr));
    return own;
  }

  // A JS method that runs one job on the model: checks that the model is usable, lets `fill` read
  // the arguments (JS thread; tensors with TensorFromJs(info[i], &job)) and set the job's execute
  // and complete, then queues it. Returns the job's promise.
  template <typename Fill>
  Napi::Value Queue(const Napi::CallbackInfo& info, Fill&& fill) {
    return QueueAfter(info, [this](Napi::Env env) { CheckUsable(env); }, fill);
  }

  // The same for the set-up method (init / load), which may run once: its job creates model_.
  template <typename Fill>
  Napi::Value QueueSetUp(const Napi::CallbackInfo& info, Fill&& fill) {
    return QueueAfter(
        info,
        [this](Napi::Env env) {
          CheckUsable(env, false);
          if (initialised_) throw Napi::Error::New(env, kind_.again);
          initialised_ = true;
        },
        fill);
  }

  // On the executor thread: the model, or an error if its set-up failed.
  Model& Loaded() {
    if (!model_) ThrowError(kind_.failed);
    return *model_;
  }

  std::shared_ptr<Model> model_;  // touched only on the executor thread once created

 private:
  template <typename Check, typename Fill>
  Napi::Value QueueAfter(const Napi::CallbackInfo& info, Check&& check, Fill& fill) {
    Napi::Env env = info.Env();
    return Guarded(env, [&]() -> Napi::Value {
      check(env);
      auto job = std::make_unique<Job>(env);
      fill(*job);
      return Run(info, std::move(job));
    });
  }

  void CheckUsable(Napi::Env env, bool need_model = true) {
    if (disposed_) throw Napi::Error::New(env, "this model was disposed");
    if (need_model && !initialised_) throw Napi::Error::New(env, kind_.not_ready);
  }

  // Queue a job on this model's executor; the JS object stays alive until it settles.
  Napi::Value Run(const Napi::CallbackInfo& info, std::unique_ptr<Job> job) {
    job->KeepAlive(this->Value());
    auto settled = std::move(job->on_settled);
    job->on_settled = [this, settled]() {
      --busy_;
      if (settled) settled();
    };
    ++busy_;
    try {
      return Schedule(info.Env(), *executor_, std::move(job));
    } catch (...) {  // not queued: its on_settled never runs
      --busy_;
      throw;
    }
  }

  // predict(images, options?) -> labels / probs / logits, through the request batcher when it is on
  Napi::Value Predict(const Napi::CallbackInfo& info) {
    return Queue(info, [&](Job& job) {
      at::Tensor images = TensorFromJs(info[0], &job);
      Napi::Value options_js = info.Length() > 1 ? info[1] : info.Env().Undefined();
      InferOptions options = ReadInferOptions(options_js);
      auto result = std::make_shared<at::Tensor>();
      BatchFn run = [this, options](const at::Tensor& x) { return Loaded().Predict(x, options); };
      job.execute = PredictExecute(info.Env(), batcher_, options_js, images, std::move(run), result);
      job.complete = [result](Napi::Env env) -> Napi::Value { return TensorToJs(env, *result); };
    });
  }

  // evalReset(ignoreIndex)
  Napi::Value EvalReset(const Napi::CallbackInfo& info) {
    return Queue(info, [&](Job& job) {
      int64_t ignore = info[0].As<Napi::Number>().Int64Value();
      job.execute = [this, ignore]() { Loaded().EvalReset(ignore); };
    });
  }

  // evalUpdate(images, masks, options?)
  Napi::Value EvalUpdate(const Napi::CallbackInfo& info) {
    return Queue(info, [&](Job& job) {
      at::Tensor images = TensorFromJs(info[0], &job);
      at::Tensor masks = TensorFromJs(info[1], &job);
      InferOptions options = ReadInferOptions(info.Length() > 2 ? info[2] : info.Env().Undefined());
      job.execute = [this, images, masks, options]() { Loaded().EvalUpdate(images, masks, options); };
    });
  }

  // evalCompute() -> metrics and confusion
  Napi::Value EvalCompute(const Napi::CallbackInfo& info) {
    return Queue(info, [&](Job& job) {
      auto result = std::make_shared<EvalResult>();
      job.execute = [this, result]() { *result = Loaded().EvalCompute(); };
      job.complete = [result](Napi::Env env) -> Napi::Value {
        Napi::Object o = MetricsObject(env, result->metrics);
        o.Set("confusion", TensorToJs(env, result->confusion));
        return o;
      };
    });
  }

  Napi::Value SetBatching(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return Guarded(env, [&]() -> Napi::Value {
      CheckUsable(env, false);
      SetBatchingJs(info, *batcher_);
      return env.Undefined();
    });
  }

  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return Guarded(env, [&]() -> Napi::Value { return BatchStatsJs(env, *batcher_); });
  }

  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return Guarded(env, [&]() -> Napi::Value {
      if (disposed_) return env.Undefined();
      if (busy_ > 0) {
        throw Napi::Error::New(env, "cannot dispose a model while " + std::to_string(busy_) +
                                        " job(s) are queued or running on it: await them first");
      }
      disposed_ = true;
      std::shared_ptr<Model> model = std::move(model_);
      // On the executor thread (after anything still queued there), or here once it is stopped.
      if (kind_.release_on_executor) executor_->Post([m = std::move(model)]() mutable { m.reset(); });
      model.reset();
      // Nothing is queued but the release: the thread ends now instead of at garbage collection.
      executor_->Close();
      return env.Undefined();
    });
  }

  Napi::Value Busy(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), busy_); }

  WrapKind kind_;
  std::unique_ptr<Executor> executor_;
  std::shared_ptr<RequestBatcher> batcher_ = std::make_shared<RequestBatcher>();  // predict batching
  int busy_ = 0;                                                                 // jobs queued or running (JS thread)
  bool disposed_ = false;
  bool initialised_ = false;
};

}  // namespace segtorch
