// The Node-API side of request batching (infer/batcher.h): the execute function of a predict job,
// and the JS methods setBatching / stats (ModelWrapBase, node/wrap_base.h, gives them to both model classes).
#pragma once
#include <napi.h>

#include <memory>

#include "infer/batcher.h"
#include "node/jobs.h"
#include "node/options.h"
#include "node/tensor_bridge.h"

namespace segtorch {

// The execute function of a predict job for `images`: through the batcher when batching is on
// (`options` is the JS options object: its JSON is the batch key), else `run` directly.
std::function<void()> PredictExecute(Napi::Env env, const std::shared_ptr<RequestBatcher>& batcher, const Napi::Value& options,
                                     const at::Tensor& images, BatchFn run, std::shared_ptr<at::Tensor> result);

// setBatching({ maxBatch, maxDelayMs }) or setBatching(false)
void SetBatchingJs(const Napi::CallbackInfo& info, RequestBatcher& batcher);
// { requests, images, runs, batched, largest, fallbacks, batching: { maxBatch, maxDelayMs } | false }
Napi::Value BatchStatsJs(Napi::Env env, RequestBatcher& batcher);

}  // namespace segtorch
