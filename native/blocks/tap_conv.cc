#include "blocks/tap_conv.h"

#include "blocks/conv_shape.h"

#include <algorithm>
#include <vector>

namespace segtorch {

namespace {

// One tap's reach: output rows [oy, oy + rows) and columns [ox, ox + cols) read input rows [iy, iy + rows) and
// columns [ix, ix + cols) through tap t (= i kw + j).
struct TapRect {
  int64_t t, oy, ox, rows, cols, iy, ix;
};

std::vector<TapRect> TapRects(int64_t H, int64_t W, int64_t kh, int64_t kw, const TapConvParams& p) {
  const int64_t Ho = ConvOutputSize(H, kh, p.ph, p.dh), Wo = ConvOutputSize(W, kw, p.pw, p.dw);
  std::vector<TapRect> rects;
  for (int64_t i = 0; i < kh; ++i) {
    // Output row oy reads input row oy - ph + i dh: in [0, H) for oy in [ph - i dh, H + ph - i dh).
    const int64_t oy0 = std::max<int64_t>(0, p.ph - i * p.dh), oy1 = std::min(Ho, H + p.ph - i * p.dh);
    if (oy1 <= oy0) continue;
    for (int64_t j = 0; j < kw; ++j) {
      const int64_t ox0 = std::max<int64_t>(0, p.pw - j * p.dw), ox1 = std::min(Wo, W + p.pw - j * p.dw);
      if (ox1 <= ox0) continue;
      rects.push_back({i * kw + j, oy0, ox0, oy1 - oy0, ox1 - ox0, oy0 - p.ph + i * p.dh, ox0 - p.pw + j * p.dw});
    }
  }
  return rects;
}

// [N, rows, cols, C] at (y, x) of a [N, H, W, C] map as the rows of a matrix [N rows cols, C] (a view where the
// rectangle is contiguous, else a copy).
torch::Tensor RectRows(const torch::Tensor& map, int64_t y, int64_t x, int64_t rows, int64_t cols) {
  return map.slice(1, y, y + rows).slice(2, x, x + cols).reshape({-1, map.size(3)});
}

// sum over rects of out[rect] += rows(src, rect's source) x mat(rect) into a float32 [N, Ho, Wo, M] map; `by_output`:
// the rectangles read `src` at their input position and write at their output one, else the reverse (the input's
// gradient). The first rectangle that covers the whole result initialises it (one pass instead of two).
template <class Mat>
torch::Tensor SumTaps(const torch::Tensor& src, const std::vector<TapRect>& rects, bool by_output, int64_t Ho, int64_t Wo,
                      int64_t M, Mat mat) {
  const int64_t N = src.size(0);
  torch::Tensor acc;
  const TapRect* first = nullptr;
  for (const auto& r : rects) {
    const int64_t y = by_output ? r.oy : r.iy, x = by_output ? r.ox : r.ix;
    if (y == 0 && x == 0 && r.rows == Ho && r.cols == Wo) {
      first = &r;
      break;
    }
  }
  auto product = [&](const TapRect& r) {
    const int64_t y = by_output ? r.iy : r.oy, x = by_output ? r.ix : r.ox;
    return at::mm(RectRows(src, y, x, r.rows, r.cols), mat(r.t)).view({N, r.rows, r.cols, M});
  };
  if (first != nullptr) {
    acc = product(*first).to(at::kFloat);
  } else {
    acc = at::zeros({N, Ho, Wo, M}, src.options().dtype(at::kFloat));
  }
  for (const auto& r : rects) {
    if (&r == first) continue;
    const int64_t y = by_output ? r.oy : r.iy, x = by_output ? r.ox : r.ix;
    acc.slice(1, y, y + r.rows).slice(2, x, x + r.cols).add_(product(r));
  }
  return acc;
}

// The forward's float32 sums [N, Ho, Wo, K] of a channels-last x.
torch::Tensor ForwardSums(const torch::Tensor& x, const torch::Tensor& taps, int64_t kh, int64_t kw, const TapConvParams& p) {
  const int64_t H = x.size(2), W = x.size(3);
  const torch::Tensor xh = x.contiguous(at::MemoryFormat::ChannelsLast).permute({0, 2, 3, 1});
  return SumTaps(xh, TapRects(H, W, kh, kw, p), /*by_output=*/true, ConvOutputSize(H, kh, p.ph, p.dh), ConvOutputSize(W, kw, p.pw, p.dw),
                 taps.size(2), [&](int64_t t) { return taps[t]; });
}

struct TapConvTrain : public torch::autograd::Function<TapConvTrain> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& input, const torch::Tensor& weight,
                               const torch::Tensor& bias, int64_t ph, int64_t pw, int64_t dh, int64_t dw) {
    const TapConvParams p{ph, pw, dh, dw};
    const int64_t kh = weight.size(2), kw = weight.size(3);
    const torch::Tensor x = input.contiguous(at::MemoryFormat::ChannelsLast);
    const torch::Tensor taps = TapKernel(weight, weight.scalar_type());
    torch::Tensor acc = ForwardSums(x, taps, kh, kw, p);
    if (bias.numel() > 0) acc.add_(bias);
    // A tensor of its own (a view made here could not be modified in place afterwards, as a ReLU may), channels-last.
    torch::Tensor y = at::empty({acc.size(0), acc.size(3), acc.size(1), acc.size(2)}, x.options().memory_format(at::MemoryFormat::ChannelsLast));
    y.permute({0, 2, 3, 1}).copy_(acc);
    ctx->save_for_backward({x, taps});
    ctx->saved_data["shape"] = std::vector<int64_t>{kh, kw, ph, pw, dh, dw};
    ctx->saved_data["bias"] = bias.numel() > 0;
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &x = saved[0], &taps = saved[1];
    const auto s = ctx->saved_data["shape"].toIntVector();
    const int64_t kh = s[0], kw = s[1];
    const TapConvParams p{s[2], s[3], s[4], s[5]};
    const int64_t C = x.size(1), H = x.size(2), W = x.size(3), K = taps.size(2);
    torch::autograd::variable_list out(7);
    if (!grads[0].defined()) return out;
    const auto type = x.scalar_type();
    const torch::Tensor g = grads[0].to(type).contiguous(at::MemoryFormat::ChannelsLast).permute({0, 2, 3, 1});  // [N, Ho, Wo, K]
    const torch::Tensor xh = x.permute({0, 2, 3, 1});
    const auto rects = TapRects(H, W, kh, kw, p);
    if (ctx->needs_input_grad(1)) {
      // Taps that reach only padding: zero.
      torch::Tensor dw = at::zeros({kh * kw, K, C}, x.options());
      for (const auto& r : rects) {
        // dY^T made contiguous first: the product with a transposed left operand ran 1.6x slower (GemmConvTrain).
        torch::Tensor tap = dw[r.t];
        at::mm_out(tap, RectRows(g, r.oy, r.ox, r.rows, r.cols).t().contiguous(), RectRows(xh, r.iy, r.ix, r.rows, r.cols));
      }
      out[1] = dw.view({kh, kw, K, C}).permute({2, 3, 0, 1});
    }
    if (ctx->saved_data["bias"].toBool() && ctx->needs_input_grad(2)) out[2] = g.sum({0, 1, 2}, false, at::kFloat).to(type);
    if (ctx->needs_input_grad(0)) {
      const torch::Tensor dx = SumTaps(g, rects, /*by_output=*/false, H, W, C, [&](int64_t t) { return taps[t].t(); });
      out[0] = dx.to(type).permute({0, 3, 1, 2});
    }
    return out;
  }
};

}  // namespace

bool TapConvHasOutput(int64_t h, int64_t w, int64_t kh, int64_t kw, const TapConvParams& p) {
  return ConvOutputSize(h, kh, p.ph, p.dh) >= 1 && ConvOutputSize(w, kw, p.pw, p.dw) >= 1;
}

torch::Tensor TapKernel(const torch::Tensor& weight, at::ScalarType type) {
  const int64_t K = weight.size(0), C = weight.size(1), kh = weight.size(2), kw = weight.size(3);
  return weight.to(type).permute({2, 3, 1, 0}).reshape({kh * kw, C, K}).contiguous();
}

torch::Tensor TapConvolution(const torch::Tensor& x, const torch::Tensor& taps, int64_t kh, int64_t kw, const TapConvParams& p,
                             const torch::Tensor& bias, const torch::Tensor& add, bool relu) {
  torch::Tensor acc = ForwardSums(x, taps, kh, kw, p);
  if (bias.defined()) acc.add_(bias);
  if (add.defined()) acc.add_(add.permute({0, 2, 3, 1}));
  if (relu) acc.relu_();
  return (x.scalar_type() == at::kFloat ? acc : acc.to(x.scalar_type())).permute({0, 3, 1, 2});
}

torch::Tensor TapConvolutionTrain(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias, const TapConvParams& p) {
  return TapConvTrain::apply(x, weight, bias.defined() ? bias : at::empty({0}, weight.options()), p.ph, p.pw, p.dh, p.dw);
}

}  // namespace segtorch
