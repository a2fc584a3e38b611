#include "blocks/depthwise.h"

#include <ATen/Parallel.h>
#include <ATen/record_function.h>

#include <algorithm>
#include <vector>

#include "blocks/conv_shape.h"
#include "blocks/depthwise_kernel.h"

namespace segtorch {
namespace {

// The weight gradient is summed in this many partial sums at most, each over a fixed range of output rows, then
// added in order: the same result whatever the thread count.
constexpr int64_t kDepthwiseMaxPartials = 64;

DepthwiseShape DwShape(const torch::Tensor& x, const torch::Tensor& weight, const DepthwiseParams& p) {
  DepthwiseShape s{};
  s.N = x.size(0);
  s.C = x.size(1);
  s.H = x.size(2);
  s.W = x.size(3);
  s.KH = weight.size(2);
  s.KW = weight.size(3);
  s.sh = p.sh;
  s.sw = p.sw;
  s.ph = p.ph;
  s.pw = p.pw;
  s.dh = p.dh;
  s.dw = p.dw;
  s.OH = ConvOutputSize(s.H, s.KH, p.ph, p.dh, p.sh);
  s.OW = ConvOutputSize(s.W, s.KW, p.pw, p.dw, p.sw);
  return s;
}

// Rows per task so that a task has at least ~32 K multiply-adds.
int64_t DwGrain(int64_t row_pixels, const DepthwiseShape& s) { return std::max<int64_t>(1, 32768 / std::max<int64_t>(1, row_pixels * s.C * s.KH * s.KW)); }

// The weight as float [KH KW, C] (tap-major).
torch::Tensor DwTapMajor(const torch::Tensor& weight) {
  return weight.detach().to(at::kFloat).reshape({weight.size(0), -1}).t().contiguous();
}

bool DwIsBf16(const torch::Tensor& t) { return t.scalar_type() == at::kBFloat16; }
const uint16_t* DwBits(const torch::Tensor& t) { return reinterpret_cast<const uint16_t*>(t.data_ptr<at::BFloat16>()); }
uint16_t* DwMutableBits(torch::Tensor& t) { return reinterpret_cast<uint16_t*>(t.data_ptr<at::BFloat16>()); }

torch::Tensor DwForward(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias, const DepthwiseShape& s) {
  torch::Tensor y = at::empty({s.N, s.C, s.OH, s.OW}, x.options().memory_format(at::MemoryFormat::ChannelsLast));
  const torch::Tensor wt = DwTapMajor(weight);
  const torch::Tensor b = bias.defined() ? bias.detach().to(at::kFloat).contiguous() : torch::Tensor();
  const float* wp = wt.data_ptr<float>();
  const float* bp = b.defined() ? b.data_ptr<float>() : nullptr;
  at::parallel_for(0, s.N * s.OH, DwGrain(s.OW, s), [&](int64_t begin, int64_t end) {
    std::vector<float> acc(static_cast<size_t>(s.C));
    if (DwIsBf16(x)) {
      DepthwiseForwardBFloat16(DwBits(x), wp, bp, DwMutableBits(y), s, begin, end, acc.data());
    } else {
      DepthwiseForwardFloat(x.data_ptr<float>(), wp, bp, y.data_ptr<float>(), s, begin, end, acc.data());
    }
  });
  return y;
}

torch::Tensor DwInputGrad(const torch::Tensor& g, const torch::Tensor& weight, const DepthwiseShape& s) {
  torch::Tensor dx = at::empty({s.N, s.C, s.H, s.W}, g.options().memory_format(at::MemoryFormat::ChannelsLast));
  const torch::Tensor wt = DwTapMajor(weight);
  const float* wp = wt.data_ptr<float>();
  at::parallel_for(0, s.N * s.H, DwGrain(s.W, s), [&](int64_t begin, int64_t end) {
    std::vector<float> acc(static_cast<size_t>(s.C));
    if (DwIsBf16(g)) {
      DepthwiseInputGradBFloat16(DwBits(g), wp, DwMutableBits(dx), s, begin, end, acc.data());
    } else {
      DepthwiseInputGradFloat(g.data_ptr<float>(), wp, dx.data_ptr<float>(), s, begin, end, acc.data());
    }
  });
  return dx;
}

// {weight gradient [KH KW, C], bias gradient [C] (where asked)}, float.
std::pair<torch::Tensor, torch::Tensor> DwWeightGrad(const torch::Tensor& x, const torch::Tensor& g, const DepthwiseShape& s, bool with_bias) {
  const int64_t rows = s.N * s.OH, taps = s.KH * s.KW;
  const int64_t parts = std::min(rows, kDepthwiseMaxPartials);
  const auto f32 = x.options().dtype(at::kFloat).memory_format(at::MemoryFormat::Contiguous);
  torch::Tensor part = at::zeros({parts, taps * s.C}, f32);
  torch::Tensor part_b = with_bias ? at::zeros({parts, s.C}, f32) : torch::Tensor();
  at::parallel_for(0, parts, 1, [&](int64_t first, int64_t last) {
    std::vector<float> scratch(static_cast<size_t>(s.C));
    for (int64_t q = first; q < last; ++q) {
      const int64_t begin = rows * q / parts, end = rows * (q + 1) / parts;
      float* pp = part.data_ptr<float>() + q * taps * s.C;
      float* pb = with_bias ? part_b.data_ptr<float>() + q * s.C : nullptr;
      if (DwIsBf16(x)) {
        DepthwiseWeightGradBFloat16(DwBits(x), DwBits(g), s, begin, end, pp, pb, scratch.data());
      } else {
        DepthwiseWeightGradFloat(x.data_ptr<float>(), g.data_ptr<float>(), s, begin, end, pp, pb, scratch.data());
      }
    }
  });
  return {part.sum(0).view({taps, s.C}), with_bias ? part_b.sum(0) : torch::Tensor()};
}

struct DepthwiseTrain : public torch::autograd::Function<DepthwiseTrain> {
  // No bias comes as an empty tensor: libtorch 2.x's Function::apply takes no undefined inputs.
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& input, const torch::Tensor& weight,
                               const torch::Tensor& bias, std::vector<int64_t> params) {
    const DepthwiseParams p{params[0], params[1], params[2], params[3], params[4], params[5]};
    const torch::Tensor x = input.contiguous(at::MemoryFormat::ChannelsLast);
    const bool has_bias = bias.numel() > 0;
    ctx->save_for_backward({x, weight});
    ctx->saved_data["params"] = params;
    ctx->saved_data["bias"] = has_bias;
    return DwForward(x, weight, has_bias ? bias : torch::Tensor(), DwShape(x, weight, p));
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grads) {
    torch::autograd::variable_list out(4);
    if (!grads[0].defined()) return out;
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &x = saved[0], &weight = saved[1];
    const auto params = ctx->saved_data["params"].toIntVector();
    const DepthwiseShape s = DwShape(x, weight, {params[0], params[1], params[2], params[3], params[4], params[5]});
    // The output's gradient in the output's type (autograd casts it so), dense channels-last.
    const torch::Tensor g = grads[0].to(x.scalar_type()).contiguous(at::MemoryFormat::ChannelsLast);
    if (ctx->needs_input_grad(0)) out[0] = DwInputGrad(g, weight, s);
    const bool need_w = ctx->needs_input_grad(1), need_b = ctx->saved_data["bias"].toBool() && ctx->needs_input_grad(2);
    if (need_w || need_b) {
      auto [dw, db] = DwWeightGrad(x, g, s, need_b);
      if (need_w) {
        // [KH KW, C] -> the weight's [C, 1, KH, KW], in the weight's own layout (what its .grad keeps).
        torch::Tensor w = at::empty_like(weight, weight.suggest_memory_format());
        w.copy_(dw.t().reshape(weight.sizes()));
        out[1] = w;
      }
      if (need_b) out[2] = db;
    }
    return out;
  }
};

}  // namespace

bool DepthwiseTakes(const torch::Tensor& input, const torch::Tensor& weight, const torch::Tensor& bias, const DepthwiseParams& p) {
  if (!input.defined() || !weight.defined() || input.dim() != 4 || weight.dim() != 4 || !input.is_cpu() || !weight.is_cpu()) return false;
  if ((input.scalar_type() != at::kFloat && input.scalar_type() != at::kBFloat16) || weight.scalar_type() != at::kFloat) return false;
  const int64_t C = input.size(1);
  if (C < 1 || weight.size(0) != C || weight.size(1) != 1 || input.size(0) < 1 || input.size(2) < 1 || input.size(3) < 1) return false;
  if (bias.defined() && (!bias.is_cpu() || bias.scalar_type() != at::kFloat || bias.dim() != 1 || bias.size(0) != C)) return false;
  if (p.sh < 1 || p.sw < 1 || p.dh < 1 || p.dw < 1 || p.ph < 0 || p.pw < 0) return false;
  return input.size(2) + 2 * p.ph >= p.dh * (weight.size(2) - 1) + 1 && input.size(3) + 2 * p.pw >= p.dw * (weight.size(3) - 1) + 1;
}

torch::Tensor DepthwiseConvolution(const torch::Tensor& input, const torch::Tensor& weight, const torch::Tensor& bias,
                                   const DepthwiseParams& p) {
  RECORD_USER_SCOPE("segtorch::depthwise_conv");  // named in SEGTORCH_PROFILE's traces (its backward: DepthwiseTrain)
  return DepthwiseTrain::apply(input, weight, bias.defined() ? bias : at::empty({0}, weight.options()),
                               std::vector<int64_t>{p.sh, p.sw, p.ph, p.pw, p.dh, p.dw});
}

}  // namespace segtorch
