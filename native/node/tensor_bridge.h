// Tensors across the boundary: JS tensor descriptors to at::Tensor (no copy) and back (external
// ArrayBuffers that own the native tensor), and result objects built from native values.
#pragma once
#include <napi.h>

#include <ATen/ATen.h>

#include <string>

#include "node/jobs.h"
#include "train/metrics.h"

namespace segtorch {

// Tensors. JS side: { dtype, shape, data?: TypedArray, handle?: External }.
at::ScalarType ParseDType(const std::string& name);
std::string DTypeName(at::ScalarType t);
// Wraps the JS memory without copying; the array is added to `job` keep-alive when given. A
// tensor with a handle (native memory) is taken from the handle: the job's at::Tensor shares its
// storage, so disposing the JS tensor while the job is queued or running frees nothing until the
// job ends. Views of a SharedArrayBuffer or of a resizable ArrayBuffer are refused (TypeError):
// memory that another thread or a resize() can take away while the job runs (lib/tensor.ts copies
// them before the call).
at::Tensor TensorFromJs(const Napi::Value& v, Job* job);
// CPU tensors come back as an external ArrayBuffer owning the tensor, plus a handle holding the
// same tensor (what TensorFromJs reads); others as a handle only.
Napi::Value TensorToJs(Napi::Env env, at::Tensor t);
void ReleaseHandle(const Napi::Value& v);

// { mIoU, pixelAccuracy, meanAccuracy, fwIoU, meanDice, perClassIoU, perClassAccuracy, perClassDice }
Napi::Object MetricsObject(Napi::Env env, const Metrics& m);

}  // namespace segtorch
