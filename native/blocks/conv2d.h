// The networks' 2-D convolution: torch::nn::Conv2d (same options, parameters, state-dict names and
// arithmetic) that an inference copy can switch to oneDNN's convolution with its weight reordered
// once, ahead of time, into the blocked layout oneDNN computes in, instead of on every call. The
// operators are libtorch 2.x's `mkldnn::_reorder_convolution_weight` and
// `mkldnn::_convolution_pointwise` (what torch.compile's freezing emits for a CPU convolution),
// looked up in the dispatcher at run time. Training, gradients, tracing, other devices and libtorch
// builds without those operators (Debian's 1.13) run torch::nn::Conv2d's forward unchanged.
#pragma once
#include <torch/torch.h>

#include <utility>
#include <vector>

#include "base/thread_flag.h"
#include "blocks/batch_norm.h"

namespace segtorch {

// The activation a convolution's output may go through as a oneDNN post-op.
enum class Activation { kNone, kReLU, kReLU6, kHardSwish };

// What a value kept between inference calls (a kernel transform, a weight's part) was made from: the weight's storage
// (held, so that its memory cannot come back as another weight's: an inference copy's weights are replaced after each
// training step, and the new ones took the old one's address and version number, which alone had served as the key),
// where its data begins and its version (in-place changes). An inference tensor (no version counter) never matches.
struct WeightStamp {
  c10::Storage storage;
  const void* data = nullptr;
  int64_t version = -1;
  bool Matches(const torch::Tensor& w) const;
  void Set(const torch::Tensor& w);
};

class Conv2dImpl : public torch::nn::Conv2dImpl {
 public:
  using torch::nn::Conv2dImpl::Conv2dImpl;

  torch::Tensor forward(const torch::Tensor& input);

  // on: from the next inference call, the weight is reordered for oneDNN once per input shape (again
  // after each Prepack call); off: drops the reordered copy. Returns whether the convolution now
  // runs prepacked: CPU bfloat16 weights with groups 1 (or float32 ones of any groups up to 64 MiB, which
  // run prepacked only beside the fp32 Winograd: PackedPathApplies), zero padding given as numbers, and a
  // libtorch that has the operators. The caller must call Prepack again (or Prepack(false)) whenever the
  // weight or bias changes. Calls must not overlap (one job at a time per model).
  bool Prepack(bool on);
  // Whether the last Prepack call turned prepacking on.
  bool prepacked() const { return pack_; }
  // The zero padding (height, width) where it is given as numbers with zero padding mode; false otherwise.
  bool ZeroPaddingValues(int64_t* ph, int64_t* pw) const;
  // Whether the kernel is 1x1 with stride 1 and no padding: the same product of the channels at every pixel.
  bool IsOneByOne() const;

  // Whether forward runs NNPACK's Winograd convolution for `input` (see WinogradGuard).
  bool WinogradApplies(const torch::Tensor& input) const;

  // Whether forward (and ConvBnAct) computes `input` by segtorch's fp32 Winograd F(4x4, 3x3)
  // (Winograd4Convolution) under a WinogradGuard: fp32 weights and input, channels-last, 3x3, stride 1,
  // padding = dilation, groups 1, kFp32WinogradMinChannels or more in and out, a map at least 8
  // dilations high and wide, no gradient, not traced.
  bool Fp32WinogradApplies(const torch::Tensor& input) const;
  // act(conv(input) + bias [+ add]) by Winograd4Convolution, its kernel transform kept until the weight
  // changes; undefined where `add` is not the output's shape.
  torch::Tensor RunFp32Winograd(const torch::Tensor& input, const torch::Tensor& add, Activation act);

  // Whether forward computes `input` with gradients by matrix products (GemmConvTrain in conv2d.cc:
  // im2col rows times the weight forward, the weight's and the input's gradients as two more products):
  // stride 1, zero padding, groups 1, 256 channels or more in and out, and a kernel of 49 taps or more (the 7 x 7
  // 512 -> 4096 fc6 of the dilated network and of FCN-VGG) or 512 output pixels or fewer in the batch (a ResNet's
  // last stages on 8 x 8 maps: ICNet's low branch, the output-stride-32 networks at 256 x 256), with gradients, not
  // traced, where the convolution runs in bf16 on a CPU with AMX (where oneDNN's kernels for them measured 1.5-12x
  // slower than the products; bench/README.md). SEGTORCH_GEMM_CONV=0 / 1: never / whenever the shape fits
  // (measurements); a ConvTrainPathGuard overrides both.
  bool GemmTrainingApplies(const torch::Tensor& input) const;
  torch::Tensor GemmTraining(const torch::Tensor& input);

  // Whether forward computes `input` with gradients by segtorch's depthwise loops (blocks/depthwise.h): one
  // channel per group, zero padding, with gradients, not traced, a channels-last input in bf16 or float32 (or
  // float32 under CPU bf16 autocast: cast to bf16 first, as autocast would). SEGTORCH_DEPTHWISE=0 / 1: never /
  // whenever the shape fits, any layout (measurements); a ConvTrainPathGuard overrides both.
  bool DepthwiseTrainingApplies(const torch::Tensor& input) const;
  torch::Tensor DepthwiseTraining(const torch::Tensor& input);

  // Whether forward (and FusedCall, without gradients) computes `input` as a sum over the kernel's taps of matrix
  // products on the output pixels each tap reaches (blocks/tap_conv.h): stride 1, zero padding, groups 1, float32 or
  // bf16, on the CPU, not traced, not under a WholeKernelGuard; with gradients or without. The rule: libtorch 2.x on a
  // CPU with AMX, in bf16 (or float32 under bf16 autocast), more than 1024 input channels and a dilation of 3 or more
  // (where oneDNN 3.x's convolution measured 5-18x slower, bench/README.md "ASPP"), in training with 64 output
  // channels or more or a dilation of 12 or more (fewer at small rates measured 0.81-0.95x). SEGTORCH_TAP_CONV=0 / 1: never /
  // whenever the shape fits (measurements); a ConvTrainPathGuard overrides both.
  bool TapApplies(const torch::Tensor& input) const;
  // act(conv(input) [+ add]) by the taps: recorded for autograd where gradients are on (`add` and `act` then applied
  // after), else in one pass over the float sums (the kernel's taps kept until the weight changes).
  torch::Tensor TapForward(const torch::Tensor& input, const torch::Tensor& add, Activation act);

  // Whether forward computes `input` with gradients by Winograd4Convolution (forward and input gradient;
  // oneDNN's weight gradient) under a WinogradTrainingGuard: Fp32WinogradApplies's shapes, with gradients.
  bool Fp32WinogradTrainingApplies(const torch::Tensor& input) const;

  // act(conv(x) [+ add]) as one prepacked oneDNN call (the addition and the activation as post-ops
  // of the convolution), or an undefined tensor where the prepacked path does not apply (or failed:
  // the convolution then stays plain). ReLU6 and hardswish only without `add`.
  // `consume_add`: the caller gives `add` up (see ForwardAct's overload taking it by rvalue).
  torch::Tensor TryFused(const torch::Tensor& input, const torch::Tensor& add, Activation act, bool consume_add = false);

  // act(conv(input) [+ add]) as one call, the addition and the activation in it: prepacked (TryFused) or by the
  // fp32 Winograd (RunFp32Winograd); an undefined tensor where neither applies (`add` then unchanged).
  torch::Tensor FusedCall(const torch::Tensor& input, const torch::Tensor& add, Activation act, bool consume_add = false);

  // act(conv(input) [+ add]): FusedCall where it applies; otherwise forward, then the addition and the activation.
  torch::Tensor ForwardAct(const torch::Tensor& input, Activation act, const torch::Tensor& add = torch::Tensor());
  // The same, with `add` given up by the caller (std::move): where nothing else holds its storage, the prepacked
  // path may write the result into it (oneDNN's sum post-op, in place) instead of a new tensor: measured faster than
  // the out-of-place addition (bench/README.md "AMX": ResNet-50's blocks 1.25x).
  torch::Tensor ForwardAct(const torch::Tensor& input, Activation act, torch::Tensor&& add);

 private:
  // The weight reordered for one input shape (EnsurePacked).
  // `added`: the out-of-place binary call (conv + add) has run for this shape, so the in-place one (the sum written
  // into a consumed addend, RunPacked) may: an error from oneDNN shows on a shape's first call, before any write.
  struct Packed {
    std::vector<int64_t> sizes;
    torch::Tensor weight;
    bool added = false;
  };
  // In training, the convolution with the kernel taps that only meet padding cut off (their gradient:
  // exact zeros), where there are such taps; otherwise an undefined tensor.
  // In NCHW where `nchw` (TrainingNeedsNchw); `b`: the bias it adds (undefined: none).
  torch::Tensor TrainingWithoutDeadTaps(const torch::Tensor& input, bool nchw, const torch::Tensor& b);
  // Whether a training convolution must add its bias after the convolution to avoid a oneDNN heap
  // corruption (see conv2d.cc), and that forward.
  bool TrainingSplitsBias(const torch::Tensor& input) const;
  torch::Tensor TrainingSplitBias(const torch::Tensor& input, bool nchw);
  // Whether a training convolution must run in NCHW to avoid a oneDNN crash (see conv2d.cc).
  bool TrainingNeedsNchw(const torch::Tensor& input) const;
  // Whether forward may run prepacked for `input`; the input in the weight's type.
  bool PackedPathApplies(const torch::Tensor& input) const;
  // TryFused's work, once the path applies; throws what the operators throw.
  torch::Tensor RunPacked(const torch::Tensor& input, const torch::Tensor& add, Activation act, bool consume_add);
  // The weight reordered for `input`'s shape (reordered now unless kept from an earlier call).
  Packed& EnsurePacked(const torch::Tensor& input);
  // The body of both ForwardAct overloads.
  torch::Tensor ForwardActImpl(const torch::Tensor& input, Activation act, const torch::Tensor& add, bool consume_add);
  // The number of images RunPacked gives oneDNN a 1x1 convolution's pixels as (1: as they come; see conv2d.cc).
  int64_t OneByOneSplit(const torch::Tensor& x, const torch::Tensor& add) const;
  // The shapes, types and layout Winograd4Convolution takes (Fp32WinogradApplies without the mode).
  bool Fp32WinogradShape(const torch::Tensor& input) const;
  // Whether RunPacked computes `input` by bf16 Winograd F(2x2, 3x3) (WinogradConvolution) instead of
  // oneDNN's direct convolution: 3x3, stride 1, padding = dilation, 256 channels or more in and out, a
  // map at least 8 dilations high and wide.
  bool Bf16WinogradApplies(const torch::Tensor& input) const;
  torch::Tensor tap_kernel_;  // TapKernel(weight) for inference, made from tap_stamp_
  WeightStamp tap_stamp_;
  torch::Tensor winograd_kernel_;  // the weight's Winograd transform [16, C, K] (bf16), made once per Prepack
  torch::Tensor winograd4_kernel_;  // the fp32 weight's F(4x4, 3x3) transform [36, C, K], made from winograd4_stamp_
  WeightStamp winograd4_stamp_;
  bool pack_ = false;
  // The weight reordered for the last two input shapes: opaque oneDNN tensors, not parameters or
  // buffers (never trained, saved or copied).
  std::vector<Packed> packed_;
  std::vector<int64_t> padding_;
};
TORCH_MODULE(Conv2d);

// act(bn(conv(x)) [+ add]): one oneDNN call where the convolution runs prepacked and the BN is
// folded into it (inference copies); otherwise the convolution, then BatchNorm2dImpl::ForwardAct (in
// training on channels-last float32: the BN, the addition and a ReLU as one fused node; ReLU6 as
// clamp(0, 6) and hardswish after it).
// With `add` given up by the caller (std::move), the result may be written into it (Conv2dImpl::ForwardAct).
torch::Tensor ConvBnAct(Conv2dImpl& conv, BatchNorm2dImpl& bn, const torch::Tensor& x, Activation act,
                        const torch::Tensor& add = torch::Tensor());
torch::Tensor ConvBnAct(Conv2dImpl& conv, BatchNorm2dImpl& bn, const torch::Tensor& x, Activation act, torch::Tensor&& add);
inline torch::Tensor ConvBnAct(Conv2dImpl& conv, BatchNorm2dImpl& bn, const torch::Tensor& x, bool relu,
                               const torch::Tensor& add = torch::Tensor()) {
  return ConvBnAct(conv, bn, x, relu ? Activation::kReLU : Activation::kNone, add);
}
inline torch::Tensor ConvBnAct(Conv2dImpl& conv, BatchNorm2dImpl& bn, const torch::Tensor& x, bool relu, torch::Tensor&& add) {
  return ConvBnAct(conv, bn, x, relu ? Activation::kReLU : Activation::kNone, std::move(add));
}

// While a guard lives, this thread's convolutions keep their whole kernels under autograd: the cut of taps that
// only ever meet padding (Conv2dImpl::TrainingWithoutDeadTaps, for oneDNN's bf16 weight gradient) is off. For
// FindFoldPairs (infer/fold.h), which knows a convolution by its weight's node in the autograd graph: a cut kernel
// hides it, and the BatchNorm after it went unfolded (LR-ASPP's 5x5 depthwise convolutions with dilation 2, and
// DeepLab v3's ASPP at rates 12-36, on the 64 x 64 example the pairs are found with).
class WholeKernelGuard : public ThreadFlagScope {
 public:
  WholeKernelGuard();
};

// While a guard with on = true lives, this thread's fp32 3x3 convolutions (stride 1, padding 1, groups 1,
// NCHW, at least 64 x 64 pixels and 64 channels in and out, no gradient, not traced) run NNPACK's
// Winograd F(6x6, 3x3) algorithm (at::_nnpack_spatial_convolution) instead of oneDNN's direct one
// (a no-op where libtorch has no NNPACK: Debian's 1.13), its channels-last fp32 ones
// Winograd4Convolution (Conv2dImpl::Fp32WinogradApplies), and its prepacked bf16 ones with 256 channels
// or more in and out WinogradConvolution: predict's `winograd` option.
class WinogradGuard : public ThreadFlagScope {
 public:
  explicit WinogradGuard(bool on);
};

// While a guard with on = true lives, this thread's fp32 channels-last 3x3 convolutions with gradients
// (Conv2dImpl::Fp32WinogradTrainingApplies) run their forward and input gradient by Winograd4Convolution
// (SEGTORCH_WINOGRAD_TRAIN=1: always, for measurements).
class WinogradTrainingGuard : public ThreadFlagScope {
 public:
  explicit WinogradTrainingGuard(bool on);
};

// ReLU6, min(max(y, 0), 6). libtorch 2.x: hardtanh(y, 0, 6), torch.nn.ReLU6's, whose backward is one pass
// (forward + backward of a 4 x 96 x 128 x 128 bf16 map, PyTorch 2.15 on the AMX Xeon: 13 ms against clamp's 67,
// whose backward builds two comparisons, their conjunction and a where); libtorch 1.13: clamp(y, 0, 6), as its
// hardtanh backward has no bf16 CPU kernel. The gradients differ only at exactly 0 and 6 (hardtanh's passes
// none there, clamp's passes it).
torch::Tensor Relu6(const torch::Tensor& y);

// The path a training convolution takes: the rules' (kRule), or for tests, which compare the paths in one process,
// oneDNN's always, or the matrix products (GemmTrainingApplies) / the depthwise loops (DepthwiseTrainingApplies) /
// the taps' products (TapApplies, which also sets the path of convolutions without gradients) wherever the shape
// fits, whatever the CPU and type. A ConvTrainPathGuard sets it for this thread while it lives.
enum class ConvTrainPath { kRule, kOneDnn, kGemm, kDepthwise, kTaps };
class ConvTrainPathGuard {
 public:
  explicit ConvTrainPathGuard(ConvTrainPath path);
  ~ConvTrainPathGuard();
  ConvTrainPathGuard(const ConvTrainPathGuard&) = delete;
  ConvTrainPathGuard& operator=(const ConvTrainPathGuard&) = delete;

 private:
  ConvTrainPath previous_;
};

// A module that keeps values made from its weights between inference calls beyond its convolutions' own (which
// Conv2dImpl::Prepack drops): PrepackConvolutions, called whenever weights may have changed, drops them too.
class KeepsWeightCopies {
 public:
  virtual ~KeepsWeightCopies() = default;
  virtual void DropWeightCopies() = 0;
};

// Whether this libtorch has NNPACK (PyPI's torch 2.x does; Debian's 1.13 does not).
bool WinogradAvailable();

// Whether this libtorch registers oneDNN's prepacked convolution with a CPU kernel.
bool PrepackedConvolutionAvailable();

// Winograd F(2x2, 3x3) (Lavin & Gray 2016) of a 3x3 kernel [K, C, 3, 3]: G w G^T per (k, c), as
// [16, C, K] bf16 (computed in fp32).
torch::Tensor WinogradKernel(const torch::Tensor& weight);

// act(conv3x3(x) + bias [+ add]) with stride 1, padding = dilation = d, by Winograd F(2x2, 3x3) on
// bf16 tensors: each 4 x 4 input tile (taps d apart: a dilated convolution is d x d interleaved plain
// ones) transformed by B^T x B, the 16 products with `kernel` (WinogradKernel) as one batched bf16
// matrix product (oneDNN's, fp32 accumulation), then A^T m A. 2.25x fewer multiplications than the
// direct convolution, for about twice its rounding error. x: [N, C, H, W] in any layout; returns
// [N, K, H, W] channels-last, bf16.
torch::Tensor WinogradConvolution(const torch::Tensor& x, const torch::Tensor& kernel, const torch::Tensor& bias,
                                  int64_t dilation, const torch::Tensor& add, Activation act);

// The fewest channels in and out for which fp32 3x3 convolutions run Winograd4Convolution.
constexpr int64_t kFp32WinogradMinChannels = 64;

// Winograd F(4x4, 3x3) of a 3x3 kernel [K, C, 3, 3]: G w G^T per (k, c), as [36, C, K] float32; flip: of
// the kernel transposed and rotated by 180 degrees (the input gradient's convolution), as [36, K, C].
torch::Tensor Winograd4Kernel(const torch::Tensor& weight, bool flip = false);

// act(conv3x3(x) + bias [+ add]) with stride 1, padding = dilation = d, by Winograd F(4x4, 3x3) in
// float32: each 6 x 6 input tile (taps d apart) transformed by B^T x B, the 36 products with `kernel`
// (Winograd4Kernel) as one batched fp32 matrix product (oneDNN's), then A^T m A. 4x fewer
// multiplications than the direct convolution. x: [N, C, H, W] in any layout; returns [N, K, H, W]
// channels-last, float32.
torch::Tensor Winograd4Convolution(const torch::Tensor& x, const torch::Tensor& kernel, const torch::Tensor& bias,
                                   int64_t dilation, const torch::Tensor& add, Activation act);

// Whether fp32 convolutions may use Winograd4Convolution under a WinogradGuard (SEGTORCH_WINOGRAD_FP32=0:
// never, for measurements).
bool Fp32WinogradEnabled();

// Whether prepacked bf16 convolutions may use WinogradConvolution under a WinogradGuard
// (SEGTORCH_WINOGRAD_BF16=0: never, for measurements).
bool Bf16WinogradEnabled();

// Children [begin, end) of `s` applied to x in order. A segtorch::Conv2d followed by a ReLU, or by a BatchNorm2d and a
// ReLU, runs as one call (ConvBnAct / Conv2dImpl::ForwardAct). Without gradients (predictions) the ReLU is a oneDNN
// post-op where the convolution runs prepacked (otherwise in place after it, as the ReLU module would): VGG's, U-Net's
// and SegNet's conv [+ BN] + ReLU sequences, whose separate ReLUs took 20-30 % of a bf16 prediction on an AMX CPU
// (bench/README.md "AMX"). In training the ReLU joins the batch norm's fused node (BatchNorm2dImpl::ForwardAct: its
// mask and gradient inside the node's two passes), where the module-by-module forward ran it, and its gradient, as
// two more passes (SegNet's bf16 step: 112 of 1060 ms on the AMX CPU); elsewhere in place after the batch norm.
torch::Tensor ForwardSequential(torch::nn::SequentialImpl& s, torch::Tensor x, size_t begin = 0, size_t end = SIZE_MAX);
inline torch::Tensor ForwardSequential(torch::nn::Sequential& s, torch::Tensor x, size_t begin = 0, size_t end = SIZE_MAX) {
  return ForwardSequential(*s, std::move(x), begin, end);
}

// Prepack(on) on every segtorch::Conv2d below `net`; the number that run prepacked afterwards.
int64_t PrepackConvolutions(torch::nn::Module& net, bool on);

}  // namespace segtorch
