// JS class wrapping a ScriptSegmenter (a TorchScript model): like ModelWrap, each instance owns an
// executor thread, so its jobs run one at a time in call order while the JS thread stays free.
#pragma once
#include <napi.h>

#include <memory>

#include "common/executor.h"
#include "core/script_segmenter.h"
#include "infer/batcher.h"

namespace segtorch {

class ScriptWrap : public Napi::ObjectWrap<ScriptWrap> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit ScriptWrap(const Napi::CallbackInfo& info);
  ~ScriptWrap() override;

 private:
  Napi::Value Load(const Napi::CallbackInfo& info);
  Napi::Value Predict(const Napi::CallbackInfo& info);
  Napi::Value EvalReset(const Napi::CallbackInfo& info);
  Napi::Value EvalUpdate(const Napi::CallbackInfo& info);
  Napi::Value EvalCompute(const Napi::CallbackInfo& info);
  Napi::Value SetBatching(const Napi::CallbackInfo& info);
  Napi::Value Stats(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  Napi::Value Busy(const Napi::CallbackInfo& info);

  Napi::Value Run(const Napi::CallbackInfo& info, std::unique_ptr<struct Job> job);
  void CheckUsable(Napi::Env env, bool need_model = true);

  std::unique_ptr<Executor> executor_;
  std::shared_ptr<ScriptSegmenter> model_;  // touched only on the executor thread once created
  std::shared_ptr<RequestBatcher> batcher_ = std::make_shared<RequestBatcher>();
  int busy_ = 0;
  bool disposed_ = false;
  bool initialised_ = false;
};

}  // namespace segtorch
