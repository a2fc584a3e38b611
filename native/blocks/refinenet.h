// RefineNet's building blocks (Lin et al., CVPR 2017), shared by refinenet, lwrefinenet and
// mtrefinenet. Parameter names follow the reference PyTorch ports (DrSleep/refinenet-pytorch,
// DrSleep/light-weight-refinenet), whose released weights are named this way.
#pragma once
#include <torch/torch.h>

#include "blocks/conv2d.h"

namespace segtorch {

// `blocks` residual convolution units in a row, each ReLU-conv3x3-ReLU-conv3x3 plus identity, no
// batch norm. Convolutions "<i>_conv" (with bias) and "<i>_conv_relu_varout_dimred" (without).
class RCUBlockImpl : public torch::nn::Module {
 public:
  RCUBlockImpl(int64_t channels, int64_t blocks);
  torch::Tensor forward(torch::Tensor x);

 private:
  std::vector<std::pair<Conv2d, Conv2d>> units_;
};
TORCH_MODULE(RCUBlock);

// Chained residual pooling: `stages` blocks [5x5 stride-1 max pool -> conv (kernel 3 in RefineNet,
// 1 in Light-Weight RefineNet), no bias], each block fed by the previous one and every block's
// output summed into the path. Convolutions "<i>_outvar_dimred". depthwise: grouped convolutions
// (one group per channel; the multi-task network's last CRP). The ReLU that the paper puts at the
// start of the chain is the caller's (ReLU or ReLU6 depending on the network).
class CRPBlockImpl : public torch::nn::Module {
 public:
  CRPBlockImpl(int64_t channels, int64_t stages, int64_t kernel, bool depthwise = false);
  torch::Tensor forward(torch::Tensor x);

 private:
  std::vector<Conv2d> convs_;
};
TORCH_MODULE(CRPBlock);

// The reference ports wrap each block in a one-element nn.Sequential ("mflow_conv_g1_pool.0....");
// these do the same so that their state dicts load by name.
torch::nn::Sequential RCUStack(int64_t channels, int64_t blocks);
torch::nn::Sequential CRPStack(int64_t channels, int64_t stages, int64_t kernel, bool depthwise = false);

}  // namespace segtorch
