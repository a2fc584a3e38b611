#include "infer/fold.h"

#include "blocks/conv2d.h"

#include <map>
#include <set>
#include <unordered_map>
#include <unordered_set>

namespace segtorch {

namespace {
// Records BatchNorm2d calls on this thread while alive.
class TraceScope {
 public:
  explicit TraceScope(BatchNormTrace* trace) { BatchNorm2dImpl::set_trace(trace); }
  ~TraceScope() { BatchNorm2dImpl::set_trace(nullptr); }
  TraceScope(const TraceScope&) = delete;
  TraceScope& operator=(const TraceScope&) = delete;
};
}  // namespace

std::vector<FoldPair> FindFoldPairs(torch::nn::Module& net, const std::function<std::vector<torch::Tensor>()>& forward) {
  // Each Conv2d is known by its weight's gradient accumulator, the node a convolution's backward
  // points at for the weight. Holding the accumulators keeps them (and their addresses) alive.
  using AccumulatorRef = std::decay_t<decltype(torch::autograd::impl::grad_accumulator(std::declval<const torch::Tensor&>()))>;
  std::vector<AccumulatorRef> accumulators;
  std::unordered_map<const torch::autograd::Node*, torch::nn::Conv2dImpl*> conv_of;
  std::vector<std::pair<torch::Tensor*, bool>> restore;
  for (auto& m : net.modules(/*include_self=*/false)) {
    auto* conv = m->as<torch::nn::Conv2d>();
    if (!conv || !conv->weight.defined() || conv->weight.dim() != 4) continue;
    restore.emplace_back(&conv->weight, conv->weight.requires_grad());
    conv->weight.requires_grad_(true);
    auto acc = torch::autograd::impl::grad_accumulator(conv->weight);
    if (!acc) continue;
    conv_of[acc.get()] = conv;
    accumulators.push_back(std::move(acc));
  }
  BatchNormTrace trace;
  std::vector<torch::Tensor> outputs;
  {
    torch::AutoGradMode grad(true);
    TraceScope scope(&trace);
    WholeKernelGuard whole;  // each convolution's output must point at its own weight
    outputs = forward();
  }
  for (auto& r : restore) r.first->requires_grad_(r.second);

  // How many edges of the graph point at each node: a convolution output used by anything besides
  // its BN must keep its own values.
  std::unordered_map<const torch::autograd::Node*, int64_t> uses;
  std::vector<torch::autograd::Node*> stack;
  std::unordered_set<const torch::autograd::Node*> seen;
  for (auto& o : outputs) {
    if (o.defined() && o.grad_fn() && seen.insert(o.grad_fn().get()).second) stack.push_back(o.grad_fn().get());
  }
  while (!stack.empty()) {
    torch::autograd::Node* n = stack.back();
    stack.pop_back();
    for (const auto& e : n->next_edges()) {
      if (!e.function) continue;
      ++uses[e.function.get()];
      if (seen.insert(e.function.get()).second) stack.push_back(e.function.get());
    }
  }

  // Per BN: the convolution each call's input came from (nullptr: something else).
  std::map<BatchNorm2dImpl*, std::set<torch::nn::Conv2dImpl*>> sources;
  std::map<torch::nn::Conv2dImpl*, std::set<BatchNorm2dImpl*>> sinks;
  for (auto& call : trace) {
    torch::nn::Conv2dImpl* conv = nullptr;
    const auto& fn = call.second;
    if (fn && fn->name().find("Convolution") != std::string::npos && uses[fn.get()] == 1) {
      for (const auto& e : fn->next_edges()) {
        auto it = e.function ? conv_of.find(e.function.get()) : conv_of.end();
        if (it != conv_of.end()) conv = it->second;
      }
    }
    sources[call.first].insert(conv);
    if (conv) sinks[conv].insert(call.first);
  }
  std::vector<FoldPair> pairs;
  for (auto& kv : sources) {
    BatchNorm2dImpl* bn = kv.first;
    if (kv.second.size() != 1 || *kv.second.begin() == nullptr) continue;
    torch::nn::Conv2dImpl* conv = *kv.second.begin();
    if (sinks[conv].size() != 1) continue;
    if (!bn->options.track_running_stats() || !bn->running_mean.defined()) continue;
    if (conv->weight.size(0) != bn->options.num_features()) continue;
    pairs.push_back({conv, bn, conv->bias.defined()});
  }
  return pairs;
}

void FoldBatchNorm(const std::vector<FoldPair>& pairs) {
  torch::NoGradGuard no_grad;
  for (const auto& p : pairs) {
    BatchNorm2dImpl& bn = *p.bn;
    torch::nn::Conv2dImpl& conv = *p.conv;
    auto f64 = [](const torch::Tensor& t) { return t.to(torch::kDouble); };
    torch::Tensor scale = f64(bn.running_var).add(bn.options.eps()).rsqrt();
    if (bn.options.affine()) scale = scale * f64(bn.weight);
    torch::Tensor shift = -f64(bn.running_mean) * scale;
    if (bn.options.affine()) shift = shift + f64(bn.bias);
    torch::Tensor w = f64(conv.weight) * scale.view({-1, 1, 1, 1});
    conv.weight.copy_(w);
    if (p.conv_had_bias) {
      conv.bias.copy_(f64(conv.bias) * scale + shift);
    } else {
      // Not registered as a parameter (the slot stays empty): only forward reads it.
      conv.bias = shift.to(conv.weight.scalar_type());
    }
    bn.set_folded(true);
  }
}

void UnfoldBatchNorm(const std::vector<FoldPair>& pairs) {
  for (const auto& p : pairs) {
    p.bn->set_folded(false);
    if (!p.conv_had_bias) p.conv->bias = torch::Tensor();
  }
}

}  // namespace segtorch
