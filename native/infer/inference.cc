#include "infer/inference.h"

#include <cmath>

#include "base/errors.h"

namespace segtorch {

namespace F = torch::nn::functional;

namespace {

torch::Tensor Resize(const torch::Tensor& x, int64_t h, int64_t w) {
  if (x.size(2) == h && x.size(3) == w) return x;
  return F::interpolate(x, F::InterpolateFuncOptions().size(std::vector<int64_t>{h, w}).mode(torch::kBilinear).align_corners(false));
}

// Overlapping windows; logits summed per pixel then divided by the number of windows covering it.
torch::Tensor Slide(const LogitsFn& logits, const torch::Tensor& x, const InferOptions& o) {
  int64_t h = x.size(2), w = x.size(3);
  int64_t ch = o.crop_h, cw = o.crop_w;
  int64_t ph = std::max<int64_t>(0, ch - h), pw = std::max<int64_t>(0, cw - w);
  torch::Tensor padded = (ph || pw) ? F::pad(x, F::PadFuncOptions({0, pw, 0, ph})) : x;
  int64_t H = padded.size(2), W = padded.size(3);
  int64_t rows = std::max<int64_t>(1, (H - ch + o.stride_h - 1) / o.stride_h + 1);
  int64_t cols = std::max<int64_t>(1, (W - cw + o.stride_w - 1) / o.stride_w + 1);
  torch::Tensor sum, count = torch::zeros({1, 1, H, W}, x.options());
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      int64_t y0 = std::min(r * o.stride_h, H - ch), x0 = std::min(c * o.stride_w, W - cw);
      torch::Tensor window = padded.narrow(2, y0, ch).narrow(3, x0, cw);
      torch::Tensor out = logits(window).to(torch::kFloat);
      if (!sum.defined()) sum = torch::zeros({x.size(0), out.size(1), H, W}, out.options());
      sum.narrow(2, y0, ch).narrow(3, x0, cw).add_(out);
      count.narrow(2, y0, ch).narrow(3, x0, cw).add_(1);
    }
  }
  return (sum / count).narrow(2, 0, h).narrow(3, 0, w);
}

}  // namespace

torch::Tensor Infer(const LogitsFn& logits, const torch::Tensor& x, const InferOptions& o) {
  if (o.mode != "whole" && o.mode != "slide") ThrowRange("Expected mode 'whole' or 'slide' but received '" + o.mode + "'");
  if (o.scales.empty()) ThrowRange("Expected at least one scale");
  if (o.mode == "slide" && (o.crop_h < 1 || o.crop_w < 1 || o.stride_h < 1 || o.stride_w < 1)) ThrowRange("Expected positive crop and stride");
  int64_t h = x.size(2), w = x.size(3);
  auto run = [&](const torch::Tensor& input) { return o.mode == "slide" ? Slide(logits, input, o) : logits(input).to(torch::kFloat); };
  if (o.output != "labels" && o.output != "probs" && o.output != "logits") {
    ThrowRange("Expected output 'labels', 'probs' or 'logits' but received '" + o.output + "'");
  }
  bool average_probs = o.output != "logits";
  if (o.scales.size() == 1 && !o.flip && o.output != "probs") {
    // One pass: labels are the argmax of the logits themselves (softmax is monotonic), logits as is.
    double s = o.scales[0];
    if (!(s > 0) || !std::isfinite(s)) ThrowRange("Expected positive scales but received " + std::to_string(s));
    int64_t sh = std::max<int64_t>(1, static_cast<int64_t>(std::llround(h * s)));
    int64_t sw = std::max<int64_t>(1, static_cast<int64_t>(std::llround(w * s)));
    torch::Tensor out = Resize(run(Resize(x, sh, sw)), h, w);
    return o.output == "labels" ? out.argmax(1).to(torch::kInt) : out.contiguous();
  }
  torch::Tensor acc;
  int64_t n = 0;
  for (double s : o.scales) {
    if (!(s > 0) || !std::isfinite(s)) ThrowRange("Expected positive scales but received " + std::to_string(s));
    int64_t sh = std::max<int64_t>(1, static_cast<int64_t>(std::llround(h * s)));
    int64_t sw = std::max<int64_t>(1, static_cast<int64_t>(std::llround(w * s)));
    torch::Tensor xs = Resize(x, sh, sw);
    for (int f = 0; f < (o.flip ? 2 : 1); ++f) {
      torch::Tensor input = f ? xs.flip({3}) : xs;
      torch::Tensor out = run(input);
      if (f) out = out.flip({3});
      out = Resize(out, h, w);
      torch::Tensor term = average_probs ? torch::softmax(out, 1) : out;
      acc = acc.defined() ? acc.add_(term) : term.clone();
      ++n;
    }
  }
  acc.div_(static_cast<double>(n));
  if (o.output == "labels") return acc.argmax(1).to(torch::kInt);
  if (o.output == "probs" || o.output == "logits") return acc.contiguous();
  ThrowRange("Expected output 'labels', 'probs' or 'logits' but received '" + o.output + "'");
}

torch::Tensor InferWithCrf(const LogitsFn& logits, const torch::Tensor& x, const torch::Tensor& colours, const InferOptions& o) {
  if (!o.crf.enabled) return Infer(logits, x, o);
  if (o.output == "logits") ThrowRange("Expected output 'labels' or 'probs' with crf but received 'logits'");
  CheckCrfOptions(o.crf);
  InferOptions probs = o;
  probs.output = "probs";
  torch::Tensor result = DenseCrfBatch(colours, Infer(logits, x, probs), o.crf);
  return o.output == "labels" ? result.argmax(1).to(torch::kInt) : result;
}

}  // namespace segtorch
