#include "blocks/transposed_conv.h"

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

torch::Tensor SubpixelConvTranspose2dImpl::forward(const torch::Tensor& x) {
  // Traced, it stays one transposed convolution (ONNX ConvTranspose), except in bfloat16 on the CPU:
  // libtorch 1.13's CPU conv_transpose2d refuses bfloat16 (it checks the weight as a convolution's).
  bool traced_plain = Tracing() && !(x.scalar_type() == torch::kBFloat16 && x.device().is_cpu());
  if (!subpixel_ || x.dim() != 4 || traced_plain) return torch::nn::ConvTranspose2dImpl::forward(x);
  const int64_t s = stride_, in = weight.size(0), out = weight.size(1), k = weight.size(2), m = k / s;
  // weight [in, out, m*s, m*s] -> [out, r1, r2, in, q1, q2] -> flipped over q -> [out*s*s, in, m, m]
  torch::Tensor v = weight.reshape({in, out, m, s, m, s}).permute({1, 3, 5, 0, 2, 4});
  if (m > 1) v = v.flip({4, 5});
  v = v.reshape({out * s * s, in, m, m});
  torch::Tensor b = bias.defined() ? bias.repeat_interleave(s * s) : torch::Tensor();
  torch::Tensor y = at::pixel_shuffle(at::conv2d(x, v, b, /*stride=*/1, /*padding=*/m - 1), s);
  // Full output s*(H + m - 1) = (H - 1)*s + k; the padding crops p from each side.
  if (padding_ == 0) return y;
  const int64_t oh = (x.size(2) - 1) * s + k - 2 * padding_, ow = (x.size(3) - 1) * s + k - 2 * padding_;
  return y.narrow(2, padding_, oh).narrow(3, padding_, ow);
}

}  // namespace segtorch
