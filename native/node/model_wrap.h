// JS class wrapping a Segmenter (our own networks): init, forward, training, checkpoints, state
// dicts; predict, evaluation, batching and dispose come from ModelWrapBase (node/wrap_base.h).
#pragma once
#include <napi.h>

#include "node/wrap_base.h"
#include "core/segmenter.h"

namespace segtorch {

class ModelWrap : public ModelWrapBase<ModelWrap, Segmenter> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit ModelWrap(const Napi::CallbackInfo& info);

 private:
  Napi::Value InitModel(const Napi::CallbackInfo& info);
  Napi::Value Forward(const Napi::CallbackInfo& info);
  Napi::Value TrainStep(const Napi::CallbackInfo& info);
  Napi::Value SetTraining(const Napi::CallbackInfo& info);
  Napi::Value Save(const Napi::CallbackInfo& info);
  Napi::Value Load(const Napi::CallbackInfo& info);
  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value CompiledStats(const Napi::CallbackInfo& info);
  Napi::Value Features(const Napi::CallbackInfo& info);
  Napi::Value Seed(const Napi::CallbackInfo& info);
  Napi::Value CheckGradients(const Napi::CallbackInfo& info);
  Napi::Value LoadStateDict(const Napi::CallbackInfo& info);
  Napi::Value SaveStateDict(const Napi::CallbackInfo& info);
  Napi::Value StateDictShapes(const Napi::CallbackInfo& info);
  Napi::Value ExportTorchScript(const Napi::CallbackInfo& info);
  Napi::Value ExportGraph(const Napi::CallbackInfo& info);
  Napi::Value Distribute(const Napi::CallbackInfo& info);
};

}  // namespace segtorch
