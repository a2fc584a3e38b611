#include "common/script_wrap.h"

#include "common/batching.h"
#include "common/napi_util.h"

namespace segtorch {

namespace {

struct ScriptInfo {
  std::string device;
  int64_t num_classes = 0, in_channels = 0, parameters = 0;
};

}  // namespace

Napi::Function ScriptWrap::Init(Napi::Env env) {
  return DefineClass(env, "NativeScriptModel",
                     {
                         InstanceMethod<&ScriptWrap::Load>("load"),
                         InstanceMethod<&ScriptWrap::Predict>("predict"),
                         InstanceMethod<&ScriptWrap::EvalReset>("evalReset"),
                         InstanceMethod<&ScriptWrap::EvalUpdate>("evalUpdate"),
                         InstanceMethod<&ScriptWrap::EvalCompute>("evalCompute"),
                         InstanceMethod<&ScriptWrap::SetBatching>("setBatching"),
                         InstanceMethod<&ScriptWrap::Stats>("stats"),
                         InstanceMethod<&ScriptWrap::Dispose>("dispose"),
                         InstanceAccessor<&ScriptWrap::Busy>("busy"),
                     });
}

ScriptWrap::ScriptWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ScriptWrap>(info), executor_(new Executor()) {}

ScriptWrap::~ScriptWrap() { executor_.reset(); }

void ScriptWrap::CheckUsable(Napi::Env env, bool need_model) {
  if (disposed_) throw Napi::Error::New(env, "this model was disposed");
  if (need_model && !initialised_) throw Napi::Error::New(env, "this model is not loaded");
}

Napi::Value ScriptWrap::Run(const Napi::CallbackInfo& info, std::unique_ptr<Job> job) {
  job->KeepAlive(Value());
  ++busy_;
  auto settled = std::move(job->on_settled);
  job->on_settled = [this, settled]() {
    --busy_;
    if (settled) settled();
  };
  return Schedule(info.Env(), *executor_, std::move(job));
}

// load({ path, device, inChannels, mean, std, numClasses, probeSize: [h, w] }) -> info
Napi::Value ScriptWrap::Load(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guarded(env, [&]() -> Napi::Value {
    CheckUsable(env, false);
    if (initialised_) throw Napi::Error::New(env, "model already loaded");
    initialised_ = true;
    Napi::Object o = info[0].As<Napi::Object>();
    ScriptConfig c;
    c.path = GetString(o, "path", "");
    c.device = GetString(o, "device", c.device);
    c.in_channels = static_cast<int64_t>(GetNumber(o, "inChannels", 3));
    c.mean = GetNumbers(o, "mean");
    c.std = GetNumbers(o, "std");
    c.num_classes = static_cast<int64_t>(GetNumber(o, "numClasses", 0));
    std::vector<double> probe = GetNumbers(o, "probeSize");
    if (probe.size() == 2) c.probe_h = static_cast<int64_t>(probe[0]), c.probe_w = static_cast<int64_t>(probe[1]);
    auto job = std::make_unique<Job>(env);
    auto data = std::make_shared<ScriptInfo>();
    job->execute = [this, c, data]() {
      model_ = std::make_shared<ScriptSegmenter>(c);
      *data = ScriptInfo{model_->device().str(), model_->num_classes(), model_->config().in_channels, model_->NumParameters()};
    };
    job->complete = [data](Napi::Env env) -> Napi::Value {
      Napi::Object r = Napi::Object::New(env);
      r.Set("device", data->device);
      r.Set("numClasses", Napi::Number::New(env, static_cast<double>(data->num_classes)));
      r.Set("inChannels", Napi::Number::New(env, static_cast<double>(data->in_channels)));
      r.Set("parameters", Napi::Number::New(env, static_cast<double>(data->parameters)));
      return r;
    };
    return Run(info, std::move(job));
  });
}

Napi::Value ScriptWrap::Predict(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guarded(env, [&]() -> Napi::Value {
    CheckUsable(env);
    auto job = std::make_unique<Job>(env);
    at::Tensor images = TensorFromJs(info[0], job.get());
    Napi::Value options_js = info.Length() > 1 ? info[1] : env.Undefined();
    InferOptions options = ReadInferOptions(options_js);
    auto result = std::make_shared<at::Tensor>();
    BatchFn run = [this, options](const at::Tensor& x) {
      if (!model_) ThrowError("this model failed to load");
      return model_->Predict(x, options);
    };
    job->execute = PredictExecute(env, batcher_, options_js, images, std::move(run), result);
    job->complete = [result](Napi::Env env) -> Napi::Value { return TensorToJs(env, *result); };
    return Run(info, std::move(job));
  });
}

Napi::Value ScriptWrap::EvalReset(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guarded(env, [&]() -> Napi::Value {
    CheckUsable(env);
    int64_t ignore = info[0].As<Napi::Number>().Int64Value();
    auto job = std::make_unique<Job>(env);
    job->execute = [this, ignore]() {
      if (!model_) ThrowError("this model failed to load");
      model_->EvalReset(ignore);
    };
    return Run(info, std::move(job));
  });
}

Napi::Value ScriptWrap::EvalUpdate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guarded(env, [&]() -> Napi::Value {
    CheckUsable(env);
    auto job = std::make_unique<Job>(env);
    at::Tensor images = TensorFromJs(info[0], job.get());
    at::Tensor masks = TensorFromJs(info[1], job.get());
    InferOptions options = ReadInferOptions(info.Length() > 2 ? info[2] : env.Undefined());
    job->execute = [this, images, masks, options]() {
      if (!model_) ThrowError("this model failed to load");
      model_->EvalUpdate(images, masks, options);
    };
    return Run(info, std::move(job));
  });
}

Napi::Value ScriptWrap::EvalCompute(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guarded(env, [&]() -> Napi::Value {
    CheckUsable(env);
    auto job = std::make_unique<Job>(env);
    auto result = std::make_shared<EvalResult>();
    job->execute = [this, result]() {
      if (!model_) ThrowError("this model failed to load");
      *result = model_->EvalCompute();
    };
    job->complete = [result](Napi::Env env) -> Napi::Value {
      Napi::Object o = MetricsObject(env, result->metrics);
      o.Set("confusion", TensorToJs(env, result->confusion));
      return o;
    };
    return Run(info, std::move(job));
  });
}

Napi::Value ScriptWrap::SetBatching(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guarded(env, [&]() -> Napi::Value {
    CheckUsable(env, false);
    SetBatchingJs(info, *batcher_);
    return env.Undefined();
  });
}

Napi::Value ScriptWrap::Stats(const Napi::CallbackInfo& info) { return BatchStatsJs(info.Env(), *batcher_); }

Napi::Value ScriptWrap::Dispose(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (disposed_) return env.Undefined();
  if (busy_ > 0) {
    throw Napi::Error::New(env, "cannot dispose a model while " + std::to_string(busy_) +
                                    " job(s) are queued or running on it: await them first");
  }
  disposed_ = true;
  // Released on the executor thread, after any job still referencing it.
  std::shared_ptr<ScriptSegmenter> model = std::move(model_);
  executor_->Post([model]() mutable { model.reset(); });
  return env.Undefined();
}

Napi::Value ScriptWrap::Busy(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), busy_); }

}  // namespace segtorch
