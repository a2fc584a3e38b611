// bf16 copies of the float32 convolution weights, kept between training steps: CPU bf16 autocast
// casts every weight at every forward (a read of 4 and a write of 2 bytes per parameter: 36 ms of
// GCN-ResNet152's 1 s step on AMX); the fused optimizer step (train/optimizer.cc) writes the copy in
// the pass that updates the weight, and the training convolutions take it instead of the cast. The
// copy holds exactly what autocast's cast would give (round to nearest even), so the step's results
// are bit for bit the same (test/optimizer.test.ts); its gradient reaches the float32 weight as the
// cast's would (cast to float).
//
// A copy is used only while its weight's version counter is where the optimizer left it: anything
// that writes the weight through ATen (loading a state dict, a checkpoint, libtorch's own optimizer
// step, a broadcast) bumps it, and the convolution falls back to autocast's cast. The optimizer is
// the only writer that bypasses the counter, and it writes the copy with the weight.
#pragma once
#include <ATen/ATen.h>

#include <vector>

#include "base/thread_flag.h"

namespace segtorch {

// SEGTORCH_BF16_WEIGHTS=0 turns the copies off (default on).
bool Bf16WeightCopiesEnabled();

// While alive on this thread: training convolutions may take their weights' copies (set around the
// forward of a bf16 autocast training step on the CPU, train/step.cc).
class Bf16WeightScope : public ThreadFlagScope {
 public:
  explicit Bf16WeightScope(bool on);
};

// A convolution's weight for its forward: `weight` itself, or, inside a Bf16WeightScope with
// gradients on and a current copy of it, that bf16 copy, whose gradient reaches `weight` in float.
at::Tensor TrainingWeight(const at::Tensor& weight);

// For the optimizer step about to write `p` (a dense float32 CPU parameter): the copy to write in
// the same pass (p's sizes and strides; made on first use), recorded as current for p as it will
// be after the pass. The copy's own version counter is bumped: a graph that still held its old
// values would fail autograd's check rather than read the new ones.
at::Tensor Bf16CopyToWrite(const at::Tensor& p);

// Forgets the copies of these parameters (their memory is freed): the optimizer rebuilt, reset or
// gone, or a step that did not write them.
void DropBf16Copies(const std::vector<at::Tensor>& params);

// For tests (the addon's _bf16WeightStats): copies held now, and since start the forwards that took
// a copy and those that found one stale (its weight written since) and took autocast's cast.
struct Bf16WeightStats {
  int64_t copies = 0, used = 0, stale = 0;
};
Bf16WeightStats GetBf16WeightStats();

}  // namespace segtorch
