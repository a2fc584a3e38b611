#include "node/batching.h"

namespace segtorch {

std::function<void()> PredictExecute(Napi::Env env, const std::shared_ptr<RequestBatcher>& batcher, const Napi::Value& options,
                                     const at::Tensor& images, BatchFn run, std::shared_ptr<at::Tensor> result) {
  if (!batcher->enabled()) {
    batcher->CountUnbatched(images.dim() > 0 ? images.size(0) : 0);
    return [images, run, result]() { *result = run(images); };
  }
  std::string key = "{}";
  if (options.IsObject()) {
    Napi::Object json = env.Global().Get("JSON").As<Napi::Object>();
    Napi::Value s = json.Get("stringify").As<Napi::Function>().Call(json, {options});
    if (s.IsString()) key = s.As<Napi::String>().Utf8Value();
  }
  std::shared_ptr<BatchRequest> request = batcher->Submit(images, key, std::move(run));
  std::shared_ptr<RequestBatcher> b = batcher;
  return [b, request, result]() {
    *result = b->Serve(request);
    request->result = at::Tensor();  // the job's result holds it now
  };
}

void SetBatchingJs(const Napi::CallbackInfo& info, RequestBatcher& batcher) {
  if (info.Length() < 1 || !info[0].IsObject()) {
    batcher.Disable();
    return;
  }
  Napi::Object o = info[0].As<Napi::Object>();
  batcher.Configure(static_cast<int64_t>(GetNumber(o, "maxBatch", 8)), GetNumber(o, "maxDelayMs", 5));
}

Napi::Value BatchStatsJs(Napi::Env env, RequestBatcher& batcher) {
  BatchStats s = batcher.Stats();
  Napi::Object o = Napi::Object::New(env);
  auto num = [&](const char* k, int64_t v) { o.Set(k, Napi::Number::New(env, static_cast<double>(v))); };
  num("requests", s.requests);
  num("images", s.images);
  num("runs", s.runs);
  num("batched", s.batched);
  num("largest", s.largest);
  num("fallbacks", s.fallbacks);
  return o;
}

}  // namespace segtorch
