// Training dropout of CPU float32 / bfloat16 tensors in one pass each way (DropoutApply*, blocks/dropout_kernel.h):
// libtorch's draws every mask element with its Bernoulli sampler (aten::bernoulli_, about 10 ns per element on
// the AMX Xeon: 337 ms of the dilated network's 5.3 s training step for fc6's and fc7's 2 x 16.8 M elements),
// then multiplies twice. Here each element's keep / drop comes from a counter-based hash of one seed (drawn from
// libtorch's default CPU generator, so torch::manual_seed and the models' seeds make it reproducible) and its
// index, the backward pass recomputes the same mask (nothing stored), and the result does not depend on the
// thread count. The mask's stream differs from libtorch's; its law is the same (each element kept with
// probability 1 - p, independently; kept ones scaled by 1 / (1 - p)).
#pragma once
#include <torch/torch.h>

namespace segtorch {

// What `module` (nn::Dropout) would compute for `x`: the one-pass dropout where it is training, 0 < p < 1, and
// `x` is a CPU float32 or bfloat16 tensor outside a trace; otherwise the module's own forward (eval: `x`).
// SEGTORCH_FAST_DROPOUT=0: always the module's own (measurements).
torch::Tensor Dropout(torch::nn::DropoutImpl& module, const torch::Tensor& x);

}  // namespace segtorch
