#include "node/distributed.h"

#include "dist/process_group.h"
#include "node/jobs.h"
#include "node/options.h"
#include "node/tensor_bridge.h"

namespace segtorch {
namespace {

struct GroupInfo {
  int64_t rank = 0, world_size = 1;
  std::string backend, rendezvous;
};

Napi::Value Undefined(Napi::Env env, bool) { return env.Undefined(); }

}  // namespace

Napi::Value DistAvailable(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  dist::Availability a = dist::Available();
  Napi::Object o = Napi::Object::New(env);
  o.Set("c10d", a.c10d);
  o.Set("gloo", a.gloo);
  o.Set("nccl", a.nccl);
  o.Set("why", a.why);
  return o;
}

Napi::Value DistInit(const Napi::CallbackInfo& info) {
  return RunAsync(info, DistExecutor, [&](Job&) {
    Napi::Object o = info[0].As<Napi::Object>();
    dist::GroupOptions g;
    g.backend = StringField(o, "backend");
    g.rank = IntField(o, "rank");
    g.world_size = IntField(o, "worldSize");
    g.local_rank = IntField(o, "localRank");
    g.local_world_size = IntField(o, "localWorldSize");
    g.master_addr = StringField(o, "masterAddr");
    g.master_port = IntField(o, "masterPort");
    g.agent_store = BoolField(o, "agentStore");
    g.restart_count = IntField(o, "restartCount");
    g.timeout_ms = IntField(o, "timeoutMs");
    return [g]() {
      if (dist::DefaultOrNull()) ThrowError("distributed: already initialised (call destroy() first)");
      auto group = std::make_shared<dist::ProcessGroup>(g);
      dist::SetDefault(group);
      return GroupInfo{group->rank(), group->world_size(), g.backend, group->rendezvous()};
    };
  }, [](Napi::Env env, const GroupInfo& r) -> Napi::Value {
    Napi::Object o = Napi::Object::New(env);
    o.Set("rank", Napi::Number::New(env, static_cast<double>(r.rank)));
    o.Set("worldSize", Napi::Number::New(env, static_cast<double>(r.world_size)));
    o.Set("backend", r.backend);
    o.Set("rendezvous", r.rendezvous);
    return o;
  });
}

Napi::Value DistBarrier(const Napi::CallbackInfo& info) {
  return RunAsync(info, DistExecutor, [&](Job&) {
    std::string what = info[0].As<Napi::String>().Utf8Value();
    return [what]() {
      dist::Default()->Barrier(what);
      return true;
    };
  }, Undefined);
}

Napi::Value DistAllReduce(const Napi::CallbackInfo& info) {
  return RunAsync(info, DistExecutor, [&](Job& job) {
    at::Tensor t = TensorFromJs(info[0], &job);
    std::string op = info[1].As<Napi::String>().Utf8Value();
    std::string what = info[2].As<Napi::String>().Utf8Value();
    if (op != "sum" && op != "max") ThrowRange("Expected op 'sum' or 'max' but received '" + op + "'");
    return [t, op, what]() {
      auto g = dist::Default();
      at::Tensor c = t.clone();
      if (op == "sum") {
        std::vector<at::Tensor> v{c};
        g->AllReduceSum(v, what);
      } else {
        g->AllReduceMax(c, what);
      }
      return c;
    };
  }, [](Napi::Env env, const at::Tensor& t) -> Napi::Value { return TensorToJs(env, t); });
}

Napi::Value DistDestroy(const Napi::CallbackInfo& info) {
  return RunAsync(info, DistExecutor, [&](Job&) {
    return []() {
      dist::SetDefault(nullptr);
      return true;
    };
  }, Undefined);
}

Napi::Value DistStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto g = dist::DefaultOrNull();
  Napi::Object o = Napi::Object::New(env);
  o.Set("reducedBytes", Napi::Number::New(env, g ? static_cast<double>(g->reduced_bytes()) : 0.0));
  o.Set("reduceSeconds", Napi::Number::New(env, g ? g->reduce_seconds() : 0.0));
  o.Set("overlappedBytes", Napi::Number::New(env, g ? static_cast<double>(g->overlapped_bytes()) : 0.0));
  return o;
}

}  // namespace segtorch
