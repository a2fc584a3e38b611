#include "blocks/transposed_conv.h"

#include "blocks/concat.h"
#include "blocks/tracing.h"

namespace segtorch {

SubpixelConvTranspose2dImpl::SubpixelConvTranspose2dImpl(const torch::nn::ConvTranspose2dOptions& o)
    : torch::nn::ConvTranspose2dImpl(o) {
  const auto& k = o.kernel_size();
  const auto& s = o.stride();
  const auto& p = o.padding();
  const auto& op = o.output_padding();
  const auto& d = o.dilation();
  stride_ = (*s)[0];
  padding_ = (*p)[0];
  subpixel_ = (*k)[0] == (*k)[1] && (*s)[0] == (*s)[1] && (*p)[0] == (*p)[1] && stride_ >= 1 && (*k)[0] % stride_ == 0 &&
              padding_ >= 0 && (*k)[0] - 2 * padding_ >= 1 && (*op)[0] == 0 && (*op)[1] == 0 && (*d)[0] == 1 && (*d)[1] == 1 &&
              o.groups() == 1;  // (padding_mode can only be zeros for transposed convolutions)
}

bool SubpixelConvTranspose2dImpl::Subpixel(const torch::Tensor& x) const {
  // Traced, it stays one transposed convolution (ONNX ConvTranspose), except in bfloat16 on the CPU:
  // libtorch 1.13's CPU conv_transpose2d refuses bfloat16 (it checks the weight as a convolution's).
  bool traced_plain = Tracing() && !(x.scalar_type() == torch::kBFloat16 && x.device().is_cpu());
  return subpixel_ && x.dim() == 4 && !traced_plain;
}

torch::Tensor SubpixelConvTranspose2dImpl::PhaseConv(const torch::Tensor& x, bool phases_last) {
  const int64_t s = stride_, in = weight.size(0), out = weight.size(1), k = weight.size(2), m = k / s;
  // weight [in, out, m*s, m*s] -> [out, r1, r2, in, q1, q2] (phases last: [r1, r2, out, in, q1, q2]) -> flipped over q
  // -> [out*s*s, in, m, m]
  const std::vector<int64_t> order = phases_last ? std::vector<int64_t>{3, 5, 1, 0, 2, 4} : std::vector<int64_t>{1, 3, 5, 0, 2, 4};
  torch::Tensor v = weight.reshape({in, out, m, s, m, s}).permute(order);
  if (m > 1) v = v.flip({4, 5});
  v = v.reshape({out * s * s, in, m, m});
  torch::Tensor b = !bias.defined() ? torch::Tensor() : phases_last ? bias.repeat({s * s}) : bias.repeat_interleave(s * s);
  return at::conv2d(x, v, b, /*stride=*/1, /*padding=*/m - 1);
}

namespace {

// y [N, s*s*C, H, W] with phase-major channels ((r1 * s + r2) * C + c) as the NHWC tensor [N, H, s, W, s, C] of its
// depth-to-space [N, C, H*s, W*s] (a view where y is channels-last).
torch::Tensor PhasesNhwc(const torch::Tensor& y, int64_t s) {
  const int64_t n = y.size(0), c = y.size(1) / (s * s), h = y.size(2), w = y.size(3);
  return y.permute({0, 2, 3, 1}).reshape({n, h, w, s, s, c}).permute({0, 1, 3, 2, 4, 5});
}

// dst (its channels adjacent) = the depth-to-space of phase-major `phases`: segtorch's copy, else one ATen copy.
void PlacePhases(const torch::Tensor& phases, int64_t s, torch::Tensor& dst) {
  if (DepthToSpaceInto(phases, s, dst)) return;
  torch::Tensor up = dst.permute({0, 2, 3, 1});  // [N, H*s, W*s, C]
  up.view({up.size(0), phases.size(2), s, phases.size(3), s, up.size(3)}).copy_(PhasesNhwc(phases, s));
}

// The depth-to-space [N, C, H*s, W*s] of phase-major `phases`, channels-last. With gradients or traced (predict's
// compiled path): operators autograd and the tracer record.
torch::Tensor FromPhases(const torch::Tensor& phases, int64_t s) {
  const int64_t n = phases.size(0), c = phases.size(1) / (s * s), h = phases.size(2), w = phases.size(3);
  if (at::GradMode::is_enabled() || torch::jit::tracer::isTracing()) {
    return PhasesNhwc(phases, s).reshape({n, h * s, w * s, c}).permute({0, 3, 1, 2});
  }
  torch::Tensor y = at::empty({n, c, h * s, w * s}, phases.options().memory_format(at::MemoryFormat::ChannelsLast));
  PlacePhases(phases, s, y);
  return y;
}

}  // namespace

torch::Tensor SubpixelConvTranspose2dImpl::forward(const torch::Tensor& x) {
  if (!Subpixel(x)) return torch::nn::ConvTranspose2dImpl::forward(x);
  const int64_t s = stride_, k = weight.size(2);
  // Full output s*(H + m - 1) = (H - 1)*s + k; the padding crops p from each side.
  const int64_t oh = (x.size(2) - 1) * s + k - 2 * padding_, ow = (x.size(3) - 1) * s + k - 2 * padding_;
  if (padding_ > 0 && x.suggest_memory_format() == at::MemoryFormat::ChannelsLast && !at::GradMode::is_enabled() &&
      !torch::jit::tracer::isTracing()) {
    // Predictions: the phases placed straight into the cropped output, a dense channels-last tensor (the crop of the
    // whole depth-to-space was a strided view, which the next convolution copied again: GCN's deconvolutions, 2 copies
    // of each 512 x 512 map).
    torch::Tensor phases = PhaseConv(x, /*phases_last=*/true);
    torch::Tensor y = at::empty({phases.size(0), phases.size(1) / (s * s), oh, ow}, phases.options().memory_format(at::MemoryFormat::ChannelsLast));
    if (DepthToSpaceInto(phases, s, y, padding_)) return y;
    return FromPhases(phases, s).narrow(2, padding_, oh).narrow(3, padding_, ow);
  }
  torch::Tensor y = x.suggest_memory_format() == at::MemoryFormat::ChannelsLast ? FromPhases(PhaseConv(x, /*phases_last=*/true), s)
                                                                                : at::pixel_shuffle(PhaseConv(x, /*phases_last=*/false), s);
  if (padding_ == 0) return y;
  return y.narrow(2, padding_, oh).narrow(3, padding_, ow);
}

torch::Tensor SubpixelConvTranspose2dImpl::ForwardCat(const torch::Tensor& skip, const torch::Tensor& x) {
  const auto cl = at::MemoryFormat::ChannelsLast;
  if (at::GradMode::is_enabled() || torch::jit::tracer::isTracing() || padding_ != 0 || !Subpixel(x) || skip.dim() != 4 ||
      x.suggest_memory_format() != cl || skip.suggest_memory_format() != cl) {
    return torch::cat({skip, forward(x)}, 1);
  }
  const int64_t s = stride_;
  torch::Tensor phases = PhaseConv(x, /*phases_last=*/true);
  const int64_t c = phases.size(1) / (s * s), cs = skip.size(1);
  if (phases.scalar_type() != skip.scalar_type() || skip.size(0) != phases.size(0) || skip.size(2) != phases.size(2) * s ||
      skip.size(3) != phases.size(3) * s) {
    return torch::cat({skip, FromPhases(phases, s)}, 1);  // (ATen's error where the sizes disagree)
  }
  torch::Tensor out = at::empty({skip.size(0), cs + c, skip.size(2), skip.size(3)}, skip.options().memory_format(cl));
  torch::Tensor first = out.narrow(1, 0, cs), second = out.narrow(1, cs, c);
  if (!CopyPixels(skip, first)) first.copy_(skip);
  PlacePhases(phases, s, second);
  return out;
}

}  // namespace segtorch
