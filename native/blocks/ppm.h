// Pyramid pooling module (PSPNet, Zhao et al. 2017), also UPerNet's context module on the last
// stage: for each bin b, adaptive average pooling to b x b, 1x1 conv (no bias) + BN + ReLU to
// `channels`, bilinear upsampling back; the output is the input concatenated with every branch
// (in_channels + bins * channels). Names as the reference (hszhao/semseg): features.i.1 (conv),
// features.i.2 (BN).
#pragma once
#include <torch/torch.h>

#include <vector>

namespace segtorch {

struct PPMOptions {
  PPMOptions(int64_t in_channels, int64_t channels) : in_channels_(in_channels), channels_(channels) {}
  TORCH_ARG(int64_t, in_channels);
  // Channels of each branch: in_channels / bins in PSPNet, 512 in UPerNet.
  TORCH_ARG(int64_t, channels);
  TORCH_ARG(std::vector<int64_t>, bins) = std::vector<int64_t>{1, 2, 3, 6};
  TORCH_ARG(bool, align_corners) = false;
};

class PPMImpl : public torch::nn::Module {
 public:
  explicit PPMImpl(const PPMOptions& options);
  torch::Tensor forward(const torch::Tensor& x);
  int64_t out_channels() const {
    return options_.in_channels() + options_.channels() * static_cast<int64_t>(options_.bins().size());
  }

  torch::nn::ModuleList features{nullptr};

 private:
  PPMOptions options_;
  std::vector<torch::nn::Sequential> branches_;
};
TORCH_MODULE(PPM);

}  // namespace segtorch
