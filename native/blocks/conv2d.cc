#include "blocks/conv2d.h"
#include "blocks/conv_shape.h"
#include "blocks/depthwise.h"
#include "blocks/dropout.h"
#include "blocks/pool_bins.h"
#include "blocks/tap_conv.h"
#include "blocks/winograd_kernel.h"
#include "base/cpu.h"
#include "base/env.h"
#include "train/precision.h"

#include <torch/csrc/jit/frontend/tracer.h>
#include <torch/version.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace segtorch {

namespace {

#if TORCH_VERSION_MAJOR >= 2
// The operator `name` (`overload`) if this libtorch registers it with a CPU kernel.
const c10::OperatorHandle* FindCpuOp(const char* name, const char* overload = "") {
  auto op = c10::Dispatcher::singleton().findSchema({name, overload});
  if (!op || !op->hasKernelForDispatchKey(c10::DispatchKey::CPU)) return nullptr;
  return new c10::OperatorHandle(*op);  // lives as long as the process, as the dispatcher's entry
}

const c10::OperatorHandle* ReorderOp() {
  static const c10::OperatorHandle* op = FindCpuOp("mkldnn::_reorder_convolution_weight");
  return op;
}

const c10::OperatorHandle* PointwiseOp() {
  static const c10::OperatorHandle* op = FindCpuOp("mkldnn::_convolution_pointwise");
  return op;
}

const c10::OperatorHandle* PointwiseBinaryOp() {
  static const c10::OperatorHandle* op = FindCpuOp("mkldnn::_convolution_pointwise", "binary");
  return op;
}

// act(conv(x) + other) written into `other` (oneDNN's sum post-op).
const c10::OperatorHandle* PointwiseBinaryInPlaceOp() {
  static const c10::OperatorHandle* op = FindCpuOp("mkldnn::_convolution_pointwise_", "binary");
  return op;
}

std::vector<int64_t> Ints(c10::IntArrayRef a) { return std::vector<int64_t>(a.begin(), a.end()); }
#endif

// The alternative T of an option's variant, whichever variant type this libtorch uses (c10::variant
// in 1.13, std::variant in 2.x: `using std::get_if` lets the call find either by argument lookup).
template <class T, class Variant>
const T* Alternative(const Variant& v) {
  using std::get_if;
  return get_if<T>(&v);
}

// Zero padding given as numbers (not 'same' / 'valid', not reflect / replicate / circular), or nullptr.
const torch::ExpandingArray<2>* ZeroPadding(const torch::nn::detail::ConvNdOptions<2>& o) {
  if (Alternative<torch::enumtype::kZeros>(o.padding_mode()) == nullptr) return nullptr;
  return Alternative<torch::ExpandingArray<2>>(o.padding());
}

// No gradient can be asked for and nothing records the call: any trace, the compiled path's
// fixed-size ones too (unlike blocks/tracing.h's Tracing()), must record aten::conv2d, not another
// operator (an opaque oneDNN weight, NNPACK).
bool InferenceOnly() {
  return (c10::InferenceMode::is_enabled() || !at::GradMode::is_enabled()) && !torch::jit::tracer::isTracing();
}

}  // namespace

bool PrepackedConvolutionAvailable() {
#if TORCH_VERSION_MAJOR >= 2
  return ReorderOp() != nullptr && PointwiseOp() != nullptr;
#else
  return false;
#endif
}

namespace {
// Whether this thread's segtorch::Conv2d calls may run a Winograd convolution (WinogradGuard): NNPACK's
// in fp32, WinogradConvolution in bf16.
thread_local bool winograd_on = false;
// Whether this thread's convolutions keep their whole kernels under autograd (WholeKernelGuard).
thread_local bool whole_kernels = false;

// The activations the Winograd output transforms apply (any other is applied after them).
WinogradAct ToWinogradAct(Activation act) {
  switch (act) {
    case Activation::kReLU: return WinogradAct::kReLU;
    case Activation::kReLU6: return WinogradAct::kReLU6;
    case Activation::kHardSwish: return WinogradAct::kHardSwish;
    default: return WinogradAct::kNone;
  }
}
}  // namespace

bool Bf16WinogradEnabled() {
  static const bool enabled = EnvSwitch("SEGTORCH_WINOGRAD_BF16", true);
  return enabled;
}

torch::Tensor WinogradKernel(const torch::Tensor& weight) {
  torch::NoGradGuard no_grad;
  const int64_t K = weight.size(0), C = weight.size(1);
  torch::Tensor g = torch::tensor({1.0f, 0.0f, 0.0f, 0.5f, 0.5f, 0.5f, 0.5f, -0.5f, 0.5f, 0.0f, 0.0f, 1.0f}).view({4, 3});
  // U = G w G^T for every (k, c) as one matrix product, vec(U) = (G kron G) vec(w) ([16, 9] x [9, K C]),
  // then one transposing copy to [16, C, K] bf16. (A broadcast matmul of G with [K, C, 3, 3], K C
  // products of 4 x 3 matrices, took 245-265 ms for a 2048 -> 512 kernel on 2 Zen 4 cores; this 65-75.)
  const torch::Tensor gg = (g.view({4, 1, 3, 1}) * g.view({1, 4, 1, 3})).reshape({16, 9});
  const torch::Tensor u = at::mm(gg, weight.to(at::kFloat).reshape({K * C, 9}).t()).view({16, K, C});
  return at::empty({16, C, K}, weight.options().dtype(at::kBFloat16)).copy_(u.transpose(1, 2));
}

torch::Tensor WinogradConvolution(const torch::Tensor& x, const torch::Tensor& kernel, const torch::Tensor& bias,
                                  int64_t d, const torch::Tensor& add, Activation act) {
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), K = kernel.size(2);
  // Output tiles of 2 x 2 per phase (d x d interleaved grids of a dilated convolution).
  const WinogradShape s{N, H, W, C, K, d, (H + 2 * d - 1) / (2 * d), (W + 2 * d - 1) / (2 * d)};
  const int64_t rows = N * s.th * d;
  const torch::Tensor xc = x.to(at::kBFloat16).contiguous(at::MemoryFormat::ChannelsLast);
  const torch::Tensor zeros = at::zeros({C}, xc.options().memory_format(at::MemoryFormat::Contiguous));
  const auto* xp = reinterpret_cast<const uint16_t*>(xc.data_ptr<at::BFloat16>());
  const auto* zp = reinterpret_cast<const uint16_t*>(zeros.data_ptr<at::BFloat16>());
  torch::Tensor y = at::empty({N, K, H, W}, zeros.options().memory_format(at::MemoryFormat::ChannelsLast));
  const torch::Tensor b = bias.defined() ? bias.to(at::kFloat).contiguous() : at::zeros({K}, zeros.options().dtype(at::kFloat));
  const torch::Tensor a = add.defined() ? add.to(at::kBFloat16).contiguous(at::MemoryFormat::ChannelsLast) : torch::Tensor();
  const WinogradAct wa = ToWinogradAct(act);
  const auto* ap = a.defined() ? reinterpret_cast<const uint16_t*>(a.data_ptr<at::BFloat16>()) : nullptr;
  auto* yp = reinterpret_cast<uint16_t*>(y.data_ptr<at::BFloat16>());
  const std::vector<uint16_t> zk(static_cast<size_t>(K), 0);
  // Chunks of tile rows whose transformed tiles (16 x tiles x (C + K) bf16 values) stay within about
  // 8 MiB (256 -> 256 channels on a 128 x 128 map: 0.73x oneDNN's direct convolution in one piece,
  // 1.22x in chunks; bench/README.md, "bf16 Winograd in one pass"): B^T x B in one pass (winograd_kernel.h), the 16 products as one batched bf16 matrix product
  // (oneDNN's, fp32 accumulation), then A^T m A + bias [+ add] and the activation in one pass.
  const int64_t per_row = 16 * s.tw * d * (C + K) * 2;
  const int64_t chunk = std::max<int64_t>(1, (int64_t{8} << 20) / per_row);
  for (int64_t first = 0; first < rows; first += chunk) {
    const int64_t count = std::min(chunk, rows - first);
    torch::Tensor v = at::empty({16, count * s.tw * d, C}, zeros.options());
    auto* vp = reinterpret_cast<uint16_t*>(v.data_ptr<at::BFloat16>());
    at::parallel_for(first, first + count, 1, [&](int64_t begin, int64_t end) {
      WinogradInputRows(xp, xc.stride(0), xc.stride(2), xc.stride(3), zp, vp, s, first, count, begin, end);
    });
    const torch::Tensor m = at::bmm(v, kernel).contiguous();
    const auto* mp = reinterpret_cast<const uint16_t*>(m.data_ptr<at::BFloat16>());
    at::parallel_for(first, first + count, 1, [&](int64_t begin, int64_t end) {
      std::vector<uint16_t> scratch(static_cast<size_t>(4 * K));
      WinogradOutputRows(mp, b.data_ptr<float>(), ap, zk.data(), wa, scratch.data(), yp, s, first, count, begin, end);
    });
  }
  return y;
}

bool Fp32WinogradEnabled() {
  static const bool enabled = EnvSwitch("SEGTORCH_WINOGRAD_FP32", true);
  return enabled;
}

torch::Tensor Winograd4Kernel(const torch::Tensor& weight, bool flip) {
  // U = G w G^T per (k, c) (Lavin & Gray 2016; points 0, 1, -1, 2, -2 and infinity) in one pass over the
  // weight (winograd_kernel.h). A matrix product of (G kron G) with the weight in float64 took 300-650 ms
  // for a 2048 -> 512 kernel on 2 cores: too slow for training, which transforms every step.
  const torch::Tensor w = weight.detach().to(at::kFloat).contiguous();
  const int64_t K = w.size(0), C = w.size(1);
  // flip: the transposed, rotated kernel (the input gradient's): outputs are the C channels, inputs the K.
  const int64_t n_out = flip ? C : K, n_in = flip ? K : C, s_out = flip ? 9 : C * 9, s_in = flip ? C * 9 : 9;
  torch::Tensor u = at::empty({36, n_in, n_out}, w.options().memory_format(at::MemoryFormat::Contiguous));
  const float* wp = w.data_ptr<float>();
  float* up = u.data_ptr<float>();
  at::parallel_for(0, n_in, 16, [&](int64_t begin, int64_t end) { Winograd4KernelRows(wp, s_out, s_in, flip, n_out, n_in, up, begin, end); });
  return u;
}

torch::Tensor Winograd4Convolution(const torch::Tensor& x, const torch::Tensor& kernel, const torch::Tensor& bias, int64_t d,
                                   const torch::Tensor& add, Activation act) {
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), K = kernel.size(2);
  // Output tiles of 4 x 4 per phase (d x d interleaved grids of a dilated convolution).
  const WinogradShape s{N, H, W, C, K, d, (H + 4 * d - 1) / (4 * d), (W + 4 * d - 1) / (4 * d)};
  const int64_t rows = N * s.th * d;
  const torch::Tensor xc = x.to(at::kFloat).contiguous(at::MemoryFormat::ChannelsLast);
  const torch::TensorOptions f32 = xc.options().memory_format(at::MemoryFormat::Contiguous);
  const std::vector<float> zc(static_cast<size_t>(C), 0.0f), zk(static_cast<size_t>(K), 0.0f);
  torch::Tensor y = at::empty({N, K, H, W}, f32.memory_format(at::MemoryFormat::ChannelsLast));
  const torch::Tensor b = bias.defined() ? bias.to(at::kFloat).contiguous() : at::zeros({K}, f32);
  const torch::Tensor a = add.defined() ? add.to(at::kFloat).contiguous(at::MemoryFormat::ChannelsLast) : torch::Tensor();
  const WinogradAct wa = ToWinogradAct(act);
  const float* xp = xc.data_ptr<float>();
  const float* ap = a.defined() ? a.data_ptr<float>() : nullptr;
  float* yp = y.data_ptr<float>();
  // Chunks of tile rows whose transformed tiles (36 x tiles x (C + K) floats) stay within a budget:
  // B^T x B in one pass, the 36 products as one batched fp32 matrix product (oneDNN's), then A^T m A
  // + bias [+ add] and the activation in one pass.
  static const int64_t budget = int64_t{EnvInteger("SEGTORCH_WINOGRAD_CHUNK_MB", 16, 1, 4095)} << 20;
  const int64_t per_row = 36 * s.tw * d * (C + K) * 4;
  const int64_t chunk = std::max<int64_t>(1, budget / per_row);
  for (int64_t first = 0; first < rows; first += chunk) {
    const int64_t count = std::min(chunk, rows - first);
    torch::Tensor v = at::empty({36, count * s.tw * d, C}, f32);
    float* vp = v.data_ptr<float>();
    at::parallel_for(first, first + count, 1, [&](int64_t begin, int64_t end) {
      Winograd4InputRows(xp, xc.stride(0), xc.stride(2), xc.stride(3), zc.data(), vp, s, first, count, begin, end);
    });
    const torch::Tensor m = at::bmm(v, kernel).contiguous();
    const float* mp = m.data_ptr<float>();
    at::parallel_for(first, first + count, 1, [&](int64_t begin, int64_t end) {
      std::vector<float> scratch(static_cast<size_t>(16 * K));
      Winograd4OutputRows(mp, b.data_ptr<float>(), ap, zk.data(), wa, scratch.data(), yp, s, first, count, begin, end);
    });
  }
  return y;
}

namespace {
// Whether this thread's training convolutions may run Winograd4Train (WinogradTrainingGuard).
thread_local bool winograd_train_on = false;

// A 3x3 convolution (stride 1, padding = dilation = d) whose forward and input gradient run
// Winograd4Convolution and whose weight and bias gradients run libtorch's (oneDNN's) convolution
// backward. The input gradient of such a convolution is the same convolution of the output gradient
// with the kernel transposed (in and out channels) and flipped.
struct Winograd4Train : public torch::autograd::Function<Winograd4Train> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& input, const torch::Tensor& weight,
                               const torch::Tensor& bias, int64_t d) {
    // No bias comes as an empty tensor: libtorch 2.x's Function::apply takes no undefined inputs.
    const bool has_bias = bias.numel() > 0;
    ctx->save_for_backward({input, weight});
    ctx->saved_data["d"] = d;
    ctx->saved_data["bias"] = has_bias;
    return Winograd4Convolution(input, Winograd4Kernel(weight), has_bias ? bias : torch::Tensor(), d, torch::Tensor(), Activation::kNone);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &input = saved[0], &weight = saved[1];
    const int64_t d = ctx->saved_data["d"].toInt();
    const bool has_bias = ctx->saved_data["bias"].toBool();
    const torch::Tensor g = grads[0].contiguous(at::MemoryFormat::ChannelsLast);
    torch::Tensor gi, gw, gb;
    if (ctx->needs_input_grad(0)) {
      gi = Winograd4Convolution(g, Winograd4Kernel(weight, /*flip=*/true), torch::Tensor(), d, torch::Tensor(),
                                Activation::kNone);
    }
    const bool need_w = ctx->needs_input_grad(1), need_b = has_bias && ctx->needs_input_grad(2);
    if (need_w || need_b) {
      const std::vector<int64_t> bias_sizes{weight.size(0)};
      auto r = at::convolution_backward(g, input, weight, has_bias ? at::OptionalIntArrayRef(bias_sizes) : at::OptionalIntArrayRef(),
                                        {1, 1}, {d, d}, {d, d}, false, {0, 0}, 1, {false, need_w, need_b});
      gw = std::get<1>(r);
      gb = std::get<2>(r);
    }
    return {gi, gw, gb, torch::Tensor()};
  }
};

// ConvTrainPathGuard's path for this thread.
thread_local ConvTrainPath conv_train_path = ConvTrainPath::kRule;

// The mode a path's Applies follows: -1 the rule, 0 never, 1 wherever the shape fits (the guard's, else the
// environment variable's).
int ConvPathMode(ConvTrainPath path, long env) {
  if (conv_train_path == ConvTrainPath::kRule) return static_cast<int>(env);
  return conv_train_path == path ? 1 : 0;
}

// The im2col rows of a stride-1 convolution of a channels-last input: [N Ho Wo, kh kw C], one row per
// output pixel holding its taps (zero padding included) in a channels-last weight's order (kh, kw, C).
torch::Tensor Im2colRows(const torch::Tensor& x, int64_t kh, int64_t kw, int64_t ph, int64_t pw, int64_t dh, int64_t dw) {
  const int64_t N = x.size(0), C = x.size(1), Ho = ConvOutputSize(x.size(2), kh, ph, dh), Wo = ConvOutputSize(x.size(3), kw, pw, dw);
  // A 1 x 1 kernel without padding: the rows are the input's pixels themselves (a view of a channels-last input).
  if (kh == 1 && kw == 1 && ph == 0 && pw == 0) return x.permute({0, 2, 3, 1}).reshape({N * Ho * Wo, C});
  const torch::Tensor xp = at::constant_pad_nd(x.permute({0, 2, 3, 1}), {0, 0, pw, pw, ph, ph}, 0).contiguous();  // [N, Hp, Wp, C]
  const auto s = xp.strides();
  return xp.as_strided({N, Ho, Wo, kh, kw, C}, {s[0], s[1], s[2], dh * s[1], dw * s[2], s[3]}).reshape({N * Ho * Wo, kh * kw * C});
}

// A stride-1, groups-1 convolution as matrix products (Conv2dImpl::GemmTrainingApplies): y = cols W^T with
// cols the im2col rows and W the weight as [K, kh kw C]; dW = dY^T cols; dcols = dY W, whose rows are
// added back to the input's pixels they came from (col2im) in float; db = the sum of dY. Inputs in the
// convolution's type (autocast's casts are made before); outputs channels-last.
struct GemmConvTrain : public torch::autograd::Function<GemmConvTrain> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& input, const torch::Tensor& weight,
                               const torch::Tensor& bias, int64_t ph, int64_t pw, int64_t dh, int64_t dw) {
    const int64_t N = input.size(0), C = input.size(1), H = input.size(2), W = input.size(3);
    const int64_t K = weight.size(0), kh = weight.size(2), kw = weight.size(3);
    const int64_t Ho = ConvOutputSize(H, kh, ph, dh), Wo = ConvOutputSize(W, kw, pw, dw);
    const torch::Tensor cols = Im2colRows(input.contiguous(at::MemoryFormat::ChannelsLast), kh, kw, ph, pw, dh, dw);
    const torch::Tensor wm = weight.permute({0, 2, 3, 1}).reshape({K, kh * kw * C});
    // The output channels-last, the products written into its [N Ho Wo, K] view: returned as a tensor of its own (a
    // view made here could not be modified in place afterwards, as a ReLU or a residual addition may). The bias inside
    // the product's accumulation (one rounding), as oneDNN adds it.
    torch::Tensor y = at::empty({N, K, Ho, Wo}, cols.options().memory_format(at::MemoryFormat::ChannelsLast));
    torch::Tensor rows = y.permute({0, 2, 3, 1}).view({N * Ho * Wo, K});
    if (bias.numel() > 0) {
      at::addmm_out(rows, bias, cols, wm.t());
    } else {
      at::mm_out(rows, cols, wm.t());
    }
    ctx->save_for_backward({cols, weight});
    ctx->saved_data["shape"] = std::vector<int64_t>{N, C, H, W, ph, pw, dh, dw};
    ctx->saved_data["bias"] = bias.numel() > 0;
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &cols = saved[0], &weight = saved[1];
    const auto shape = ctx->saved_data["shape"].toIntVector();
    const int64_t N = shape[0], C = shape[1], H = shape[2], W = shape[3], ph = shape[4], pw = shape[5], dh = shape[6], dw = shape[7];
    const int64_t K = weight.size(0), kh = weight.size(2), kw = weight.size(3);
    const int64_t Ho = ConvOutputSize(H, kh, ph, dh), Wo = ConvOutputSize(W, kw, pw, dw);
    torch::autograd::variable_list out(7);
    if (!grads[0].defined()) return out;
    // [N Ho Wo, K]: a view of a channels-last gradient.
    const torch::Tensor g = grads[0].to(cols.scalar_type()).contiguous(at::MemoryFormat::ChannelsLast).permute({0, 2, 3, 1}).reshape({N * Ho * Wo, K});
    if (ctx->needs_input_grad(1)) {
      // dY^T made contiguous first: the product with a transposed left operand ran 1.6x slower (bench/README.md).
      out[1] = at::mm(g.t().contiguous(), cols).view({K, kh, kw, C}).permute({0, 3, 1, 2});
    }
    if (ctx->saved_data["bias"].toBool() && ctx->needs_input_grad(2)) out[2] = g.sum(0);
    if (ctx->needs_input_grad(0)) {
      const torch::Tensor dcols = at::mm(g, weight.permute({0, 2, 3, 1}).reshape({K, kh * kw * C}));
      if (kh == 1 && kw == 1 && ph == 0 && pw == 0) {
        // One tap per pixel: the product is the input's gradient (one rounding, as the general case's).
        out[0] = dcols.view({N, H, W, C}).permute({0, 3, 1, 2});
      } else {
        // In float once (not slice by slice inside each addition), then each tap's rows added back to its pixels.
        const torch::Tensor taps = dcols.to(at::kFloat).view({N, Ho, Wo, kh, kw, C});
        torch::Tensor acc = at::zeros({N, H + 2 * ph, W + 2 * pw, C}, cols.options().dtype(at::kFloat));
        for (int64_t i = 0; i < kh; ++i) {
          for (int64_t j = 0; j < kw; ++j) {
            acc.slice(1, i * dh, i * dh + Ho).slice(2, j * dw, j * dw + Wo).add_(taps.select(3, i).select(3, j));
          }
        }
        out[0] = acc.slice(1, ph, ph + H).slice(2, pw, pw + W).to(cols.scalar_type()).permute({0, 3, 1, 2});
      }
    }
    return out;
  }
};

bool Fp32WinogradTrainingEnabled() {
  static const bool forced = EnvSwitch("SEGTORCH_WINOGRAD_TRAIN", false);
  return forced || winograd_train_on;
}
}  // namespace

WinogradTrainingGuard::WinogradTrainingGuard(bool on) : ThreadFlagScope(winograd_train_on, on) {}

ConvTrainPathGuard::ConvTrainPathGuard(ConvTrainPath path) : previous_(conv_train_path) { conv_train_path = path; }
ConvTrainPathGuard::~ConvTrainPathGuard() { conv_train_path = previous_; }

bool Conv2dImpl::GemmTrainingApplies(const torch::Tensor& input) const {
  static const long env = EnvInteger("SEGTORCH_GEMM_CONV", -1, 0, 1);
  const int mode = ConvPathMode(ConvTrainPath::kGemm, env);
  if (mode == 0 || !at::GradMode::is_enabled() || !weight.requires_grad() || input.dim() != 4 || !input.is_cpu() ||
      !weight.device().is_cpu() || torch::jit::tracer::isTracing() || options.groups() != 1 || ZeroPadding(options) == nullptr) {
    return false;
  }
  const auto type = input.scalar_type();
  if ((type != at::kFloat && type != at::kBFloat16) || weight.scalar_type() != at::kFloat || (bias.defined() && bias.scalar_type() != at::kFloat)) {
    return false;
  }
  const auto& st = *options.stride();
  const auto& dl = *options.dilation();
  const auto& pad = **ZeroPadding(options);
  const int64_t kh = weight.size(2), kw = weight.size(3);
  const int64_t ho = ConvOutputSize(input.size(2), kh, pad[0], dl[0]), wo = ConvOutputSize(input.size(3), kw, pad[1], dl[1]);
  // Large kernels, or few output pixels (the products' rows): 512 or fewer.
  const bool shape = kh * kw >= 49 || input.size(0) * ho * wo <= 512;
  if (st[0] != 1 || st[1] != 1 || !shape || weight.size(0) < 256 || weight.size(1) < 256 || input.size(1) != weight.size(1) || ho < 1 || wo < 1) {
    return false;  // (a shape without output: the convolution's own error)
  }
  if (mode == 1) return true;
  static const bool amx = Cpu().isa == "AMX";
  return amx && (type == at::kBFloat16 || CpuAutocastIs(at::kBFloat16));
}

torch::Tensor Conv2dImpl::GemmTraining(const torch::Tensor& input) {
  // The convolution's type: bf16 under CPU bf16 autocast (its casts made here, as autocast would make
  // them: the weight's gradient comes back to float through the cast), else the input's.
  const at::ScalarType type = input.scalar_type() == at::kBFloat16 || CpuAutocastIs(at::kBFloat16) ? at::kBFloat16 : at::kFloat;
  const auto& pad = **ZeroPadding(options);
  const auto& dl = *options.dilation();
  return GemmConvTrain::apply(input.to(type), weight.to(type), bias.defined() ? bias.to(type) : at::empty({0}, weight.options().dtype(type)),
                              pad[0], pad[1], dl[0], dl[1]);
}

bool WeightStamp::Matches(const torch::Tensor& w) const {
  // An inference tensor has no version counter (reading it throws): it never matches, so what was kept is made again.
  return storage && !w.is_inference() && w.storage().unsafeGetStorageImpl() == storage.unsafeGetStorageImpl() && w.data_ptr() == data &&
         w._version() == version;
}

void WeightStamp::Set(const torch::Tensor& w) {
  storage = w.storage();
  data = w.data_ptr();
  version = w.is_inference() ? -1 : w._version();
}

bool Conv2dImpl::TapApplies(const torch::Tensor& input) const {
  static const long env = EnvInteger("SEGTORCH_TAP_CONV", -1, 0, 1);
  const int mode = ConvPathMode(ConvTrainPath::kTaps, env);
  if (mode == 0 || whole_kernels || input.dim() != 4 || !input.is_cpu() || !weight.device().is_cpu() || torch::jit::tracer::isTracing() ||
      options.groups() != 1 || ZeroPadding(options) == nullptr || input.size(1) != weight.size(1)) {
    return false;
  }
  const auto type = input.scalar_type(), wtype = weight.scalar_type();
  if ((type != at::kFloat && type != at::kBFloat16) || (wtype != at::kFloat && wtype != at::kBFloat16) ||
      (bias.defined() && bias.scalar_type() != wtype)) {
    return false;
  }
  const auto& st = *options.stride();
  const auto& dl = *options.dilation();
  const auto& pad = **ZeroPadding(options);
  if (st[0] != 1 || st[1] != 1 || !TapConvHasOutput(input.size(2), input.size(3), weight.size(2), weight.size(3), {pad[0], pad[1], dl[0], dl[1]})) {
    return false;  // (a shape without output: the convolution's own error)
  }
  if (mode == 1) return true;
#if TORCH_VERSION_MAJOR >= 2
  static const bool amx = Cpu().isa == "AMX";
  const bool bf16 = type == at::kBFloat16 || (at::GradMode::is_enabled() && CpuAutocastIs(at::kBFloat16));
  const int64_t dilation = std::max(dl[0], dl[1]);
  // In training, few output channels at a small rate stay oneDNN's: the input gradient's products are then thin and
  // its float sums over 2048 channels weigh (DeepLab v2's 21-class rate-6 branch, 4 x 32 x 32: 0.95x, 64 x 64:
  // 0.81x; rate 12: 1.28x).
  const bool training = at::GradMode::is_enabled() && (weight.requires_grad() || input.requires_grad());
  if (training && weight.size(0) < 64 && dilation < 12) return false;
  return amx && bf16 && input.size(1) > 1024 && dilation >= 3;
#else
  return false;  // oneDNN 2.x (Debian's 1.13) ran these shapes at full speed
#endif
}

torch::Tensor Conv2dImpl::TapForward(const torch::Tensor& input, const torch::Tensor& add, Activation act) {
  const auto& pad = **ZeroPadding(options);
  const auto& dl = *options.dilation();
  const TapConvParams p{pad[0], pad[1], dl[0], dl[1]};
  torch::Tensor y;
  if (at::GradMode::is_enabled() && (weight.requires_grad() || input.requires_grad() || (bias.defined() && bias.requires_grad()))) {
    // The convolution's type: bf16 under CPU bf16 autocast (its casts made here, as autocast would make them: the
    // weight's gradient comes back to float through the cast), else the input's.
    const at::ScalarType type = input.scalar_type() == at::kBFloat16 || CpuAutocastIs(at::kBFloat16) ? at::kBFloat16 : at::kFloat;
    y = TapConvolutionTrain(input.to(type), weight.to(type), bias.defined() ? bias.to(type) : torch::Tensor(), p);
    if (add.defined()) y = y + add;
  } else {
    // Without gradients: in the weight's type (an inference copy's). Under inference mode (predict, which drops what
    // its networks' convolutions keep whenever the weights may have changed) the kernel's taps are kept between calls
    // (made again whenever the weight's storage or version changes); otherwise (a validation loss between training
    // steps, whose optimizer writes the weights in place) made for the call.
    torch::Tensor kernel;
    if (c10::InferenceMode::is_enabled()) {
      if (!tap_kernel_.defined() || !tap_stamp_.Matches(weight)) {
        tap_kernel_ = TapKernel(weight.detach(), weight.scalar_type());
        tap_stamp_.Set(weight);
      }
      kernel = tap_kernel_;
    } else {
      kernel = TapKernel(weight.detach(), weight.scalar_type());
    }
    const torch::Tensor x = input.scalar_type() == weight.scalar_type() ? input : input.to(weight.scalar_type());
    const bool shaped = !add.defined() || add.sizes().equals({x.size(0), weight.size(0), ConvOutputSize(x.size(2), weight.size(2), p.ph, p.dh),
                                                               ConvOutputSize(x.size(3), weight.size(3), p.pw, p.dw)});
    y = TapConvolution(x, kernel, weight.size(2), weight.size(3), p, bias, shaped ? add : torch::Tensor(), act == Activation::kReLU && shaped);
    if (!shaped) y = y + add;
    if (act == Activation::kReLU && shaped) return y;
  }
  if (act == Activation::kReLU) return y.relu();
  if (act == Activation::kReLU6) return Relu6(y);
  if (act == Activation::kHardSwish) return at::hardswish(y);
  return y;
}

bool Conv2dImpl::DepthwiseTrainingApplies(const torch::Tensor& input) const {
  static const long env = EnvInteger("SEGTORCH_DEPTHWISE", -1, 0, 1);
  const int mode = ConvPathMode(ConvTrainPath::kDepthwise, env);
  if (mode == 0 || !at::GradMode::is_enabled() || !(weight.requires_grad() || input.requires_grad()) || input.dim() != 4 ||
      torch::jit::tracer::isTracing() || options.groups() != options.in_channels() || options.out_channels() != options.in_channels() ||
      ZeroPadding(options) == nullptr) {
    return false;
  }
  const auto& st = *options.stride();
  const auto& dl = *options.dilation();
  const auto& pad = **ZeroPadding(options);
  if (!DepthwiseTakes(input, weight, bias, {st[0], st[1], pad[0], pad[1], dl[0], dl[1]})) return false;
  if (mode == 1) return true;
  // Where oneDNN's kernels measured slower (AMX, PyPI torch 2.15, bench/README.md "Depthwise convolutions"): in bf16
  // any stride, kernel or dilation beyond 1, 3 x 3 and 1 (its backward 3-30x slower there; 3 x 3 stride 1 ran
  // 1.1-1.5x faster than these loops); in float32 kernels beyond 3 x 3 and dilations (1.1-2x).
  if (!input.is_contiguous(at::MemoryFormat::ChannelsLast)) return false;
  const bool beyond_3x3 = weight.size(2) > 3 || weight.size(3) > 3, dilated = dl[0] > 1 || dl[1] > 1;
  if (input.scalar_type() == at::kBFloat16 || CpuAutocastIs(at::kBFloat16)) return beyond_3x3 || dilated || st[0] > 1 || st[1] > 1;
  return beyond_3x3 || dilated;
}

torch::Tensor Conv2dImpl::DepthwiseTraining(const torch::Tensor& input) {
  // bf16 under CPU bf16 autocast (the input cast here, as autocast would; the weight stays float32, read exactly).
  const bool bf16 = input.scalar_type() == at::kBFloat16 || CpuAutocastIs(at::kBFloat16);
  const auto& st = *options.stride();
  const auto& dl = *options.dilation();
  const auto& pad = **ZeroPadding(options);
  return DepthwiseConvolution(bf16 ? input.to(at::kBFloat16) : input, weight, bias, {st[0], st[1], pad[0], pad[1], dl[0], dl[1]});
}

bool Conv2dImpl::Fp32WinogradShape(const torch::Tensor& input) const {
  if (!Fp32WinogradEnabled() || input.dim() != 4 || !input.is_cpu() || input.scalar_type() != at::kFloat || !weight.defined() ||
      weight.scalar_type() != at::kFloat || !weight.device().is_cpu() || options.groups() != 1 || weight.size(2) != 3 ||
      weight.size(3) != 3 || (bias.defined() && bias.scalar_type() != at::kFloat)) {
    return false;
  }
  const auto& st = *options.stride();
  const auto& dl = *options.dilation();
  const auto* pad = ZeroPadding(options);
  if (pad == nullptr || st[0] != 1 || st[1] != 1 || dl[0] != dl[1] || (**pad)[0] != dl[0] || (**pad)[1] != dl[1]) return false;
  return input.size(1) >= kFp32WinogradMinChannels && weight.size(0) >= kFp32WinogradMinChannels && input.size(2) >= 8 * dl[0] &&
         input.size(3) >= 8 * dl[0] && input.suggest_memory_format() == at::MemoryFormat::ChannelsLast;
}

bool Conv2dImpl::Fp32WinogradTrainingApplies(const torch::Tensor& input) const {
  return Fp32WinogradTrainingEnabled() && at::GradMode::is_enabled() && !torch::jit::tracer::isTracing() && Fp32WinogradShape(input);
}

bool Conv2dImpl::Fp32WinogradApplies(const torch::Tensor& input) const {
  return winograd_on && InferenceOnly() && Fp32WinogradShape(input);
}

torch::Tensor Conv2dImpl::RunFp32Winograd(const torch::Tensor& input, const torch::Tensor& add, Activation act) {
  if (add.defined() && (add.dim() != 4 || !add.is_cpu() || add.size(0) != input.size(0) || add.size(1) != weight.size(0) ||
                        add.size(2) != input.size(2) || add.size(3) != input.size(3))) {
    return torch::Tensor();
  }
  static const bool keep = EnvSwitch("SEGTORCH_WINOGRAD_KEEP", true);
  if (!keep) return Winograd4Convolution(input, Winograd4Kernel(weight), bias, (*options.dilation())[0], add, act);
  // The kernel's transform, made again whenever the weight's storage or version changes (and dropped by predict
  // whenever the weights may have changed: Prepack(false), see WeightStamp).
  if (!winograd4_kernel_.defined() || !winograd4_stamp_.Matches(weight)) {
    winograd4_kernel_ = Winograd4Kernel(weight.detach());
    winograd4_stamp_.Set(weight);
  }
  return Winograd4Convolution(input, winograd4_kernel_, bias, (*options.dilation())[0], add, act);
}

bool Conv2dImpl::Bf16WinogradApplies(const torch::Tensor& input) const {
  const auto& st = *options.stride();
  const auto& dl = *options.dilation();
  // Where it measured faster than oneDNN's direct bf16 convolution on an AVX512-BF16 CPU (bench/README.md,
  // "bf16 Winograd" and "bf16 Winograd in one pass"): 256 channels or more in and out (fewer lose to the
  // transforms), and maps at least 8 dilations high and wide: ASPP's rates 12-36 on a 64 x 64 map (most
  // taps on padding, which oneDNN skips and Winograd's tiles cannot) ran 0.36-0.87x.
  return winograd_on && Bf16WinogradEnabled() && input.scalar_type() == at::kBFloat16 && weight.size(2) == 3 && weight.size(3) == 3 &&
         st[0] == 1 && st[1] == 1 && dl[0] == dl[1] && padding_.size() == 2 && padding_[0] == dl[0] &&
         padding_[1] == dl[1] && input.size(1) >= 256 && weight.size(0) >= 256 && input.size(2) >= 8 * dl[0] &&
         input.size(3) >= 8 * dl[0] &&
         input.suggest_memory_format() == at::MemoryFormat::ChannelsLast;
}

bool Conv2dImpl::ZeroPaddingValues(int64_t* ph, int64_t* pw) const {
  const auto* pad = ZeroPadding(options);
  if (pad == nullptr) return false;
  *ph = (**pad)[0];
  *pw = (**pad)[1];
  return true;
}

bool Conv2dImpl::IsOneByOne() const {
  int64_t ph = 0, pw = 0;
  const auto& st = *options.stride();
  return weight.size(2) == 1 && weight.size(3) == 1 && st[0] == 1 && st[1] == 1 && ZeroPaddingValues(&ph, &pw) && ph == 0 && pw == 0;
}

bool Conv2dImpl::Prepack(bool on) {
  // The weight changed (or its type or layout): every transform kept goes, and the storage the stamps hold with it.
  winograd_kernel_ = torch::Tensor();
  tap_kernel_ = winograd4_kernel_ = torch::Tensor();
  tap_stamp_ = winograd4_stamp_ = WeightStamp();
  packed_.clear();
  pack_ = false;
  if (!on || !PrepackedConvolutionAvailable()) return false;
  const auto* pad = ZeroPadding(options);
  // bf16: ungrouped convolutions only (grouped / depthwise ones gained nothing measurable). fp32: only for the runs
  // beside the fp32 Winograd (PackedPathApplies: fp32 alone gained nothing, 0.77-1.06x; bench/switches.js --switch
  // prepack / prepackfp32, bench/README.md); SEGTORCH_PREPACK_FP32=0: never, for measurements.
  // The reordered copy doubles a weight's memory: fp32 weights over SEGTORCH_PREPACK_FP32_MAX_MB (default 64 MiB)
  // stay plain. Measured on dilated's fc6 (7x7, 512 -> 4096: 392 MiB): prepacked, 785 MiB more peak memory for the
  // same prediction time (2953-3051 against 2998-3018 ms). (PSPNet's 72 MiB head is a 3x3 the Winograd takes.)
  // Grouped (depthwise) fp32 convolutions too: MTRefineNet's predictions 1.11-1.12x faster with them (two runs of
  // bench/switches.js --switch groupedfp32, 3 rounds; LR-ASPP 1.04-1.07x); SEGTORCH_PREPACK_FP32_GROUPED=0: not.
  static const bool fp32 = EnvSwitch("SEGTORCH_PREPACK_FP32", true);
  static const int64_t fp32_max_bytes = EnvInteger("SEGTORCH_PREPACK_FP32_MAX_MB", 64, 0, 1 << 20) << 20;
  static const bool grouped = EnvSwitch("SEGTORCH_PREPACK_FP32_GROUPED", true);
  if (pad == nullptr || !weight.defined() || !weight.device().is_cpu()) return false;
  const bool ungrouped = options.groups() == 1;
  const bool bf16_ok = weight.scalar_type() == at::kBFloat16 && ungrouped;
  const bool fp32_ok = fp32 && weight.scalar_type() == at::kFloat && static_cast<int64_t>(weight.nbytes()) <= fp32_max_bytes &&
                       (ungrouped || grouped);
  if (!(bf16_ok || fp32_ok) || (bias.defined() && (!bias.device().is_cpu() || bias.scalar_type() != weight.scalar_type()))) {
    return false;
  }
  padding_ = std::vector<int64_t>((**pad).begin(), (**pad).end());
  pack_ = true;
  return true;
}

#if TORCH_VERSION_MAJOR >= 2
Conv2dImpl::Packed& Conv2dImpl::EnsurePacked(const torch::Tensor& input) {
  // oneDNN picks the weight's layout for the input's shape: reordered again for a new shape (one pass
  // over the weight, what the plain path pays on every call). The last two shapes' copies are kept:
  // ICNet runs its shared layers at two resolutions in every call, which reordered each time.
  for (auto& p : packed_) {
    if (input.sizes().equals(p.sizes)) return p;
  }
  torch::Tensor w = weight.detach().contiguous();
  torch::jit::Stack stack{c10::IValue(w), c10::IValue(padding_), c10::IValue(Ints(*options.stride())),
                          c10::IValue(Ints(*options.dilation())), c10::IValue(options.groups()),
                          c10::IValue(Ints(input.sizes()))};
  ReorderOp()->callBoxed(&stack);
  if (packed_.size() >= 2) packed_.erase(packed_.begin());
  packed_.push_back(Packed{Ints(input.sizes()), stack.at(0).toTensor()});
  return packed_.back();
}
#endif

bool Conv2dImpl::PackedPathApplies(const torch::Tensor& input) const {
  if (!pack_ || !input.device().is_cpu() || input.dim() != 4 || !InferenceOnly()) return false;
  if (weight.scalar_type() != at::kFloat) return true;
  // fp32: the convolutions that the fp32 Winograd F(4x4, 3x3) does not take (it multiplies less than any
  // direct convolution), and only while it runs (channels-last, under a WinogradGuard): measured there
  // 1.03-1.22x faster predictions with the 1x1 convolutions' additions and ReLUs fused (bench/README.md,
  // "Inference of all 17 again, and fused fp32 convolutions beside the Winograd"); alone, before the Winograd,
  // 0.77-1.06x.
  return winograd_on && Fp32WinogradEnabled() && input.suggest_memory_format() == at::MemoryFormat::ChannelsLast &&
         !Fp32WinogradShape(input);
}

torch::Tensor Conv2dImpl::TryFused(const torch::Tensor& input, const torch::Tensor& add, Activation act, bool consume_add) {
  if (!PackedPathApplies(input) || (add.defined() && (act == Activation::kReLU6 || act == Activation::kHardSwish))) return torch::Tensor();
  try {
    return RunPacked(input, add, act, consume_add);
  } catch (const std::exception&) {
    // An input oneDNN's prepacked path cannot take: this convolution runs plain from now on.
    pack_ = false;
    packed_.clear();
    return torch::Tensor();
  }
}

torch::Tensor Conv2dImpl::RunPacked(const torch::Tensor& input, const torch::Tensor& add, Activation act, bool consume_add) {
#if TORCH_VERSION_MAJOR >= 2
  // The operators have no autocast rule: the inputs go in the weight's type, as autocast would.
  const at::ScalarType type = weight.scalar_type();
  torch::Tensor x = input.scalar_type() == type ? input : input.to(type);
  const auto k = weight.sizes();
  const auto& st = *options.stride();
  const auto& dl = *options.dilation();
  if (add.defined()) {
    // The addend must be the output's shape (on the CPU).
    if (add.dim() != 4 || !add.device().is_cpu() || add.size(0) != x.size(0) || add.size(1) != k[0]) return torch::Tensor();
    for (int d = 0; d < 2; ++d) {
      const int64_t out = ConvOutputSize(x.size(2 + d), k[2 + d], padding_[d], dl[d], st[d]);
      if (add.size(2 + d) != out) return torch::Tensor();
    }
  }
  if (Bf16WinogradApplies(x)) {
    if (!winograd_kernel_.defined()) winograd_kernel_ = WinogradKernel(weight.detach());
    return WinogradConvolution(x, winograd_kernel_, bias, dl[0], add, act);
  }
  // A 1x1 convolution is the same product whatever the pixels' arrangement: where oneDNN runs it faster on several
  // images than on one, the pixels go in as `split` images of one row each (views; OneByOneSplit).
  const int64_t split = OneByOneSplit(x, add);
  auto as_images = [&](const torch::Tensor& t) {
    return split > 1 ? t.permute({0, 2, 3, 1}).reshape({split, 1, -1, t.size(1)}).permute({0, 3, 1, 2}) : t;
  };
  const torch::Tensor xs = as_images(x);
  auto as_output = [&](const torch::Tensor& y) {
    return split > 1 ? y.permute({0, 2, 3, 1}).reshape({x.size(0), x.size(2), x.size(3), k[0]}).permute({0, 3, 1, 2}) : y;
  };
  Packed& entry = EnsurePacked(xs);
  const torch::Tensor packed = entry.weight;
  const c10::IValue b = bias.defined() ? c10::IValue(bias) : c10::IValue();
  torch::jit::Stack stack;
  const bool relu = act == Activation::kReLU;
  if (!add.defined()) {
    // ReLU6 is oneDNN's hardtanh post-op with bounds 0 and 6.
    c10::List<c10::optional<at::Scalar>> scalars;
    if (act == Activation::kReLU6) {
      scalars.push_back(at::Scalar(0.0));
      scalars.push_back(at::Scalar(6.0));
    }
    const char* attr = act == Activation::kReLU6 ? "hardtanh" : act == Activation::kHardSwish ? "hardswish" : relu ? "relu" : "none";
    stack = {c10::IValue(xs), c10::IValue(packed), b, c10::IValue(padding_), c10::IValue(Ints(st)),
             c10::IValue(Ints(dl)), c10::IValue(options.groups()), c10::IValue(std::string(attr)),
             c10::IValue(scalars), c10::IValue(std::string())};
    PointwiseOp()->callBoxed(&stack);
    return as_output(stack.at(0).toTensor());
  }
  // oneDNN's binary post-op also needs the addend in the input's layout.
  if (PointwiseBinaryOp() == nullptr || add.suggest_memory_format() != x.suggest_memory_format()) return torch::Tensor();
  const bool converted = add.scalar_type() != type;
  torch::Tensor other = converted ? add.to(type) : add;
  // In place (the sum written into the addend: oneDNN's sum post-op, which ran ResNet-50's blocks 1.25x as fast as
  // the binary addition on an AMX CPU) where nobody else can see the addend: a copy made here, or one the caller gave
  // up whose storage nothing else holds (this function's handle and the caller's are the two references), in the
  // layout the output takes, not overlapping the input; and only once this shape has run out of place (an error
  // from oneDNN would come before the addend is written, but not leave it half-written on a later call).
  const int64_t holders = converted ? 1 : 2;
  const bool in_place = entry.added && (converted || consume_add) && PointwiseBinaryInPlaceOp() != nullptr &&
                        static_cast<int64_t>(other.use_count()) == holders && other.storage().use_count() == 1 && !other.is_same(x) &&
                        other.storage().data() != x.storage().data() && other.is_contiguous(x.suggest_memory_format()) &&
                        !other.requires_grad();
  const c10::IValue tail[] = {c10::IValue(packed), b, c10::IValue(padding_), c10::IValue(Ints(st)), c10::IValue(Ints(dl)),
                              c10::IValue(options.groups()), c10::IValue(std::string("add")), c10::IValue(),
                              relu ? c10::IValue(std::string("relu")) : c10::IValue(),
                              c10::IValue(c10::List<c10::optional<at::Scalar>>()), c10::IValue(std::string())};
  // (The split's views of the addend are made after the in-place test, which counts the references to its memory.)
  const torch::Tensor result = in_place ? other : torch::Tensor();
  stack = in_place ? torch::jit::Stack{c10::IValue(as_images(other)), c10::IValue(xs)}
                   : torch::jit::Stack{c10::IValue(xs), c10::IValue(as_images(other))};
  stack.insert(stack.end(), std::begin(tail), std::end(tail));
  other = torch::Tensor();
  (in_place ? PointwiseBinaryInPlaceOp() : PointwiseBinaryOp())->callBoxed(&stack);
  entry.added = true;
  // In place: the addend itself (its memory now holds the result), not the split's view of it.
  return in_place ? result : as_output(stack.at(0).toTensor());
#else
  return torch::Tensor();
#endif
}

namespace {

// The number of images a 1x1 convolution's `pixels` go to oneDNN as: images of the pixel count nearest 320 that divides
// them, from `min_pixels` to 512 (256-400 measured best: one 64 x 64 map: 16 images 1.8x, 32 1.7x, 64 1.5x, 8 1.7x
// faster than one; 80 x 80: 16-25 images alike; 96 x 96: 32; four 64 x 64 maps: 64); 1 where none does.
int64_t OneByOneImages(int64_t pixels, int64_t min_pixels) {
  for (int64_t d = 0; d <= 320; ++d) {
    for (const int64_t m : {320 - d, 320 + d}) {
      if (m >= min_pixels && m <= 512 && pixels % m == 0 && pixels / m >= 2) return pixels / m;
    }
  }
  return 1;
}

}  // namespace

// [N, C, H, W] as n images [n, C, 1, N H W / n]: views of channels-last maps, the same products. On the AMX Xeon
// (PyPI torch 2.15, 2 threads, bf16) oneDNN ran the 1x1 convolutions of one 64 x 64 map with 2048 channels out at
// 0.6-0.7 TMAC/s (its 3x3 ones at 1.35), and the same pixels as 8-16 images 1.6-1.9x faster, the residual sum and the
// ReLU still its post-ops (512 -> 2048 with the sum 6.8 -> 3.6 ms, 1024 -> 2048 12.2 -> 7.5, 2048 -> 512 1.1x); the
// other shapes of ResNet's blocks (fewer channels, or 16 x 16 and 32 x 32 maps) alike within 0.95-1.1x (noise), and
// as matrix products (mkldnn::_linear_pointwise) 1.6x faster too, but without the sum post-op. A 3x3 convolution split
// into bands with their halo rows gained nothing. Rule: AMX, bf16, 4096 pixels or more, 2048 channels in or out;
// SEGTORCH_SPLIT_1X1=0 / 1: never / wherever the shape allows (measurements, tests).
int64_t Conv2dImpl::OneByOneSplit(const torch::Tensor& x, const torch::Tensor& add) const {
  static const long env = EnvInteger("SEGTORCH_SPLIT_1X1", -1, 0, 1);
  if (env == 0 || !IsOneByOne() || options.groups() != 1 || !x.is_contiguous(at::MemoryFormat::ChannelsLast) ||
      (add.defined() && !add.is_contiguous(at::MemoryFormat::ChannelsLast))) {
    return 1;
  }
  const int64_t pixels = x.size(0) * x.size(2) * x.size(3);
  if (env != 1) {
    static const bool amx = Cpu().isa == "AMX";
    if (!amx || x.scalar_type() != at::kBFloat16 || pixels < 4096 || std::max(weight.size(0), weight.size(1)) < 2048) return 1;
  }
  return OneByOneImages(pixels, env == 1 ? 1 : 128);
}

bool WinogradAvailable() {
  // at::_nnpack_available() also initialises NNPACK: its convolution fails until something has (PyPI's
  // torch 2.15), so WinogradApplies calls this before any NNPACK convolution can run.
  static const bool available = at::_nnpack_available();
  return available;
}

WinogradGuard::WinogradGuard(bool on) : ThreadFlagScope(winograd_on, on) {}
WholeKernelGuard::WholeKernelGuard() : ThreadFlagScope(whole_kernels, true) {}

bool Conv2dImpl::WinogradApplies(const torch::Tensor& input) const {
  if (!winograd_on || !WinogradAvailable() || input.dim() != 4 || !input.is_cpu() || input.scalar_type() != at::kFloat || !input.is_contiguous() ||
      weight.scalar_type() != at::kFloat || options.groups() != 1 || weight.size(2) != 3 || weight.size(3) != 3 ||
      (*options.stride())[0] != 1 || (*options.stride())[1] != 1 || (*options.dilation())[0] != 1 ||
      (*options.dilation())[1] != 1 || (bias.defined() && bias.scalar_type() != at::kFloat) || !InferenceOnly()) {
    return false;
  }
  const auto* pad = ZeroPadding(options);
  if (pad == nullptr || (**pad)[0] != 1 || (**pad)[1] != 1) return false;
  // Where it measured faster than oneDNN on an AVX2 CPU (bench/README.md, "Winograd"): maps of at
  // least 64 x 64 pixels with at least 64 channels in and out; smaller ones lose to the transforms.
  return input.size(2) * input.size(3) >= 4096 && input.size(1) >= 64 && weight.size(0) >= 64;
}

namespace {
// The kernel taps [first, last] of one dimension that reach the input (not only its zero padding) for
// some output position.
std::pair<int64_t, int64_t> ReachableTaps(int64_t n, int64_t k, int64_t s, int64_t p, int64_t d) {
  const int64_t m = ConvOutputSize(n, k, p, d, s);
  int64_t first = k, last = -1;
  for (int64_t j = 0; j < k; ++j) {
    if (j * d - p <= n - 1 && (m - 1) * s + j * d - p >= 0) {
      first = std::min(first, j);
      last = j;
    }
  }
  return {first, last};
}
}  // namespace

bool Conv2dImpl::TrainingNeedsNchw(const torch::Tensor& input) const {
  // oneDNN's channels-last backward of a dilated convolution whose input channels are not a multiple
  // of 16 crashes the process (SIGSEGV in its JIT kernel) on an AVX512-BF16 CPU (AMD Zen 4, bf16
  // autocast, 2026-12-03). In PyTorch itself (1.13 and PyPI 2.15 alike): a 21 -> 21 3x3 convolution,
  // dilation 5-24, 4 x 21 x 32 x 32 or 64 x 64, channels-last, weight gradient; 20, 24, 40 channels
  // too; 16, 32, 48 not; NCHW never. Inside the dilated network's context module (numClasses
  // channels, dilations 2-16) libtorch 1.13 crashed after the dilation-4 layer too, so every dilation
  // of 2 or more is covered. That network crashed every bf16 training step. Such a convolution trains
  // in NCHW (input and weight made contiguous: the same values); its few channels cost nothing measurable.
  if (!at::GradMode::is_enabled() || !weight.requires_grad() || input.dim() != 4 || !input.is_cpu() || torch::jit::tracer::isTracing()) {
    return false;
  }
  const auto& dl = *options.dilation();
  if (std::max(dl[0], dl[1]) < 2 || input.size(1) % 16 == 0 || options.groups() != 1) return false;
  return input.suggest_memory_format() == at::MemoryFormat::ChannelsLast ||
         weight.suggest_memory_format() == at::MemoryFormat::ChannelsLast;
}

bool Conv2dImpl::TrainingSplitsBias(const torch::Tensor& input) const {
  // oneDNN 3.13 in libtorch 2.15 corrupts the heap on CPUs with AMX when it computes the bias gradient
  // of a bf16 convolution with more than 2048 input and fewer than 16 output channels (brgconv_bwd_w,
  // any kernel size, dilation, layout, 2 threads or more; "free(): invalid pointer" or "corrupted
  // double-linked list" at the step's end): a classifier after VGG's 4096-channel fc7 (FCN-VGG,
  // dilated, DeepLab v1 with a large fcChannels) and a handful of classes. The same convolution
  // without a bias never did (scripts/repro/onednn-amx-bwd-w.cc, bench/README.md). Such a layer adds
  // its bias after the convolution in training: the same sum; fewer than 16 channels, no measurable
  // cost. Every CPU and libtorch alike, so that CI's runs check the path the affected ones take.
  if (!bias.defined() || !bias.requires_grad() || !at::GradMode::is_enabled() || input.dim() != 4 || !input.is_cpu() ||
      torch::jit::tracer::isTracing()) {
    return false;
  }
  return options.groups() == 1 && input.size(1) > 2048 && options.out_channels() < 16 && ZeroPadding(options) != nullptr;
}

torch::Tensor Conv2dImpl::TrainingSplitBias(const torch::Tensor& input, bool nchw) {
  torch::Tensor y = TrainingWithoutDeadTaps(input, nchw, torch::Tensor());
  if (!y.defined()) {
    const auto& pad = **ZeroPadding(options);
    const auto& st = *options.stride();
    const auto& dl = *options.dilation();
    y = at::conv2d(nchw ? input.contiguous() : input, nchw ? weight.contiguous() : weight, torch::Tensor(), {st[0], st[1]},
                   {pad[0], pad[1]}, {dl[0], dl[1]}, 1);
  }
  // In the convolution's type (bf16 under autocast), as the bias would have been added inside it.
  return y + bias.to(y.scalar_type()).view({1, -1, 1, 1});
}

torch::Tensor Conv2dImpl::TrainingWithoutDeadTaps(const torch::Tensor& input, bool nchw, const torch::Tensor& b) {
  // oneDNN's bf16 weight gradient (libtorch 1.13 and 2.15) leaves the taps of a kernel row that only
  // ever meets padding unwritten: a 7x7 convolution (FCN's fc6) on a 2x2 map got garbage there, up to
  // 1.8e37, whenever the gradient's memory had held other data (bench/README.md, "bf16 Winograd").
  // Their true gradient is zero: the convolution runs with those taps cut from the kernel (and the
  // padding trimmed to match: the same outputs), so autograd gives them exact zeros.
  if (whole_kernels || !at::GradMode::is_enabled() || !weight.requires_grad() || input.dim() != 4 || torch::jit::tracer::isTracing()) {
    return torch::Tensor();
  }
  const auto* pad = ZeroPadding(options);
  if (pad == nullptr) return torch::Tensor();
  const auto& st = *options.stride();
  const auto& dl = *options.dilation();
  const int64_t kh = weight.size(2), kw = weight.size(3);
  if (input.size(2) + 2 * (**pad)[0] < dl[0] * (kh - 1) + 1 || input.size(3) + 2 * (**pad)[1] < dl[1] * (kw - 1) + 1) {
    return torch::Tensor();  // no output: the convolution's own error
  }
  const auto h = ReachableTaps(input.size(2), kh, st[0], (**pad)[0], dl[0]);
  const auto w = ReachableTaps(input.size(3), kw, st[1], (**pad)[1], dl[1]);
  if ((h.first == 0 && h.second == kh - 1 && w.first == 0 && w.second == kw - 1) || h.second < h.first || w.second < w.first) {
    return torch::Tensor();
  }
  torch::Tensor k = weight.narrow(2, h.first, h.second - h.first + 1).narrow(3, w.first, w.second - w.first + 1);
  if (nchw) k = k.contiguous();
  // Padding before / after each dimension for the taps kept (negative: rows or columns cropped).
  const int64_t top = (**pad)[0] - h.first * dl[0], bottom = (**pad)[0] - (kh - 1 - h.second) * dl[0];
  const int64_t left = (**pad)[1] - w.first * dl[1], right = (**pad)[1] - (kw - 1 - w.second) * dl[1];
  torch::Tensor x = at::constant_pad_nd(nchw ? input.contiguous() : input, {left, right, top, bottom}, 0);
  const std::vector<int64_t> stride{st[0], st[1]}, dilation{dl[0], dl[1]}, zero{0, 0};
  return at::conv2d(x, k, b, stride, zero, dilation, options.groups());
}

torch::Tensor Conv2dImpl::forward(const torch::Tensor& input) {
  if (DepthwiseTrainingApplies(input)) return DepthwiseTraining(input);
  if (TapApplies(input)) return TapForward(input, torch::Tensor(), Activation::kNone);
  const bool nchw = TrainingNeedsNchw(input);
  if (TrainingSplitsBias(input)) return TrainingSplitBias(input, nchw);
  if (torch::Tensor y = TrainingWithoutDeadTaps(input, nchw, bias); y.defined()) return y;
  if (GemmTrainingApplies(input)) return GemmTraining(input);
  if (pack_) {
    torch::Tensor y = TryFused(input, torch::Tensor(), Activation::kNone);
    if (y.defined()) return y;
  }
  if (Fp32WinogradApplies(input)) {
    if (torch::Tensor y = RunFp32Winograd(input, torch::Tensor(), Activation::kNone); y.defined()) return y;
  }
  if (Fp32WinogradTrainingApplies(input)) {
    return Winograd4Train::apply(input, weight, bias.defined() ? bias : at::empty({0}, weight.options()), (*options.dilation())[0]);
  }
  if (WinogradApplies(input)) {
    try {
      const c10::optional<at::Tensor> b = bias.defined() ? c10::optional<at::Tensor>(bias) : c10::nullopt;
      // One image per call: libtorch runs NNPACK's inference algorithm for a batch of one only; larger
      // batches go to its training algorithm (nnp_convolution_output), which measured 1.5-2.5x slower
      // than oneDNN on an AVX2 CPU where one image at a time was 1.3-1.7x faster (bench/README.md).
      if (input.size(0) == 1) return at::_nnpack_spatial_convolution(input, weight, b, {1, 1}, {1, 1});
      std::vector<at::Tensor> outputs;
      outputs.reserve(static_cast<size_t>(input.size(0)));
      for (int64_t i = 0; i < input.size(0); ++i) {
        outputs.push_back(at::_nnpack_spatial_convolution(input.narrow(0, i, 1), weight, b, {1, 1}, {1, 1}));
      }
      return at::cat(outputs, 0);
    } catch (const std::exception&) {
      // NNPACK refused (its workspace could not be allocated, or a shape it does not take): oneDNN below.
    }
  }
  if (nchw) return _conv_forward(input.contiguous(), weight.contiguous());
  return torch::nn::Conv2dImpl::forward(input);
}

torch::Tensor Conv2dImpl::FusedCall(const torch::Tensor& input, const torch::Tensor& add, Activation act, bool consume_add) {
  if (InferenceOnly() && TapApplies(input)) return TapForward(input, add, act);
  if (pack_) {
    if (torch::Tensor y = TryFused(input, add, act, consume_add); y.defined()) return y;
  }
  if (Fp32WinogradApplies(input)) return RunFp32Winograd(input, add, act);
  return torch::Tensor();
}

torch::Tensor Conv2dImpl::ForwardAct(const torch::Tensor& input, Activation act, const torch::Tensor& add) {
  return ForwardActImpl(input, act, add, /*consume_add=*/false);
}

torch::Tensor Conv2dImpl::ForwardAct(const torch::Tensor& input, Activation act, torch::Tensor&& add) {
  return ForwardActImpl(input, act, add, /*consume_add=*/true);
}

torch::Tensor Relu6(const torch::Tensor& y) {
#if TORCH_VERSION_MAJOR >= 2
  return at::hardtanh(y, 0, 6);
#else
  return y.clamp(0, 6);
#endif
}

torch::Tensor Conv2dImpl::ForwardActImpl(const torch::Tensor& input, Activation act, const torch::Tensor& add, bool consume_add) {
  if (torch::Tensor y = FusedCall(input, add, act, consume_add); y.defined()) return y;
  torch::Tensor y = forward(input);
  // Without gradients in place on the convolution's fresh output, where that keeps the type `y + add` has.
  const bool in_place = !at::GradMode::is_enabled();
  if (add.defined()) y = in_place && add.scalar_type() == y.scalar_type() ? y.add_(add) : y + add;
  if (act == Activation::kReLU) return in_place ? y.relu_() : y.relu();
  if (act == Activation::kReLU6) return Relu6(y);
  if (act == Activation::kHardSwish) return at::hardswish(y);
  return y;
}

namespace {
torch::Tensor ConvBnActImpl(Conv2dImpl& conv, BatchNorm2dImpl& bn, const torch::Tensor& x, Activation act, const torch::Tensor& add,
                            bool consume_add) {
  if (bn.folded()) {
    if (torch::Tensor y = conv.FusedCall(x, add, act, consume_add); y.defined()) return y;
  }
  if (act == Activation::kNone || act == Activation::kReLU) return bn.ForwardAct(conv.forward(x), act == Activation::kReLU, add);
  torch::Tensor y = bn.ForwardAct(conv.forward(x), /*relu=*/false, add);
  if (act == Activation::kReLU6) return Relu6(y);
  if (act == Activation::kHardSwish) return at::hardswish(y);
  return y;
}
}  // namespace

torch::Tensor ConvBnAct(Conv2dImpl& conv, BatchNorm2dImpl& bn, const torch::Tensor& x, Activation act, const torch::Tensor& add) {
  return ConvBnActImpl(conv, bn, x, act, add, /*consume_add=*/false);
}

torch::Tensor ConvBnAct(Conv2dImpl& conv, BatchNorm2dImpl& bn, const torch::Tensor& x, Activation act, torch::Tensor&& add) {
  return ConvBnActImpl(conv, bn, x, act, add, /*consume_add=*/true);
}

torch::Tensor ForwardSequential(torch::nn::SequentialImpl& s, torch::Tensor x, size_t begin, size_t end) {
  end = std::min(end, s.size());
  for (size_t i = begin; i < end;) {
    if (auto* conv = s.ptr(i)->as<Conv2dImpl>()) {
      auto* bn = i + 1 < end ? s.ptr(i + 1)->as<BatchNorm2dImpl>() : nullptr;
      const size_t relu = i + (bn != nullptr ? 2 : 1);
      if (relu < end && s.ptr(relu)->as<torch::nn::ReLUImpl>() != nullptr) {
        x = bn != nullptr ? ConvBnAct(*conv, *bn, x, Activation::kReLU) : conv->ForwardAct(x, Activation::kReLU);
        i = relu + 1;
        continue;
      }
    }
    auto* pool = s.ptr(i)->as<torch::nn::AdaptiveAvgPool2dImpl>();
    const auto* bins = pool != nullptr ? pool->options.output_size()->data() : nullptr;
    if (auto* drop = s.ptr(i)->as<torch::nn::DropoutImpl>()) {
      x = Dropout(*drop, x);  // the one-pass training dropout (blocks/dropout.h)
    } else if (bins != nullptr && bins[0].has_value() && bins[1].has_value() && *bins[0] == *bins[1]) {
      x = AdaptiveAvgPool(x, *bins[0]);  // in one pass over x where it applies (blocks/pool_bins.h)
    } else {
      x = (s.begin() + static_cast<std::ptrdiff_t>(i))->forward(x);
    }
    ++i;
  }
  return x;
}

int64_t PrepackConvolutions(torch::nn::Module& net, bool on) {
  int64_t n = 0;
  for (auto& m : net.modules(/*include_self=*/true)) {
    if (auto* conv = m->as<Conv2dImpl>()) n += conv->Prepack(on) ? 1 : 0;
    if (auto* keeps = dynamic_cast<KeepsWeightCopies*>(m.get())) keeps->DropWeightCopies();
  }
  return n;
}

}  // namespace segtorch
