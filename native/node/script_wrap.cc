#include "node/script_wrap.h"

#include "node/jobs.h"
#include "node/options.h"
#include "node/tensor_bridge.h"

namespace segtorch {

namespace {

struct ScriptInfo {
  std::string device;
  int64_t num_classes = 0, in_channels = 0, parameters = 0;
};

const WrapKind kScriptKind = {"this model is not loaded", "this model failed to load", "model already loaded",
                              /*release_on_executor=*/true};

}  // namespace

Napi::Function ScriptWrap::Init(Napi::Env env) {
  return DefineClass(env, "NativeScriptModel", WithSharedMethods({InstanceMethod<&ScriptWrap::Load>("load")}));
}

ScriptWrap::ScriptWrap(const Napi::CallbackInfo& info) : ModelWrapBase(info, kScriptKind) {}

// load({ path, device, inChannels, mean, std, numClasses, probeSize: [h, w] }) -> info
Napi::Value ScriptWrap::Load(const Napi::CallbackInfo& info) {
  return QueueSetUp(info, [&](Job& job) {
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
    auto data = std::make_shared<ScriptInfo>();
    job.execute = [this, c, data]() {
      model_ = std::make_shared<ScriptSegmenter>(c);
      *data = ScriptInfo{model_->device().str(), model_->num_classes(), model_->config().in_channels, model_->NumParameters()};
    };
    job.complete = [data](Napi::Env env) -> Napi::Value {
      Napi::Object r = Napi::Object::New(env);
      r.Set("device", data->device);
      r.Set("numClasses", Napi::Number::New(env, static_cast<double>(data->num_classes)));
      r.Set("inChannels", Napi::Number::New(env, static_cast<double>(data->in_channels)));
      r.Set("parameters", Napi::Number::New(env, static_cast<double>(data->parameters)));
      return r;
    };
  });
}

}  // namespace segtorch
