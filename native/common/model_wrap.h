// JS class wrapping a Segmenter: each instance owns an executor thread, so jobs on one model run
// one at a time in call order while the JS thread stays free.
#pragma once
#include <napi.h>

#include <memory>

#include "common/executor.h"
#include "core/segmenter.h"
#include "infer/batcher.h"

namespace segtorch {

class ModelWrap : public Napi::ObjectWrap<ModelWrap> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit ModelWrap(const Napi::CallbackInfo& info);
  ~ModelWrap() override;

 private:
  Napi::Value InitModel(const Napi::CallbackInfo& info);
  Napi::Value Forward(const Napi::CallbackInfo& info);
  Napi::Value Predict(const Napi::CallbackInfo& info);
  Napi::Value TrainStep(const Napi::CallbackInfo& info);
  Napi::Value SetTraining(const Napi::CallbackInfo& info);
  Napi::Value Save(const Napi::CallbackInfo& info);
  Napi::Value Load(const Napi::CallbackInfo& info);
  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  Napi::Value Features(const Napi::CallbackInfo& info);
  Napi::Value Seed(const Napi::CallbackInfo& info);
  Napi::Value EvalReset(const Napi::CallbackInfo& info);
  Napi::Value EvalUpdate(const Napi::CallbackInfo& info);
  Napi::Value EvalCompute(const Napi::CallbackInfo& info);
  Napi::Value CheckGradients(const Napi::CallbackInfo& info);
  Napi::Value LoadStateDict(const Napi::CallbackInfo& info);
  Napi::Value SaveStateDict(const Napi::CallbackInfo& info);
  Napi::Value StateDictShapes(const Napi::CallbackInfo& info);
  Napi::Value Busy(const Napi::CallbackInfo& info);
  Napi::Value SetBatching(const Napi::CallbackInfo& info);
  Napi::Value Stats(const Napi::CallbackInfo& info);

  // Queue a job on this model's executor; the JS object stays alive until it settles.
  Napi::Value Run(const Napi::CallbackInfo& info, std::unique_ptr<struct Job> job);
  void CheckUsable(Napi::Env env, bool need_model = true);

  std::unique_ptr<Executor> executor_;
  std::shared_ptr<Segmenter> segmenter_;  // touched only on the executor thread once created
  std::shared_ptr<RequestBatcher> batcher_ = std::make_shared<RequestBatcher>();  // predict batching
  int busy_ = 0;                          // jobs queued or running (JS thread)
  bool disposed_ = false;
  bool initialised_ = false;
};

}  // namespace segtorch
