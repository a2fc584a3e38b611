// Pyramid pooling module (PSPNet, Zhao et al. 2017), also UPerNet's context module on the last
// stage: for each bin b, adaptive average pooling to b x b, 1x1 conv (no bias) + BN + ReLU to
// `channels`, bilinear upsampling back; the output is the input concatenated with every branch
// (in_channels + bins * channels). Names as the reference (hszhao/semseg): features.i.1 (conv),
// features.i.2 (BN).
#pragma once
#include <torch/torch.h>

#include <vector>

#include "blocks/conv2d.h"

namespace segtorch {

struct PPMOptions {
  PPMOptions(int64_t in_channels, int64_t channels) : in_channels_(in_channels), channels_(channels) {}
  TORCH_ARG(int64_t, in_channels);
  // Channels of each branch: in_channels / bins in PSPNet, 512 in UPerNet.
  TORCH_ARG(int64_t, channels);
  TORCH_ARG(std::vector<int64_t>, bins) = std::vector<int64_t>{1, 2, 3, 6};
  TORCH_ARG(bool, align_corners) = false;
};

class PPMImpl : public torch::nn::Module, public KeepsWeightCopies {
 public:
  explicit PPMImpl(const PPMOptions& options);
  torch::Tensor forward(const torch::Tensor& x);
  // head(forward(x)) for the Sequential that takes the module's output (PSPNet's cls, UPerNet's bottleneck). In
  // predictions on the CPU (inference mode, not traced) where the head begins with a stride-1 convolution with zero
  // padding [+ BatchNorm] [+ ReLU], that convolution is split by its input channels: oneDNN's convolution of x alone
  // with its first in_channels() kernel channels, plus the branches' share computed on the pooled b x b maps before
  // their bilinear resize (both are linear: conv(resize(p)) = sum over the taps i, j of R_i (W_ij p) C_j^T, with R_i
  // and C_j the resize's row and column weights shifted by the tap). Same function, about half the multiplications
  // (PSPNet: 4096 -> 512 becomes 2048 -> 512 at 1/8 of the image), and the concatenation is never written.
  // Where the convolution has 1024 output pixels or more in the batch (smaller ones measured no faster);
  // SEGTORCH_PPM_SPLIT=0 / 1: never / wherever the shape fits (measurements, tests). Elsewhere head(forward(x)).
  torch::Tensor ForwardHead(const torch::Tensor& x, torch::nn::SequentialImpl& head);
  void DropWeightCopies() override;
  int64_t out_channels() const {
    return options_.in_channels() + options_.channels() * static_cast<int64_t>(options_.bins().size());
  }

  torch::nn::ModuleList features{nullptr};

 private:
  // Each branch's output on x (the poolings in one pass where blocks/pool_bins.h applies).
  std::vector<torch::Tensor> Branches(const torch::Tensor& x);
  // Whether ForwardHead splits `head`'s first convolution for x.
  bool SplitApplies(const torch::Tensor& x, torch::nn::SequentialImpl& head) const;
  // The head convolution's parts, made from `conv` when its weight or bias changed (or after DropWeightCopies).
  void EnsureParts(Conv2dImpl& conv);

  PPMOptions options_;
  std::vector<torch::nn::Sequential> branches_;
  // The head convolution on x's channels (its kernel's first in_channels() input channels and its bias), not a
  // registered module (never saved, trained or copied), prepacked as the head's is.
  Conv2d main_{nullptr};
  // The kernel's branch channels in float32 as [bins, channels, kh kw K]: each branch's matrix from its pooled
  // channels to the K outputs of every tap.
  torch::Tensor branch_kernel_;
  WeightStamp weight_stamp_, bias_stamp_;
};
TORCH_MODULE(PPM);

}  // namespace segtorch
