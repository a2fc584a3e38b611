#include "node/options.h"

#include "node/tensor_bridge.h"

namespace segtorch {

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

namespace {
// A field TypeScript always fills: missing or of another type is a TypeError naming it.
Napi::Value Field(const Napi::Object& o, const char* key, bool ok(const Napi::Value&), const char* what) {
  Napi::Value v = o.Get(key);
  if (!ok(v)) {
    ThrowType(std::string("Expected ") + what + " for " + key + " but received " +
              (v.IsUndefined() ? "undefined (the TypeScript side fills every option)" : "another type"));
  }
  return v;
}
bool IsNumber(const Napi::Value& v) { return v.IsNumber(); }
bool IsString(const Napi::Value& v) { return v.IsString(); }
bool IsBoolean(const Napi::Value& v) { return v.IsBoolean(); }
bool IsObject(const Napi::Value& v) { return v.IsObject(); }
bool IsArray(const Napi::Value& v) { return v.IsArray(); }
}  // namespace

double NumberField(const Napi::Object& o, const char* key) { return Field(o, key, IsNumber, "a number").As<Napi::Number>().DoubleValue(); }
int64_t IntField(const Napi::Object& o, const char* key) { return static_cast<int64_t>(NumberField(o, key)); }
std::string StringField(const Napi::Object& o, const char* key) { return Field(o, key, IsString, "a string").As<Napi::String>().Utf8Value(); }
bool BoolField(const Napi::Object& o, const char* key) { return Field(o, key, IsBoolean, "a boolean").As<Napi::Boolean>().Value(); }
Napi::Object ObjectField(const Napi::Object& o, const char* key) { return Field(o, key, IsObject, "an object").As<Napi::Object>(); }
std::vector<double> NumbersField(const Napi::Object& o, const char* key) {
  Field(o, key, IsArray, "an array of numbers");
  return GetNumbers(o, key);
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

LossOptions ReadLossOptions(const Napi::Object& o, bool with_ignore_index) {
  LossOptions l;
  if (with_ignore_index) l.ignore_index = IntField(o, "ignoreIndex");
  l.label_smoothing = NumberField(o, "labelSmoothing");
  l.ohem_threshold = NumberField(o, "ohemThreshold");
  l.ohem_min_kept = IntField(o, "ohemMinKept");
  l.focal_gamma = NumberField(o, "focalGamma");
  l.dice_smooth = NumberField(o, "diceSmooth");
  std::vector<double> w = GetNumbers(o, "classWeights");  // optional: absent = unweighted
  if (!w.empty()) l.class_weights = torch::tensor(w, torch::kFloat);
  return l;
}

CrfOptions ReadCrfOptions(const Napi::Object& o) {
  CrfOptions c;
  c.enabled = true;
  Napi::Object g = ObjectField(o, "gaussian"), b = ObjectField(o, "bilateral");
  c.gaussian_sxy = NumberField(g, "sxy");
  c.gaussian_compat = NumberField(g, "compat");
  c.bilateral_sxy = NumberField(b, "sxy");
  c.bilateral_srgb = NumberField(b, "srgb");
  c.bilateral_compat = NumberField(b, "compat");
  c.iterations = IntField(o, "iterations");
  return c;
}

InferOptions ReadInferOptions(const Napi::Value& v) {
  if (!v.IsObject()) ThrowType("Expected an options object for predict options");
  Napi::Object obj = v.As<Napi::Object>();
  InferOptions o;
  o.mode = StringField(obj, "mode");
  std::vector<double> crop = NumbersField(obj, "crop"), stride = NumbersField(obj, "stride");
  if (crop.size() != 2 || stride.size() != 2) ThrowType("Expected [h, w] for crop and stride");
  o.crop_h = static_cast<int64_t>(crop[0]);
  o.crop_w = static_cast<int64_t>(crop[1]);
  o.stride_h = static_cast<int64_t>(stride[0]);
  o.stride_w = static_cast<int64_t>(stride[1]);
  o.scales = NumbersField(obj, "scales");
  o.flip = BoolField(obj, "flip");
  o.output = StringField(obj, "output");
  o.precision = ParsePrecision(StringField(obj, "precision"), "inference");
  o.channels_last = BoolField(obj, "channelsLast");
  o.fold_batch_norm = BoolField(obj, "foldBatchNorm");
  o.compile = BoolField(obj, "compile");
  o.winograd = BoolField(obj, "winograd");
  Napi::Value crf = obj.Get("crf");  // optional: absent = no CRF
  if (crf.IsObject()) o.crf = ReadCrfOptions(crf.As<Napi::Object>());
  return o;
}

ModelConfig ReadModelConfig(const Napi::Object& o) {
  ModelConfig c;
  c.arch = StringField(o, "arch");
  c.backbone = StringField(o, "backbone");
  c.num_classes = IntField(o, "numClasses");
  c.in_channels = IntField(o, "inChannels");
  c.output_stride = IntField(o, "outputStride");
  c.aux = BoolField(o, "aux");
  c.mean = NumbersField(o, "mean");
  c.std = NumbersField(o, "std");
  c.device = StringField(o, "device");
  c.json = StringField(o, "json");
  // Limits, given by loadModel only: absent = none.
  c.max_build_bytes = static_cast<int64_t>(GetNumber(o, "maxBuildBytes", 0));
  c.max_parameters = static_cast<int64_t>(GetNumber(o, "maxParameters", 0));
  Napi::Object e = ObjectField(o, "extra");
  Napi::Array keys = e.GetPropertyNames();
  for (uint32_t i = 0; i < keys.Length(); ++i) {
    std::string k = keys.Get(i).As<Napi::String>().Utf8Value();
    Napi::Value v = e.Get(k);
    if (v.IsNumber()) c.numbers[k] = v.As<Napi::Number>().DoubleValue();
    else if (v.IsBoolean()) c.numbers[k] = v.As<Napi::Boolean>().Value() ? 1.0 : 0.0;
    else if (v.IsString()) c.strings[k] = v.As<Napi::String>().Utf8Value();
  }
  return c;
}

ExportOptions ReadExportOptions(const Napi::Value& v) {
  if (!v.IsObject()) ThrowType("Expected an export options object");
  Napi::Object o = v.As<Napi::Object>();
  ExportOptions e;
  e.height = IntField(o, "height");
  e.width = IntField(o, "width");
  e.dynamic = BoolField(o, "dynamic");
  e.dtype = AutocastType(ParsePrecision(StringField(o, "precision"), "export"));  // TraceForExport refuses fp16
  return e;
}

TrainStepOptions ReadStepOptions(const Napi::Value& v) {
  if (!v.IsObject()) ThrowType("Expected an options object for trainStep options");
  Napi::Object obj = v.As<Napi::Object>();
  TrainStepOptions o;
  o.ignore_index = IntField(obj, "ignoreIndex");
  o.aux_weight = NumberField(obj, "auxWeight");
  Napi::Object p = ObjectField(obj, "optimizer");
  OptimizerOptions& q = o.optimizer;
  q.type = StringField(p, "type");
  q.lr = NumberField(p, "lr");
  q.momentum = NumberField(p, "momentum");
  q.weight_decay = NumberField(p, "weightDecay");
  q.nesterov = BoolField(p, "nesterov");
  std::vector<double> betas = NumbersField(p, "betas");
  if (betas.size() != 2) ThrowType("Expected [beta1, beta2] for betas");
  q.beta1 = betas[0];
  q.beta2 = betas[1];
  q.eps = NumberField(p, "eps");
  o.head_lr_multiplier = NumberField(obj, "headLrMultiplier");
  o.no_decay_norm_bias = BoolField(obj, "noDecayOnNormAndBias");
  o.precision = ParsePrecision(StringField(obj, "precision"), "training");
  o.channels_last = BoolField(obj, "channelsLast");
  o.winograd = BoolField(obj, "winograd");
  o.clip_grad_norm = NumberField(obj, "clipGradNorm");
  o.accumulate = IntField(obj, "accumulate");
  o.depth_loss = StringField(obj, "depthLoss");
  o.depth_weight = NumberField(obj, "depthWeight");
  o.loss = StringField(obj, "loss");
  // The step's ignoreIndex is the one that counts (lossOptions has none).
  o.loss_options = ReadLossOptions(ObjectField(obj, "lossOptions"), /*with_ignore_index=*/false);
  o.loss_options.ignore_index = o.ignore_index;
  Napi::Object c = ObjectField(obj, "schedule");
  ScheduleOptions& s = o.schedule;
  s.type = StringField(c, "type");
  s.total = IntField(c, "total");
  s.warmup = IntField(c, "warmup");
  s.warmup_start = NumberField(c, "warmupStart");
  s.power = NumberField(c, "power");
  s.min_factor = NumberField(c, "minFactor");
  s.step_size = IntField(c, "stepSize");
  s.gamma = NumberField(c, "gamma");
  for (double m : NumbersField(c, "milestones")) s.milestones.push_back(static_cast<int64_t>(m));
  return o;
}

// Augmentation options are partial by design: an absent transform is off.
AugmentOptions ReadAugmentOptions(const Napi::Object& o) {
  AugmentOptions a;
  std::vector<double> resize = GetNumbers(o, "resize"), pad = GetNumbers(o, "pad"), scale = GetNumbers(o, "scale"), crop = GetNumbers(o, "crop");
  if (resize.size() == 2) a.resize_h = static_cast<int64_t>(resize[0]), a.resize_w = static_cast<int64_t>(resize[1]);
  if (pad.size() == 2) a.pad_h = static_cast<int64_t>(pad[0]), a.pad_w = static_cast<int64_t>(pad[1]);
  if (scale.size() == 2) a.scale_min = scale[0], a.scale_max = scale[1];
  if (crop.size() == 2) a.crop_h = static_cast<int64_t>(crop[0]), a.crop_w = static_cast<int64_t>(crop[1]);
  a.pad_to_batch = GetBool(o, "padToBatch", false);
  a.flip = GetBool(o, "flip", false);
  a.brightness = GetNumber(o, "brightness", 0);
  a.contrast = GetNumber(o, "contrast", 0);
  a.saturation = GetNumber(o, "saturation", 0);
  a.hue = GetNumber(o, "hue", 0);
  a.ignore_index = static_cast<int64_t>(GetNumber(o, "ignoreIndex", 255));
  a.fill = GetNumbers(o, "fill");
  a.mean = GetNumbers(o, "mean");
  a.std = GetNumbers(o, "std");
  return a;
}

}  // namespace segtorch
