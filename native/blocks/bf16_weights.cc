#include "blocks/bf16_weights.h"

#include <torch/csrc/jit/frontend/tracer.h>
#include <torch/torch.h>

#include <atomic>
#include <mutex>
#include <unordered_map>

#include "base/env.h"

namespace segtorch {

namespace {
thread_local bool bf16_weights_on = false;

struct CopyEntry {
  at::Tensor param;  // held: its TensorImpl, the key, stays valid while the entry exists
  at::Tensor copy;
  uint32_t version = 0;
};

std::mutex copies_mutex;
std::atomic<int64_t> copies_used{0}, copies_stale{0};
std::unordered_map<const c10::TensorImpl*, CopyEntry>& Copies() {
  static auto* copies = new std::unordered_map<const c10::TensorImpl*, CopyEntry>();  // never destroyed: used until exit
  return *copies;
}

// The copy in the forward, the cast's gradient in the backward (autocast's ToCopyBackward: to float).
struct CopyCast : public torch::autograd::Function<CopyCast> {
  static torch::Tensor forward(torch::autograd::AutogradContext*, const torch::Tensor& /*weight*/, const torch::Tensor& copy) {
    return copy.detach();  // shares the copy's memory and version counter
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext*, torch::autograd::variable_list grads) {
    return {grads[0].defined() ? grads[0].to(at::kFloat) : torch::Tensor(), torch::Tensor()};
  }
};
}  // namespace

bool Bf16WeightCopiesEnabled() {
  static const bool on = EnvSwitch("SEGTORCH_BF16_WEIGHTS", true);
  return on;
}

Bf16WeightScope::Bf16WeightScope(bool on) : ThreadFlagScope(bf16_weights_on, on) {}

at::Tensor TrainingWeight(const at::Tensor& weight) {
  if (!bf16_weights_on || !at::GradMode::is_enabled() || !weight.requires_grad() || weight.scalar_type() != at::kFloat ||
      torch::jit::tracer::isTracing()) {
    return weight;
  }
  at::Tensor copy;
  {
    std::lock_guard<std::mutex> lock(copies_mutex);
    auto it = Copies().find(weight.unsafeGetTensorImpl());
    if (it == Copies().end()) return weight;
    const CopyEntry& e = it->second;
    if (e.version != weight._version() || !e.copy.sizes().equals(weight.sizes()) || !e.copy.strides().equals(weight.strides())) {
      ++copies_stale;
      return weight;
    }
    ++copies_used;
    copy = e.copy;
  }
  return CopyCast::apply(weight, copy);
}

at::Tensor Bf16CopyToWrite(const at::Tensor& p) {
  std::lock_guard<std::mutex> lock(copies_mutex);
  CopyEntry& e = Copies()[p.unsafeGetTensorImpl()];
  if (!e.copy.defined() || !e.copy.sizes().equals(p.sizes()) || !e.copy.strides().equals(p.strides())) {
    e.param = p;
    e.copy = at::empty_strided(p.sizes(), p.strides(), p.options().dtype(at::kBFloat16));
  }
  e.copy.unsafeGetTensorImpl()->bump_version();
  e.version = p._version();  // the pass writes p's memory directly: its counter stays where it is
  return e.copy;
}

void DropBf16Copies(const std::vector<at::Tensor>& params) {
  std::vector<CopyEntry> dropped;  // released outside the lock
  std::lock_guard<std::mutex> lock(copies_mutex);
  for (const auto& p : params) {
    auto it = Copies().find(p.unsafeGetTensorImpl());
    if (it == Copies().end()) continue;
    dropped.push_back(std::move(it->second));
    Copies().erase(it);
  }
}

Bf16WeightStats GetBf16WeightStats() {
  Bf16WeightStats st;
  {
    std::lock_guard<std::mutex> lock(copies_mutex);
    st.copies = static_cast<int64_t>(Copies().size());
  }
  st.used = copies_used.load();
  st.stale = copies_stale.load();
  return st;
}

}  // namespace segtorch
