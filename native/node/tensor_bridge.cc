#include "node/tensor_bridge.h"

namespace segtorch {

namespace {

size_t ElementSize(at::ScalarType t) { return c10::elementSize(t); }

struct ExternalTensor {
  at::Tensor tensor;
  int64_t reported = 0;
};

}  // namespace

at::ScalarType ParseDType(const std::string& name) {
  if (name == "float32") return at::kFloat;
  if (name == "float16") return at::kHalf;
  if (name == "bfloat16") return at::kBFloat16;
  if (name == "int32") return at::kInt;
  if (name == "int64") return at::kLong;
  if (name == "uint8") return at::kByte;
  if (name == "bool") return at::kBool;
  ThrowType("Expected a dtype (float32, float16, bfloat16, int32, int64, uint8, bool) but received " + name);
}

std::string DTypeName(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return "float32";
    case at::kHalf: return "float16";
    case at::kBFloat16: return "bfloat16";
    case at::kInt: return "int32";
    case at::kLong: return "int64";
    case at::kByte: return "uint8";
    case at::kBool: return "bool";
    default: ThrowType(std::string("tensor dtype ") + c10::toString(t) + " has no JS equivalent");
  }
}

at::Tensor TensorFromJs(const Napi::Value& v, Job* job) {
  if (!v.IsObject()) ThrowType("Expected a segtorch Tensor");
  Napi::Object o = v.As<Napi::Object>();
  Napi::Value handle = o.Get("handle");
  if (handle.IsExternal()) {
    auto* ext = handle.As<Napi::External<ExternalTensor>>().Data();
    if (!ext->tensor.defined()) ThrowError("tensor was disposed");
    if (job) job->KeepAlive(handle);
    return ext->tensor;
  }
  at::ScalarType dtype = ParseDType(o.Get("dtype").As<Napi::String>().Utf8Value());
  Napi::Array shape_js = o.Get("shape").As<Napi::Array>();
  std::vector<int64_t> shape(shape_js.Length());
  int64_t numel = 1;
  for (uint32_t i = 0; i < shape_js.Length(); ++i) {
    shape[i] = shape_js.Get(i).As<Napi::Number>().Int64Value();
    numel *= shape[i];
  }
  Napi::Value data = o.Get("data");
  if (!data.IsTypedArray()) ThrowType("Expected tensor data to be a TypedArray");
  Napi::TypedArray arr = data.As<Napi::TypedArray>();
  Napi::Value backing = arr.ArrayBuffer();
  if (!backing.IsArrayBuffer()) {
    ThrowType("Expected tensor data in an ArrayBuffer but received a view of a SharedArrayBuffer (another thread may "
              "change or grow it during the call): pass it through segtorch's tensor(), which copies shared memory when a call starts");
  }
  if (backing.As<Napi::Object>().Get("resizable").ToBoolean().Value()) {
    ThrowType("Expected tensor data in a fixed-length ArrayBuffer but received a view of a resizable ArrayBuffer (resize() "
              "could free memory the call reads): pass it through segtorch's tensor(), which copies it when a call starts");
  }
  size_t bytes = arr.ByteLength();
  if (bytes != static_cast<size_t>(numel) * ElementSize(dtype)) {
    ThrowRange("tensor data holds " + std::to_string(bytes) + " bytes but shape and dtype need " +
               std::to_string(numel * ElementSize(dtype)));
  }
  Napi::ArrayBuffer buf = backing.As<Napi::ArrayBuffer>();
  uint8_t* ptr = static_cast<uint8_t*>(buf.Data()) + arr.ByteOffset();
  if (job) job->KeepAlive(arr);
  if (numel == 0) return at::empty(shape, at::TensorOptions().dtype(dtype));
  return at::from_blob(ptr, shape, at::TensorOptions().dtype(dtype));
}

Napi::Value TensorToJs(Napi::Env env, at::Tensor t) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("dtype", DTypeName(t.scalar_type()));
  Napi::Array shape = Napi::Array::New(env, t.dim());
  for (int64_t i = 0; i < t.dim(); ++i) shape.Set(static_cast<uint32_t>(i), Napi::Number::New(env, static_cast<double>(t.size(i))));
  o.Set("shape", shape);
  o.Set("device", t.device().str());
  if (t.device().is_cpu()) {
    t = t.contiguous();
    if (t.numel() > 0 && (t.storage_offset() != 0 || t.storage().nbytes() != t.nbytes())) t = t.clone();
    size_t n = t.nbytes();
    if (n == 0) {
      o.Set("buffer", Napi::ArrayBuffer::New(env, 0));
      return o;
    }
    auto* ext = new ExternalTensor{t, static_cast<int64_t>(n)};
    Napi::ArrayBuffer buf = Napi::ArrayBuffer::New(
        env, t.data_ptr(), n,
        [](Napi::Env env, void*, ExternalTensor* hint) {
          Napi::MemoryManagement::AdjustExternalMemory(env, -hint->reported);
          delete hint;
        },
        ext);
    Napi::MemoryManagement::AdjustExternalMemory(env, ext->reported);
    o.Set("buffer", buf);
    // The same tensor behind a handle (its bytes reported once, by the buffer): native calls read
    // the tensor from it, so that a job keeps the memory alive after the JS tensor is disposed.
    std::unique_ptr<ExternalTensor> pin(new ExternalTensor{t, 0});
    o.Set("handle", Napi::External<ExternalTensor>::New(env, pin.get(), [](Napi::Env, ExternalTensor* e) { delete e; }));
    pin.release();
  } else {
    auto* ext = new ExternalTensor{t, static_cast<int64_t>(t.nbytes())};
    auto handle = Napi::External<ExternalTensor>::New(env, ext, [](Napi::Env env, ExternalTensor* e) {
      Napi::MemoryManagement::AdjustExternalMemory(env, -e->reported);
      delete e;
    });
    Napi::MemoryManagement::AdjustExternalMemory(env, ext->reported);
    o.Set("handle", handle);
  }
  return o;
}

void ReleaseHandle(const Napi::Value& v) {
  if (!v.IsExternal()) return;
  auto* ext = v.As<Napi::External<ExternalTensor>>().Data();
  Napi::MemoryManagement::AdjustExternalMemory(v.Env(), -ext->reported);
  ext->reported = 0;
  ext->tensor = at::Tensor();
}

Napi::Object MetricsObject(Napi::Env env, const Metrics& m) {
  Napi::Object o = Napi::Object::New(env);
  auto arr = [&](const std::vector<double>& v) {
    Napi::Array a = Napi::Array::New(env, v.size());
    for (size_t i = 0; i < v.size(); ++i) a.Set(static_cast<uint32_t>(i), Napi::Number::New(env, v[i]));
    return a;
  };
  o.Set("mIoU", m.miou);
  o.Set("pixelAccuracy", m.pixel_accuracy);
  o.Set("meanAccuracy", m.mean_accuracy);
  o.Set("fwIoU", m.fw_iou);
  o.Set("meanDice", m.mean_dice);
  o.Set("perClassIoU", arr(m.iou));
  o.Set("perClassAccuracy", arr(m.accuracy));
  o.Set("perClassDice", arr(m.dice));
  return o;
}

}  // namespace segtorch
