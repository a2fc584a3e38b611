// ReLU for predictions: a dense bfloat16 CPU tensor outside autograd and tracing runs segtorch's
// kernel (blocks/relu_kernel.h, the same values as ATen's relu, at copy speed); anything else ATen's
// relu / relu_ (and everything with SEGTORCH_RELU_KERNEL=0, for measurements).
#pragma once
#include <torch/torch.h>

namespace segtorch {

torch::Tensor Relu(const torch::Tensor& x);
// x rectified in place (returned; training's tensors by ATen's relu_, recorded by autograd).
torch::Tensor ReluInPlace(torch::Tensor x);

}  // namespace segtorch
