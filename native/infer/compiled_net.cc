#include "infer/compiled_net.h"

#include <torch/script.h>
#include <torch/csrc/jit/frontend/tracer.h>
#include <torch/csrc/jit/passes/frozen_conv_add_relu_fusion.h>
#include <torch/csrc/jit/passes/frozen_graph_optimizations.h>

#include <cstdlib>
#include <stdexcept>

#include "base/errors.h"
#include "base/thread_flag.h"

namespace segtorch {

namespace {
thread_local bool g_fixed_size = false;

struct FixedSizeGuard : ThreadFlagScope {
  FixedSizeGuard() : ThreadFlagScope(g_fixed_size, true) {}
};
}  // namespace

bool TracingFixedSize() { return g_fixed_size; }

struct CompiledNet::Entry {
  std::unique_ptr<torch::jit::Module> module;
  std::string failed;
};

CompiledNet::CompiledNet() = default;
CompiledNet::~CompiledNet() = default;

namespace {

// `eager` traced at x's shape, as a module whose forward is the graph, optimised for inference.
// The first line of an error, at most 300 characters (libtorch's messages can print whole tensors).
std::string Short(const std::exception& e) {
  std::string m = CleanMessage(e);
  size_t nl = m.find('\n');
  if (nl != std::string::npos) m = m.substr(0, nl);
  if (m.size() > 300) m = m.substr(0, 300) + "...";
  return m;
}

struct NoGradWeights {
  explicit NoGradWeights(const std::vector<at::Tensor>& w) {
    for (const auto& t : w) {
      if (t.requires_grad()) {
        cleared.push_back(t);
        at::Tensor(t).requires_grad_(false);
      }
    }
  }
  ~NoGradWeights() {
    for (auto& t : cleared) t.requires_grad_(true);
  }
  std::vector<at::Tensor> cleared;
};

std::unique_ptr<torch::jit::Module> Compile(const CompiledNet::Fn& eager, const std::vector<at::Tensor>& weights, const at::Tensor& x) {
  // For tests of the fallback (test/infer.test.ts): every compilation fails.
  const char* fail = std::getenv("SEGTORCH_TEST_COMPILE_FAIL");
  if (fail != nullptr && fail[0] == '1') throw std::runtime_error("compilation refused (SEGTORCH_TEST_COMPILE_FAIL=1)");
  std::shared_ptr<torch::jit::Graph> graph;
  {
    FixedSizeGuard fixed;
    NoGradWeights no_grad(weights);
    auto fn = [&eager](torch::jit::Stack in) -> torch::jit::Stack { return {eager(in.at(0).toTensor())}; };
    auto traced = torch::jit::tracer::trace({x}, fn, [](const torch::autograd::Variable&) { return std::string(); },
                                            /*strict=*/false, /*force_outplace=*/false);
    graph = traced.first->graph;
  }
  auto module = [&](std::shared_ptr<torch::jit::Graph> body) {
    auto cu = std::make_shared<torch::jit::CompilationUnit>();
    // No "training" attribute: optimize_for_inference takes the module as frozen (the weights are
    // already constants of the traced graph).
    auto m = std::make_unique<torch::jit::Module>(c10::QualifiedName("__torch__.segtorch.Compiled"), cu);
    torch::jit::Value* self = body->insertInput(0, "self");
    self->setType(m->type());
    m->type()->addMethod(cu->create_function(c10::QualifiedName(*m->type()->name(), "forward"), body));
    return m;
  };
  try {
    return std::make_unique<torch::jit::Module>(torch::jit::optimize_for_inference(*module(graph->copy())));
  } catch (const std::exception&) {
    // libtorch 1.13's conversion of fp32 graphs to oneDNN's prepacked ops ("Unsupported value kind:
    // Tensor") fails on our graphs: the same frozen-graph passes without that conversion.
    std::shared_ptr<torch::jit::Graph> g = graph->copy();
    torch::jit::OptimizeFrozenGraph(g, /*optimize_numerics=*/true);
    torch::jit::FuseFrozenConvAddRelu(g);
    return module(g);
  }
}

}  // namespace

at::Tensor CompiledNet::Run(const Fn& eager, const std::vector<at::Tensor>& weights, const at::Tensor& x, int64_t weights_version,
                            at::ScalarType dtype, bool channels_last) {
  std::shared_ptr<Entry> e;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (weights_version != version_) {
      cache_.clear();
      version_ = weights_version;
    }
    Key key{x.sizes().vec(), static_cast<int>(dtype), channels_last, static_cast<int>(x.device().type())};
    auto it = cache_.find(key);
    if (it == cache_.end()) {
      if (cache_.size() >= kMaxShapes) cache_.clear();
      auto entry = std::make_shared<Entry>();
      try {
        entry->module = Compile(eager, weights, x);
        ++stats_.compiled;
      } catch (const std::exception& ex) {
        entry->failed = "compiling for input " + std::string(c10::str(x.sizes())) + " failed: " + Short(ex);
      }
      it = cache_.emplace(key, entry).first;
    }
    e = it->second;
    if (!e->failed.empty()) {
      ++stats_.fallbacks;
      stats_.error = e->failed;
    }
  }
  if (e->failed.empty()) {
    try {
      at::Tensor y = e->module->forward({x}).toTensor();
      std::lock_guard<std::mutex> lock(mu_);
      ++stats_.runs;
      return y;
    } catch (const std::exception& ex) {
      std::lock_guard<std::mutex> lock(mu_);
      e->failed = "running the graph compiled for input " + std::string(c10::str(x.sizes())) + " failed: " + Short(ex);
      ++stats_.fallbacks;
      stats_.error = e->failed;
    }
  }
  return eager(x);
}

void CompiledNet::Reset() {
  std::lock_guard<std::mutex> lock(mu_);
  cache_.clear();
  version_ = -1;
}

CompiledNet::Stats CompiledNet::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

}  // namespace segtorch
