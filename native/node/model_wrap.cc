#include "node/model_wrap.h"

#include "dist/data_parallel.h"
#include "dist/sync_batch_norm.h"

#include "node/jobs.h"
#include "node/options.h"
#include "node/tensor_bridge.h"

namespace segtorch {

namespace {

// trainStep / checkGradients(images, masks, options, ...)
struct StepInputs {
  at::Tensor images, masks;
  TrainStepOptions options;
};

StepInputs ReadStepInputs(const Napi::CallbackInfo& info, Job& job) {
  at::Tensor images = TensorFromJs(info[0], &job);
  at::Tensor masks = TensorFromJs(info[1], &job);
  return StepInputs{images, masks, ReadStepOptions(info[2])};
}

struct InfoData {
  ModelConfig config;
  std::string device;
  int64_t parameters = 0, trainable = 0, steps = 0;
  bool training = false;
};

// Read on the executor thread, turned into JS on the JS thread.
InfoData Snapshot(Segmenter& s) {
  return InfoData{s.config(), s.device().str(), s.NumParameters(false), s.NumParameters(true), s.steps(), s.IsTraining()};
}

Napi::Object InfoObject(Napi::Env env, const InfoData& s) {
  const ModelConfig& c = s.config;
  Napi::Object o = Napi::Object::New(env);
  o.Set("arch", c.arch);
  o.Set("backbone", c.backbone);
  o.Set("numClasses", Napi::Number::New(env, static_cast<double>(c.num_classes)));
  o.Set("inChannels", Napi::Number::New(env, static_cast<double>(c.in_channels)));
  o.Set("outputStride", Napi::Number::New(env, static_cast<double>(c.output_stride)));
  o.Set("device", s.device);
  o.Set("parameters", Napi::Number::New(env, static_cast<double>(s.parameters)));
  o.Set("trainableParameters", Napi::Number::New(env, static_cast<double>(s.trainable)));
  o.Set("steps", Napi::Number::New(env, static_cast<double>(s.steps)));
  o.Set("training", Napi::Boolean::New(env, s.training));
  return o;
}

Napi::Array StringArray(Napi::Env env, const std::vector<std::string>& v) {
  Napi::Array a = Napi::Array::New(env, v.size());
  for (size_t i = 0; i < v.size(); ++i) a.Set(static_cast<uint32_t>(i), v[i]);
  return a;
}

// What an export is: size-independent or of fixed size (and why).
Napi::Object ExportInfoObject(Napi::Env env, const ExportGraph& e) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("dynamic", Napi::Boolean::New(env, e.dynamic));
  o.Set("note", e.note);
  o.Set("batch", Napi::Number::New(env, static_cast<double>(e.batch)));
  o.Set("height", Napi::Number::New(env, static_cast<double>(e.height)));
  o.Set("width", Napi::Number::New(env, static_cast<double>(e.width)));
  o.Set("inputMultiple", Napi::Number::New(env, static_cast<double>(e.input_multiple)));
  return o;
}

Napi::Value IValueToJs(Napi::Env env, const c10::IValue& v) {
  auto numbers = [&](const std::vector<double>& xs) {
    Napi::Array a = Napi::Array::New(env, xs.size());
    for (size_t i = 0; i < xs.size(); ++i) a.Set(static_cast<uint32_t>(i), Napi::Number::New(env, xs[i]));
    return a;
  };
  if (v.isNone()) return env.Null();
  if (v.isBool()) return Napi::Boolean::New(env, v.toBool());
  if (v.isInt()) return Napi::Number::New(env, static_cast<double>(v.toInt()));
  if (v.isDouble()) return Napi::Number::New(env, v.toDouble());
  if (v.isString()) return Napi::String::New(env, v.toStringRef());
  if (v.isDevice()) return Napi::String::New(env, v.toDevice().str());
  if (v.isIntList()) {
    auto xs = v.toIntVector();
    return numbers(std::vector<double>(xs.begin(), xs.end()));
  }
  if (v.isDoubleList()) return numbers(v.toDoubleVector());
  if (v.isBoolList()) {
    auto xs = v.toBoolList();
    std::vector<double> d;
    for (bool b : xs) d.push_back(b ? 1 : 0);
    return numbers(d);
  }
  if (v.isTensor()) return TensorToJs(env, v.toTensor().detach().to(at::kCPU).contiguous());
  Napi::Object o = Napi::Object::New(env);
  o.Set("unsupported", v.tagKind());
  return o;
}

Napi::Object GraphObject(Napi::Env env, const GraphDescription& d) {
  Napi::Object o = Napi::Object::New(env);
  auto ints = [&](const std::vector<int64_t>& xs) {
    Napi::Array a = Napi::Array::New(env, xs.size());
    for (size_t i = 0; i < xs.size(); ++i) a.Set(static_cast<uint32_t>(i), Napi::Number::New(env, static_cast<double>(xs[i])));
    return a;
  };
  Napi::Array values = Napi::Array::New(env, d.values.size());
  for (size_t i = 0; i < d.values.size(); ++i) {
    Napi::Object v = Napi::Object::New(env);
    v.Set("type", d.values[i].type);
    v.Set("sizes", ints(d.values[i].sizes));
    v.Set("dtype", d.values[i].dtype);
    values.Set(static_cast<uint32_t>(i), v);
  }
  Napi::Array nodes = Napi::Array::New(env, d.nodes.size());
  for (size_t i = 0; i < d.nodes.size(); ++i) {
    const auto& n = d.nodes[i];
    Napi::Object v = Napi::Object::New(env);
    v.Set("kind", n.kind);
    v.Set("inputs", ints(n.inputs));
    v.Set("outputs", ints(n.outputs));
    if (n.kind == "prim::Constant") v.Set("value", IValueToJs(env, n.constant));
    if (!n.name.empty()) v.Set("name", n.name);
    nodes.Set(static_cast<uint32_t>(i), v);
  }
  o.Set("values", values);
  o.Set("nodes", nodes);
  o.Set("input", Napi::Number::New(env, static_cast<double>(d.input)));
  o.Set("output", Napi::Number::New(env, static_cast<double>(d.output)));
  return o;
}

const WrapKind kModelKind = {"this model is not initialised", "this model failed to initialise", "model already initialised",
                             /*release_on_executor=*/false};

}  // namespace

Napi::Function ModelWrap::Init(Napi::Env env) {
  return DefineClass(env, "NativeModel",
                     WithSharedMethods({
                         InstanceMethod<&ModelWrap::InitModel>("init"),
                         InstanceMethod<&ModelWrap::Forward>("forward"),
                         InstanceMethod<&ModelWrap::TrainStep>("trainStep"),
                         InstanceMethod<&ModelWrap::SetTraining>("setTraining"),
                         InstanceMethod<&ModelWrap::Save>("save"),
                         InstanceMethod<&ModelWrap::Load>("load"),
                         InstanceMethod<&ModelWrap::Info>("info"),
                         InstanceMethod<&ModelWrap::CompiledStats>("compiledStats"),
                         InstanceMethod<&ModelWrap::CheckGradients>("checkGradients"),
                         InstanceMethod<&ModelWrap::Features>("features"),
                         InstanceMethod<&ModelWrap::Seed>("seed"),
                         InstanceMethod<&ModelWrap::LoadStateDict>("loadStateDict"),
                         InstanceMethod<&ModelWrap::SaveStateDict>("saveStateDict"),
                         InstanceMethod<&ModelWrap::StateDictShapes>("stateDictShapes"),
                         InstanceMethod<&ModelWrap::ExportTorchScript>("exportTorchScript"),
                         InstanceMethod<&ModelWrap::ExportGraph>("exportGraph"),
                         InstanceMethod<&ModelWrap::Distribute>("distribute"),
                     }));
}

ModelWrap::ModelWrap(const Napi::CallbackInfo& info) : ModelWrapBase(info, kModelKind) {}

Napi::Value ModelWrap::InitModel(const Napi::CallbackInfo& info) {
  return QueueSetUp(info, [&](Job& job) {
    ModelConfig config = ReadModelConfig(info[0].As<Napi::Object>());
    auto data = std::make_shared<InfoData>();
    job.execute = [this, config, data]() {
      model_ = std::make_shared<Segmenter>(config);
      *data = Snapshot(*model_);
    };
    job.complete = [data](Napi::Env env) -> Napi::Value { return InfoObject(env, *data); };
  });
}

Napi::Value ModelWrap::Forward(const Napi::CallbackInfo& info) {
  return Queue(info, [&](Job& job) {
    at::Tensor images = TensorFromJs(info[0], &job);
    bool all = info.Length() > 1 && info[1].IsBoolean() && info[1].As<Napi::Boolean>().Value();
    Precision precision =
        ParsePrecision(info.Length() > 2 && info[2].IsString() ? info[2].As<Napi::String>().Utf8Value() : "fp32", "forward");
    auto result = std::make_shared<SegOutput>();
    job.execute = [this, images, precision, result]() { *result = Loaded().Forward(images, precision); };
    job.complete = [result, all](Napi::Env env) -> Napi::Value {
      if (!all) return TensorToJs(env, result->out);
      Napi::Object o = Napi::Object::New(env);
      o.Set("out", TensorToJs(env, result->out));
      for (auto& a : result->aux) o.Set(a.first, TensorToJs(env, a.second.contiguous()));
      return o;
    };
  });
}

Napi::Value ModelWrap::TrainStep(const Napi::CallbackInfo& info) {
  return Queue(info, [&](Job& job) {
    StepInputs in = ReadStepInputs(info, job);
    at::Tensor depth = info.Length() > 3 && info[3].IsObject() ? TensorFromJs(info[3], &job) : at::Tensor();
    auto result = std::make_shared<StepResult>();
    job.execute = [this, in, depth, result]() { *result = Loaded().TrainStep(in.images, in.masks, in.options, depth); };
    job.complete = [result](Napi::Env env) -> Napi::Value {
      Napi::Object o = Napi::Object::New(env);
      o.Set("loss", result->loss);
      o.Set("step", Napi::Number::New(env, static_cast<double>(result->step)));
      o.Set("lr", result->lr);
      Napi::Array lrs = Napi::Array::New(env, result->lrs.size());
      for (size_t i = 0; i < result->lrs.size(); ++i) lrs.Set(static_cast<uint32_t>(i), result->lrs[i]);
      o.Set("lrs", lrs);
      o.Set("updated", result->updated);
      o.Set("skipped", result->skipped);
      if (result->grad_norm >= 0) o.Set("gradNorm", result->grad_norm);
      Napi::Object parts = Napi::Object::New(env);
      for (auto& p : result->parts) parts.Set(p.first, p.second);
      o.Set("parts", parts);
      return o;
    };
  });
}

Napi::Value ModelWrap::SetTraining(const Napi::CallbackInfo& info) {
  return Queue(info, [&](Job& job) {
    bool on = info[0].ToBoolean().Value();
    job.execute = [this, on]() {
      if (model_) model_->SetTraining(on);
    };
  });
}

Napi::Value ModelWrap::Save(const Napi::CallbackInfo& info) {
  return Queue(info, [&](Job& job) {
    std::string path = info[0].As<Napi::String>().Utf8Value();
    bool training_state = info.Length() > 1 && info[1].IsString();
    std::string fit_state = training_state ? info[1].As<Napi::String>().Utf8Value() : "";
    job.execute = [this, path, training_state, fit_state]() { Loaded().Save(path, training_state, fit_state); };
  });
}

Napi::Value ModelWrap::Load(const Napi::CallbackInfo& info) {
  return Queue(info, [&](Job& job) {
    std::string path = info[0].As<Napi::String>().Utf8Value();
    auto fit = std::make_shared<std::string>();
    job.execute = [this, path, fit]() { *fit = Loaded().Load(path); };
    job.complete = [fit](Napi::Env env) -> Napi::Value { return Napi::String::New(env, *fit); };
  });
}

Napi::Value ModelWrap::Info(const Napi::CallbackInfo& info) {
  return Queue(info, [&](Job& job) {
    auto data = std::make_shared<InfoData>();
    job.execute = [this, data]() { *data = Snapshot(Loaded()); };
    job.complete = [data](Napi::Env env) -> Napi::Value { return InfoObject(env, *data); };
  });
}

// compiledStats() -> { compiled, runs, fallbacks, error } of predict's compiled path
Napi::Value ModelWrap::CompiledStats(const Napi::CallbackInfo& info) {
  return Queue(info, [&](Job& job) {
    auto data = std::make_shared<CompiledNet::Stats>();
    job.execute = [this, data]() { *data = Loaded().compiled_stats(); };
    job.complete = [data](Napi::Env env) -> Napi::Value {
      Napi::Object o = Napi::Object::New(env);
      o.Set("compiled", Napi::Number::New(env, static_cast<double>(data->compiled)));
      o.Set("runs", Napi::Number::New(env, static_cast<double>(data->runs)));
      o.Set("fallbacks", Napi::Number::New(env, static_cast<double>(data->fallbacks)));
      o.Set("error", data->error);
      return o;
    };
  });
}

Napi::Value ModelWrap::Seed(const Napi::CallbackInfo& info) {
  return Queue(info, [&](Job& job) {
    uint64_t seed = static_cast<uint64_t>(info[0].As<Napi::Number>().Int64Value());
    job.execute = [this, seed]() { Loaded().Seed(seed); };
  });
}

Napi::Value ModelWrap::Features(const Napi::CallbackInfo& info) {
  return Queue(info, [&](Job& job) {
    at::Tensor images = TensorFromJs(info[0], &job);
    auto result = std::make_shared<std::vector<at::Tensor>>();
    job.execute = [this, images, result]() { *result = Loaded().Features(images); };
    job.complete = [result](Napi::Env env) -> Napi::Value {
      Napi::Array a = Napi::Array::New(env, result->size());
      for (size_t i = 0; i < result->size(); ++i) a.Set(static_cast<uint32_t>(i), TensorToJs(env, (*result)[i]));
      return a;
    };
  });
}

Napi::Value ModelWrap::CheckGradients(const Napi::CallbackInfo& info) {
  return Queue(info, [&](Job& job) {
    StepInputs in = ReadStepInputs(info, job);
    auto result = std::make_shared<std::vector<std::string>>();
    job.execute = [this, in, result]() { *result = Loaded().ParametersWithoutGradient(in.images, in.masks, in.options); };
    job.complete = [result](Napi::Env env) -> Napi::Value { return StringArray(env, *result); };
  });
}

Napi::Value ModelWrap::LoadStateDict(const Napi::CallbackInfo& info) {
  return Queue(info, [&](Job& job) {
    std::string path = info[0].As<Napi::String>().Utf8Value();
    bool strict = info[1].ToBoolean().Value();
    std::string prefix = info.Length() > 2 && info[2].IsString() ? info[2].As<Napi::String>().Utf8Value() : "";
    auto result = std::make_shared<StateDictReport>();
    job.execute = [this, path, strict, prefix, result]() { *result = Loaded().LoadStateDict(path, strict, prefix); };
    job.complete = [result](Napi::Env env) -> Napi::Value {
      Napi::Object o = Napi::Object::New(env);
      o.Set("missing", StringArray(env, result->missing));
      o.Set("unexpected", StringArray(env, result->unexpected));
      o.Set("mismatched", StringArray(env, result->mismatched));
      o.Set("loaded", Napi::Number::New(env, static_cast<double>(result->loaded)));
      return o;
    };
  });
}

Napi::Value ModelWrap::SaveStateDict(const Napi::CallbackInfo& info) {
  return Queue(info, [&](Job& job) {
    std::string path = info[0].As<Napi::String>().Utf8Value();
    job.execute = [this, path]() { Loaded().SaveStateDict(path); };
  });
}

Napi::Value ModelWrap::StateDictShapes(const Napi::CallbackInfo& info) {
  return Queue(info, [&](Job& job) {
    auto result = std::make_shared<std::vector<std::pair<std::string, std::vector<int64_t>>>>();
    job.execute = [this, result]() { *result = Loaded().StateDictShapes(); };
    job.complete = [result](Napi::Env env) -> Napi::Value {
      Napi::Object o = Napi::Object::New(env);
      for (auto& kv : *result) {
        Napi::Array shape = Napi::Array::New(env, kv.second.size());
        for (size_t i = 0; i < kv.second.size(); ++i) shape.Set(static_cast<uint32_t>(i), Napi::Number::New(env, static_cast<double>(kv.second[i])));
        o.Set(kv.first, shape);
      }
      return o;
    };
  });
}

// exportTorchScript(path, { height, width, dynamic }, metadata) -> { dynamic, note, batch, height, width, inputMultiple }
Napi::Value ModelWrap::ExportTorchScript(const Napi::CallbackInfo& info) {
  return Queue(info, [&](Job& job) {
    std::string path = info[0].As<Napi::String>().Utf8Value();
    ExportOptions options = ReadExportOptions(info[1]);
    std::string metadata = info[2].As<Napi::String>().Utf8Value();
    auto result = std::make_shared<std::shared_ptr<const segtorch::ExportGraph>>();
    job.execute = [this, path, options, metadata, result]() {
      Segmenter& s = Loaded();
      *result = s.TraceForExport(options);
      SaveTorchScript(**result, s.config().arch, path, metadata);
    };
    job.complete = [result](Napi::Env env) -> Napi::Value { return ExportInfoObject(env, **result); };
  });
}

// exportGraph({ height, width, dynamic }) -> { info, graph: { values, nodes, input, output } }
Napi::Value ModelWrap::ExportGraph(const Napi::CallbackInfo& info) {
  return Queue(info, [&](Job& job) {
    ExportOptions options = ReadExportOptions(info[0]);
    auto result = std::make_shared<std::pair<std::shared_ptr<const segtorch::ExportGraph>, GraphDescription>>();
    job.execute = [this, options, result]() {
      result->first = Loaded().TraceForExport(options);
      result->second = Describe(*result->first);
    };
    job.complete = [result](Napi::Env env) -> Napi::Value {
      Napi::Object o = Napi::Object::New(env);
      o.Set("info", ExportInfoObject(env, *result->first));
      o.Set("graph", GraphObject(env, result->second));
      return o;
    };
  });
}

// distribute({ bucketBytes, broadcastBuffers, syncBatchNorm } | null) -> Promise<{ buckets }>: collective (every
// rank at the same point): checks that the model is the same on every rank, copies rank 0's
// parameters and buffers to all, and from then on each training step averages the gradients over
// the ranks of distributed.init()'s group. null: this process trains alone again.
Napi::Value ModelWrap::Distribute(const Napi::CallbackInfo& info) {
  return Queue(info, [&](Job& job) {
    bool off = info[0].IsNull() || info[0].IsUndefined();
    dist::DataParallelOptions o;
    if (!off) {
      Napi::Object obj = info[0].As<Napi::Object>();
      o.bucket_bytes = IntField(obj, "bucketBytes");
      o.broadcast_buffers = BoolField(obj, "broadcastBuffers");
      o.sync_batch_norm = BoolField(obj, "syncBatchNorm");
    }
    job.execute = [this, off, o]() mutable {
      Segmenter& s = Loaded();
      if (off) {
        s.SetDataParallel(nullptr);
        dist::SetSyncBatchNorm(s.net(), nullptr);
        return;
      }
      o.description = s.Description();
      s.SetDataParallel(std::make_shared<dist::DataParallel>(dist::Default(), s.net(), o));
    };
  });
}

}  // namespace segtorch
