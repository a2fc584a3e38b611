#include "train/optimizer.h"

#include <ATen/Parallel.h>

#include <cmath>
#include <cstdlib>
#include <sstream>
#include <type_traits>

#include "base/errors.h"
#include "io/module_state.h"
#include "train/optimizer_kernel.h"

namespace segtorch {

namespace {
bool IsNoDecay(const std::string& name, const torch::Tensor& p) {
  // Biases and normalisation weights (1-D parameters) get no weight decay.
  return p.dim() <= 1 || (name.size() >= 5 && name.compare(name.size() - 5, 5, ".bias") == 0);
}

template <typename Options>
Options& GroupOptions(torch::optim::OptimizerParamGroup& g) {
  return static_cast<Options&>(g.options());
}
// The key libtorch's optimizers index their per-parameter state with: a string in libtorch 1.x, the
// TensorImpl pointer in 2.x.
template <typename Map>
typename Map::key_type StateKey(const Map&, const torch::Tensor& p) {
  using Key = typename Map::key_type;
  if constexpr (std::is_same<Key, std::string>::value) {
    std::ostringstream os;
    os << static_cast<const void*>(p.unsafeGetTensorImpl());
    return os.str();
  } else {
    return Key(p.unsafeGetTensorImpl());
  }
}
// Adam's and AdamW's per-parameter states have the same fields: to named tensors and back.
template <typename State, typename Add>
void AddAdamState(const State& a, const Add& add) {
  add("step", torch::tensor(a.step(), torch::kLong));
  add("exp_avg", a.exp_avg());
  add("exp_avg_sq", a.exp_avg_sq());
  add("max_exp_avg_sq", a.max_exp_avg_sq());
}

template <typename State>
std::unique_ptr<torch::optim::OptimizerParamState> MakeAdamState(const torch::Tensor& step, const torch::Tensor& m1,
                                                                 const torch::Tensor& m2, const torch::Tensor& mx) {
  auto s = std::make_unique<State>();
  s->step(step.item<int64_t>()).exp_avg(m1).exp_avg_sq(m2);
  if (mx.defined()) s->max_exp_avg_sq(mx);
  return s;
}

// t can be updated element by element in memory order alongside p: a dense float32 CPU tensor of
// p's sizes and strides (any layout: channels-last weights too; strides of size-1 dimensions do not
// matter, a 1x1 convolution's channels-last weight and its gradient may differ there).
bool SameLayout(const torch::Tensor& t, const torch::Tensor& p) {
  if (!t.defined() || !t.device().is_cpu() || t.scalar_type() != at::kFloat || t.is_sparse() || t.sizes() != p.sizes() ||
      !t.is_non_overlapping_and_dense()) {
    return false;
  }
  for (int64_t d = 0; d < t.dim(); ++d) {
    if (t.size(d) > 1 && t.stride(d) != p.stride(d)) return false;
  }
  return true;
}

// A state tensor the fused passes can use for p: float32 on the CPU, p's sizes (another layout is
// copied into p's before the pass; other dtypes or devices go to libtorch's step).
bool UsableState(const torch::Tensor& t, const torch::Tensor& p) {
  return t.defined() && t.device().is_cpu() && t.scalar_type() == at::kFloat && t.sizes() == p.sizes();
}

// A usable state tensor in p's layout: itself, or (restored from a checkpoint as a contiguous tensor)
// a copy in p's strides, so that the pass walks it with p.
torch::Tensor InLayoutOf(const torch::Tensor& t, const torch::Tensor& p) {
  return SameLayout(t, p) ? t : at::empty_like(p).copy_(t);
}

// Every parameter with a gradient can take a fused pass: one pass in memory order over its tensors
// (element i of one is element i of the others), and its state, if any (`state_ok(state, p)`), usable.
template <typename StateOk>
bool AllFusable(torch::optim::Optimizer& opt, const StateOk& state_ok) {
  auto& state = opt.state();
  for (auto& group : opt.param_groups()) {
    for (const auto& p : group.params()) {
      const auto& g = p.grad();
      if (!g.defined()) continue;
      if (!SameLayout(p, p) || !SameLayout(g, p)) return false;
      auto it = state.find(StateKey(state, p));
      if (it != state.end() && !state_ok(it->second.get(), p)) return false;
    }
  }
  return true;
}

// Adam / AdamW in one pass over each parameter (bench/optimizer_levers.py: libtorch's step runs
// about ten ATen operations per parameter, each a pass over memory; PyTorch 2.15's for-loop AdamW
// took 40 ms per step on ICNet's 24.6 M values where its fused kernel took 11). The arithmetic is
// libtorch's, in the same order and in float, so results agree with optimizer->step() to float
// rounding (test/optimizer.test.ts compares them after two steps and across a checkpoint). Only for
// dense float32 CPU parameters with gradients of their layout, without amsgrad; returns false
// (nothing done) otherwise, and the caller runs libtorch's step.
template <typename Options, typename State>
bool FusedAdamStep(torch::optim::Optimizer& opt, bool decoupled, float grad_scale) {
  auto& state = opt.state();
  for (auto& group : opt.param_groups()) {
    if (static_cast<Options&>(group.options()).amsgrad()) return false;
  }
  const bool fusable = AllFusable(opt, [](torch::optim::OptimizerParamState* st, const torch::Tensor& p) {
    auto* s = dynamic_cast<State*>(st);
    return s != nullptr && UsableState(s->exp_avg(), p) && UsableState(s->exp_avg_sq(), p);
  });
  if (!fusable) return false;
  at::NoGradGuard no_grad;
  for (auto& group : opt.param_groups()) {
    auto& o = static_cast<Options&>(group.options());
    for (const auto& p : group.params()) {
      const auto& g = p.grad();
      if (!g.defined()) continue;
      auto key = StateKey(state, p);
      auto it = state.find(key);
      if (it == state.end()) {
        auto fresh = std::make_unique<State>();
        fresh->step(0);
        fresh->exp_avg(torch::zeros_like(p, at::MemoryFormat::Preserve));  // p's strides (libtorch's too)
        fresh->exp_avg_sq(torch::zeros_like(p, at::MemoryFormat::Preserve));
        it = state.emplace(key, std::move(fresh)).first;
      }
      auto& s = static_cast<State&>(*it->second);
      s.exp_avg(InLayoutOf(s.exp_avg(), p));
      s.exp_avg_sq(InLayoutOf(s.exp_avg_sq(), p));
      s.step(s.step() + 1);
      const double beta1 = std::get<0>(o.betas()), beta2 = std::get<1>(o.betas());
      const double bc1 = 1 - std::pow(beta1, static_cast<double>(s.step()));
      const double bc2 = 1 - std::pow(beta2, static_cast<double>(s.step()));
      // Scalars as ATen's float kernels take them (a double scalar becomes a float operand).
      AdamScalars k;
      k.beta1 = static_cast<float>(beta1);
      k.one_minus_beta1 = static_cast<float>(1 - beta1);
      k.beta2 = static_cast<float>(beta2);
      k.one_minus_beta2 = static_cast<float>(1 - beta2);
      k.sqrt_bias_correction2 = static_cast<float>(std::sqrt(bc2));
      k.eps = static_cast<float>(o.eps());
      k.neg_step_size = static_cast<float>(-(o.lr() / bc1));
      const double wd = o.weight_decay();
      k.decay = wd == 0 ? 0 : decoupled ? 2 : 1;
      k.decay_factor = static_cast<float>(decoupled ? 1 - o.lr() * wd : wd);
      k.grad_scale = grad_scale;
      float* pp = p.data_ptr<float>();
      const float* gp = g.data_ptr<float>();
      float* m = s.exp_avg().template data_ptr<float>();
      float* v = s.exp_avg_sq().template data_ptr<float>();
      at::parallel_for(0, p.numel(), 32768, [&](int64_t begin, int64_t end) {
        AdamUpdate(pp + begin, gp + begin, m + begin, v + begin, end - begin, k);
      });
    }
  }
  return true;
}

// SGD (momentum, L2 weight decay, Nesterov; dampening 0, as segtorch sets it) in one pass over each
// parameter, in libtorch's order of operations: its step makes three passes (buf * momentum, + d,
// p + -lr * buf; one more with weight decay, one more with Nesterov), and clipping's scaling one more,
// which this pass folds in. The same conditions as FusedAdamStep; false (nothing done) otherwise.
bool FusedSgdStep(torch::optim::SGD& opt, float grad_scale) {
  auto& state = opt.state();
  for (auto& group : opt.param_groups()) {
    if (static_cast<torch::optim::SGDOptions&>(group.options()).dampening() != 0) return false;
  }
  const bool fusable = AllFusable(opt, [](torch::optim::OptimizerParamState* st, const torch::Tensor& p) {
    auto* s = dynamic_cast<torch::optim::SGDParamState*>(st);
    return s != nullptr && (!s->momentum_buffer().defined() || UsableState(s->momentum_buffer(), p));
  });
  if (!fusable) return false;
  at::NoGradGuard no_grad;
  for (auto& group : opt.param_groups()) {
    auto& o = static_cast<torch::optim::SGDOptions&>(group.options());
    for (const auto& p : group.params()) {
      const auto& g = p.grad();
      if (!g.defined()) continue;
      // Scalars as ATen's float kernels take them (a double scalar becomes a float operand).
      SgdScalars k;
      k.grad_scale = grad_scale;
      k.weight_decay = static_cast<float>(o.weight_decay());
      k.momentum = static_cast<float>(o.momentum());
      k.neg_lr = static_cast<float>(-1 * o.lr());
      k.nesterov = o.nesterov();
      float* buf = nullptr;
      if (o.momentum() != 0) {
        auto key = StateKey(state, p);
        auto it = state.find(key);
        if (it == state.end()) it = state.emplace(key, std::make_unique<torch::optim::SGDParamState>()).first;
        auto& s = static_cast<torch::optim::SGDParamState&>(*it->second);
        if (!s.momentum_buffer().defined()) {
          // libtorch clones the first gradient (p's layout); here the pass writes it.
          s.momentum_buffer(at::empty_like(p, at::MemoryFormat::Preserve));
          k.first = true;
        } else {
          s.momentum_buffer(InLayoutOf(s.momentum_buffer(), p));
        }
        buf = s.momentum_buffer().data_ptr<float>();
      }
      float* pp = p.data_ptr<float>();
      const float* gp = g.data_ptr<float>();
      at::parallel_for(0, p.numel(), 32768, [&](int64_t begin, int64_t end) {
        SgdUpdate(pp + begin, gp + begin, buf == nullptr ? nullptr : buf + begin, end - begin, k);
      });
    }
  }
  return true;
}
}  // namespace

void GroupedOptimizer::Ensure(torch::nn::Module& net, const OptimizerOptions& o, double head_lr_multiplier, bool no_decay_norm_bias) {
  if (o.type != "sgd" && o.type != "adam" && o.type != "adamw") {
    ThrowRange("Expected optimizer.type 'sgd', 'adam' or 'adamw' but received '" + o.type + "'");
  }
  bool grouped = head_lr_multiplier != 1.0 || no_decay_norm_bias;
  std::string signature = o.type + (grouped ? "/groups:" + std::to_string(head_lr_multiplier) + (no_decay_norm_bias ? "/nodecay" : "") : "");
  if (!optimizer_ || signature_ != signature) {
    // Groups: backbone / head (head lr x multiplier), each split into decay / no-decay.
    std::vector<std::vector<torch::Tensor>> params(4);
    for (const auto& kv : net.named_parameters()) {
      if (!kv.value().requires_grad()) continue;
      bool head = kv.key().compare(0, 9, "backbone.") != 0;
      bool nodecay = no_decay_norm_bias && IsNoDecay(kv.key(), kv.value());
      params[(grouped && head ? 2 : 0) + (nodecay ? 1 : 0)].push_back(kv.value());
    }
    std::vector<torch::optim::OptimizerParamGroup> groups;
    group_base_lr_.clear();
    group_kinds_.clear();
    for (int g = 0; g < 4; ++g) {
      if (params[g].empty()) continue;
      double lr = o.lr * (g >= 2 ? head_lr_multiplier : 1.0);
      double wd = (g % 2 == 1) ? 0.0 : o.weight_decay;
      std::unique_ptr<torch::optim::OptimizerOptions> opts;
      if (o.type == "sgd") {
        opts = std::make_unique<torch::optim::SGDOptions>(torch::optim::SGDOptions(lr).momentum(o.momentum).weight_decay(wd).nesterov(o.nesterov));
      } else if (o.type == "adam") {
        opts = std::make_unique<torch::optim::AdamOptions>(torch::optim::AdamOptions(lr).betas({o.beta1, o.beta2}).eps(o.eps).weight_decay(wd));
      } else {
        opts = std::make_unique<torch::optim::AdamWOptions>(torch::optim::AdamWOptions(lr).betas({o.beta1, o.beta2}).eps(o.eps).weight_decay(wd));
      }
      groups.emplace_back(params[g], std::move(opts));
      group_base_lr_.push_back(lr);
      group_kinds_.push_back({g >= 2 ? head_lr_multiplier : 1.0, g % 2 == 1});
    }
    if (o.type == "sgd") {
      optimizer_ = std::make_unique<torch::optim::SGD>(groups, torch::optim::SGDOptions(o.lr));
    } else if (o.type == "adam") {
      optimizer_ = std::make_unique<torch::optim::Adam>(groups, torch::optim::AdamOptions(o.lr));
    } else {
      optimizer_ = std::make_unique<torch::optim::AdamW>(groups, torch::optim::AdamWOptions(o.lr));
    }
    signature_ = signature;
    if (!pending_.empty() && pending_signature_ == signature) Restore(pending_);
    pending_.clear();
  }
  // Same optimizer: take the new hyper-parameters, keep its state (momentum buffers, moments).
  auto& groups = optimizer_->param_groups();
  for (size_t i = 0; i < groups.size() && i < group_kinds_.size(); ++i) {
    double wd = group_kinds_[i].no_decay ? 0.0 : o.weight_decay;
    group_base_lr_[i] = o.lr * group_kinds_[i].lr_multiplier;
    if (o.type == "sgd") {
      GroupOptions<torch::optim::SGDOptions>(groups[i]).momentum(o.momentum).weight_decay(wd).nesterov(o.nesterov);
    } else if (o.type == "adam") {
      GroupOptions<torch::optim::AdamOptions>(groups[i]).betas({o.beta1, o.beta2}).eps(o.eps).weight_decay(wd);
    } else {
      GroupOptions<torch::optim::AdamWOptions>(groups[i]).betas({o.beta1, o.beta2}).eps(o.eps).weight_decay(wd);
    }
  }
}

void GroupedOptimizer::Step(double grad_scale) {
  // SEGTORCH_FUSED_OPTIMIZER=0: libtorch's own step (test/optimizer.test.ts compares the two).
  static const bool fused = [] {
    const char* v = std::getenv("SEGTORCH_FUSED_OPTIMIZER");
    return v == nullptr || std::string(v) != "0";
  }();
  // The scale as ATen's mul_ takes a double scalar on float tensors (a float operand).
  const float scale = static_cast<float>(grad_scale);
  if (fused) {
    if (auto* adamw = dynamic_cast<torch::optim::AdamW*>(optimizer_.get())) {
      if (FusedAdamStep<torch::optim::AdamWOptions, torch::optim::AdamWParamState>(*adamw, true, scale)) return;
    } else if (auto* adam = dynamic_cast<torch::optim::Adam*>(optimizer_.get())) {
      if (FusedAdamStep<torch::optim::AdamOptions, torch::optim::AdamParamState>(*adam, false, scale)) return;
    } else if (auto* sgd = dynamic_cast<torch::optim::SGD*>(optimizer_.get())) {
      if (FusedSgdStep(*sgd, scale)) return;
    }
  }
  if (grad_scale != 1.0) {
    torch::NoGradGuard no_grad;
    for (const auto& group : optimizer_->param_groups())
      for (const auto& p : group.params())
        if (p.grad().defined()) p.grad().mul_(grad_scale);
  }
  optimizer_->step();
}

void GroupedOptimizer::SetLearningRates(double factor) {
  auto& groups = optimizer_->param_groups();
  for (size_t i = 0; i < groups.size() && i < group_base_lr_.size(); ++i) {
    groups[i].options().set_lr(group_base_lr_[i] * factor);
  }
}

void GroupedOptimizer::Reset(std::map<std::string, torch::Tensor> pending, std::string pending_signature) {
  optimizer_.reset();
  signature_.clear();
  pending_ = std::move(pending);
  pending_signature_ = std::move(pending_signature);
}

TensorList GroupedOptimizer::State() const {
  TensorList out;
  auto& state = optimizer_->state();
  const auto& groups = optimizer_->param_groups();
  for (size_t g = 0; g < groups.size(); ++g) {
    for (size_t i = 0; i < groups[g].params().size(); ++i) {
      const auto& p = groups[g].params()[i];
      auto it = state.find(StateKey(state, p));
      if (it == state.end() || !it->second) continue;
      std::string base = "optimizer." + std::to_string(g) + "." + std::to_string(i) + ".";
      auto add = [&](const char* field, const torch::Tensor& t) {
        if (t.defined()) out.emplace_back(base + field, t.detach());
      };
      if (auto* s = dynamic_cast<torch::optim::SGDParamState*>(it->second.get())) {
        add("momentum_buffer", s->momentum_buffer());
      } else if (auto* a = dynamic_cast<torch::optim::AdamParamState*>(it->second.get())) {
        AddAdamState(*a, add);
      } else if (auto* w = dynamic_cast<torch::optim::AdamWParamState*>(it->second.get())) {
        AddAdamState(*w, add);
      }
    }
  }
  return out;
}

void GroupedOptimizer::Restore(const std::map<std::string, torch::Tensor>& saved) {
  auto& state = optimizer_->state();
  const auto& groups = optimizer_->param_groups();
  const bool sgd = dynamic_cast<torch::optim::SGD*>(optimizer_.get()) != nullptr;
  const bool adamw = dynamic_cast<torch::optim::AdamW*>(optimizer_.get()) != nullptr;
  size_t used = 0;
  auto field = [&](const std::string& base, const char* name, const torch::Tensor& p, bool* found) -> torch::Tensor {
    auto it = saved.find(base + name);
    if (it == saved.end()) return torch::Tensor();
    *found = true;
    ++used;
    const torch::Tensor& t = it->second;
    if (std::string(name) == "step") {
      if (t.numel() != 1 || t.scalar_type() != torch::kLong || t.item<int64_t>() < 0)
        ThrowError("the checkpoint's optimizer state '" + base + name + "' is not a step count");
      return t;
    }
    if (t.sizes() != p.sizes() || !t.is_floating_point())
      ThrowError("the checkpoint's optimizer state '" + base + name + "' has shape " + ShapeString(t.sizes()) +
                 ", its parameter " + ShapeString(p.sizes()));
    return t.to(p.device(), p.scalar_type()).contiguous(p.suggest_memory_format());
  };
  // Everything is checked before the optimizer is touched.
  std::vector<std::pair<torch::Tensor, std::unique_ptr<torch::optim::OptimizerParamState>>> restored;
  for (size_t g = 0; g < groups.size(); ++g) {
    for (size_t i = 0; i < groups[g].params().size(); ++i) {
      const auto& p = groups[g].params()[i];
      std::string base = "optimizer." + std::to_string(g) + "." + std::to_string(i) + ".";
      bool found = false;
      if (sgd) {
        auto m = field(base, "momentum_buffer", p, &found);
        if (!found) continue;
        auto s = std::make_unique<torch::optim::SGDParamState>();
        s->momentum_buffer(m);
        restored.emplace_back(p, std::move(s));
      } else {
        auto step = field(base, "step", p, &found);
        auto m1 = field(base, "exp_avg", p, &found);
        auto m2 = field(base, "exp_avg_sq", p, &found);
        auto mx = field(base, "max_exp_avg_sq", p, &found);
        if (!found) continue;
        if (!step.defined() || !m1.defined() || !m2.defined())
          ThrowError("the checkpoint's optimizer state for '" + base + "' is incomplete");
        if (adamw) restored.emplace_back(p, MakeAdamState<torch::optim::AdamWParamState>(step, m1, m2, mx));
        else restored.emplace_back(p, MakeAdamState<torch::optim::AdamParamState>(step, m1, m2, mx));
      }
    }
  }
  if (used != saved.size()) ThrowError("the checkpoint's optimizer state does not match this model's parameters");
  for (auto& r : restored) state[StateKey(state, r.first)] = std::move(r.second);
}

}  // namespace segtorch
