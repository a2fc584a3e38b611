// JS class wrapping a ScriptSegmenter (a TorchScript model): load; predict, evaluation, batching
// and dispose come from ModelWrapBase (node/wrap_base.h), as for our own models.
#pragma once
#include <napi.h>

#include "node/wrap_base.h"
#include "core/script_segmenter.h"

namespace segtorch {

class ScriptWrap : public ModelWrapBase<ScriptWrap, ScriptSegmenter> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit ScriptWrap(const Napi::CallbackInfo& info);

 private:
  Napi::Value Load(const Napi::CallbackInfo& info);
};

}  // namespace segtorch
