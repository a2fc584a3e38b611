// predict's compiled path (InferOptions.compile): the eager forward of a network, traced by
// libtorch's tracer at one input shape (its weights become constants of the graph), then
// torch::jit::optimize_for_inference (constant folding, convolution + BatchNorm / add / ReLU
// fusions, and on the CPU in fp32 oneDNN's prepacked weights). One compiled graph per input shape,
// dtype, layout and weights version (at most kMaxShapes, then the cache starts again); a shape whose
// trace, optimisation or run fails runs the eager forward from then on, the reason kept in stats().
#pragma once
#include <ATen/ATen.h>

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

namespace segtorch {

class CompiledNet {
 public:
  using Fn = std::function<at::Tensor(const at::Tensor&)>;
  static constexpr size_t kMaxShapes = 8;

  struct Stats {
    int64_t compiled = 0;   // graphs traced and optimised
    int64_t runs = 0;       // calls that ran a compiled graph
    int64_t fallbacks = 0;  // calls that ran the eager forward instead
    std::string error;      // why the last fallback happened
  };

  CompiledNet();
  ~CompiledNet();
  // eager(x), through the graph compiled for x's shape (traced from `eager` on first use). Call it
  // in the mode `eager` needs (inference mode, autocast): the compiled graph runs in it too.
  // `weights`: the network's parameters, taken as constants of the graph (their requires_grad is
  // cleared during the trace: the tracer refuses tensors that require grad as constants).
  at::Tensor Run(const Fn& eager, const std::vector<at::Tensor>& weights, const at::Tensor& x, int64_t weights_version,
                 at::ScalarType dtype, bool channels_last);
  void Reset();
  Stats stats() const;

 private:
  struct Entry;
  using Key = std::tuple<std::vector<int64_t>, int, bool, int>;  // sizes, dtype, channels-last, device
  mutable std::mutex mu_;
  std::map<Key, std::shared_ptr<Entry>> cache_;
  int64_t version_ = -1;
  Stats stats_;
};

// True while CompiledNet traces a fixed-size graph: fast paths that compute sizes (blocks/tracing.h)
// stay on, since the graph is only ever run at the traced size.
bool TracingFixedSize();

}  // namespace segtorch
