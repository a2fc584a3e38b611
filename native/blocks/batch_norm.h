// BatchNorm2d that can be folded into the convolution before it (for inference): the parameters,
// buffers, state-dict names and arithmetic of torch::nn::BatchNorm2d, plus two hooks used only by
// infer/fold.cc: while a trace is recording, forward() notes which autograd node produced its input
// (to find the Conv2d that feeds it), and once folded, forward() is the identity.
// (Its own module rather than a subclass of torch::nn::BatchNorm2dImpl: libtorch does not export
// all of that class's virtual functions, so a subclass does not link.)
#pragma once
#include <torch/torch.h>

#include <memory>
#include <ostream>
#include <type_traits>
#include <utility>
#include <vector>

namespace segtorch {

class BatchNorm2dImpl;

// Synchronised batch norm (dist/sync_batch_norm.h): in training, the batch statistics of every rank
// together instead of this process's batch alone. Updates the running statistics in place.
class BatchNormSync {
 public:
  virtual ~BatchNormSync() = default;
  virtual torch::Tensor Forward(const torch::Tensor& input, const torch::Tensor& weight, const torch::Tensor& bias,
                                torch::Tensor& running_mean, torch::Tensor& running_var, double momentum, double eps) = 0;
};

// An owning pointer to an autograd node, whatever Tensor::grad_fn() returns in this libtorch
// (std::shared_ptr in 1.13 and early 2.x, c10::intrusive_ptr in later 2.x).
using NodeRef = std::decay_t<decltype(std::declval<const torch::Tensor&>().grad_fn())>;

// One forward call of a BatchNorm2d during a trace: the module and its input's grad_fn.
using BatchNormTrace = std::vector<std::pair<BatchNorm2dImpl*, NodeRef>>;

class BatchNorm2dImpl : public torch::nn::Cloneable<BatchNorm2dImpl> {
 public:
  explicit BatchNorm2dImpl(int64_t num_features) : BatchNorm2dImpl(torch::nn::BatchNormOptions(num_features)) {}
  explicit BatchNorm2dImpl(const torch::nn::BatchNormOptions& options) : options(options) { reset(); }

  void reset() override {
    int64_t n = options.num_features();
    if (options.affine()) {
      weight = register_parameter("weight", torch::ones({n}));
      bias = register_parameter("bias", torch::zeros({n}));
    }
    if (options.track_running_stats()) {
      running_mean = register_buffer("running_mean", torch::zeros({n}));
      running_var = register_buffer("running_var", torch::ones({n}));
      num_batches_tracked = register_buffer("num_batches_tracked", torch::tensor(0, torch::kLong));
    }
  }

  torch::Tensor forward(const torch::Tensor& input) { return ForwardAct(input, /*relu=*/false, torch::Tensor()); }

  // bn(input) [+ add], then ReLU where `relu`. In training, on channels-last float32 CPU batches, one
  // autograd node computes it with segtorch's own loops (blocks/batch_norm.cc: two passes forward, two
  // backward, where torch::batch_norm + add + relu_ take five and three); otherwise (inference, other
  // types, layouts and devices, synchronised statistics, traces, SEGTORCH_FUSED_BN=0) the same
  // operations one by one. `add`: undefined for none, else the input's shape.
  torch::Tensor ForwardAct(const torch::Tensor& input, bool relu, const torch::Tensor& add);

  void pretty_print(std::ostream& stream) const override {
    stream << "segtorch::BatchNorm2d(" << options.num_features() << ", eps=" << options.eps()
           << (folded_ ? ", folded" : "") << ")";
  }

  // The convolution before this BN now applies it: forward passes its input through.
  void set_folded(bool on) { folded_ = on; }
  bool folded() const { return folded_; }

  // Training statistics over every rank (nullptr: this process's batch).
  void set_sync(std::shared_ptr<BatchNormSync> sync) { sync_ = std::move(sync); }

  // Calls on this thread are recorded into `trace` until it is reset to nullptr.
  static void set_trace(BatchNormTrace* trace) { trace_ = trace; }

  torch::nn::BatchNormOptions options;
  torch::Tensor weight, bias, running_mean, running_var, num_batches_tracked;

 private:
  // Whether ForwardAct runs the fused training node for `input` and `add`.
  bool FusedApplies(const torch::Tensor& input, const torch::Tensor& add) const;
  // y [+ add], then ReLU where `relu`, in place on y.
  static torch::Tensor Finish(torch::Tensor y, bool relu, const torch::Tensor& add);

  bool folded_ = false;
  std::shared_ptr<BatchNormSync> sync_;
  static inline thread_local BatchNormTrace* trace_ = nullptr;
};

TORCH_MODULE(BatchNorm2d);

// Whether BatchNorm2dImpl::ForwardAct may run its fused training node (SEGTORCH_FUSED_BN=0: never, for
// measurements).
bool FusedBatchNormEnabled();
// Whether that node also takes bfloat16 inputs (bf16 autocast training; SEGTORCH_FUSED_BN_BF16=0: never, for
// measurements: bf16 then keeps libtorch's batch norm, addition and ReLU).
bool FusedBatchNormBf16Enabled();

}  // namespace segtorch
