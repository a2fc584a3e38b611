// The distributed module's exports (lib/distributed.ts): the process group (dist/process_group.h)
// made, used and released on the distributed executor; a model's data-parallel set-up is
// ModelWrap's distribute().
#pragma once
#include <napi.h>

namespace segtorch {

// distAvailable() -> { c10d, gloo, nccl, why } (synchronous)
Napi::Value DistAvailable(const Napi::CallbackInfo& info);
// distInit({ backend, rank, worldSize, localRank, localWorldSize, masterAddr, masterPort,
// agentStore, restartCount, timeoutMs }) -> Promise<{ rank, worldSize, backend }>: the rendezvous.
Napi::Value DistInit(const Napi::CallbackInfo& info);
// distBarrier(what) -> Promise<void>
Napi::Value DistBarrier(const Napi::CallbackInfo& info);
// distAllReduce(tensor, op 'sum' | 'max', what) -> Promise<tensor>: a reduced copy.
Napi::Value DistAllReduce(const Napi::CallbackInfo& info);
// distDestroy() -> Promise<void>: releases the process group (a model set up with it keeps it).
Napi::Value DistDestroy(const Napi::CallbackInfo& info);
// distStats() -> { reducedBytes, reduceSeconds, overlappedBytes } of the current group (zeros without one).
Napi::Value DistStats(const Napi::CallbackInfo& info);

}  // namespace segtorch
