#include "train/step.h"

#include <ATen/record_function.h>

#include <cmath>
#include <cstdlib>

#include "base/errors.h"

namespace segtorch {

namespace {
// Fault injection for the tests of the non-finite-gradient paths (test/train.test.ts,
// test/distributed.test.ts): with SEGTORCH_TEST_NAN_GRADIENT=N, training step N of this process
// keeps its (finite) loss, but its backward gives the first trainable parameter NaN gradients, as an
// overflow inside the network does on some CPUs. Read on every step (one getenv): a test sets it for
// one rank or one call.
bool NanGradientAt(int64_t step) {
  const char* v = std::getenv("SEGTORCH_TEST_NAN_GRADIENT");
  return v != nullptr && std::strtoll(v, nullptr, 10) == step;
}

// loss + 0 * sqrt(z) with z = s - s = +0: the value is the loss's, and the backward gives
// sqrt's 0 / (2 sqrt(0)) = NaN to every element of the parameter.
torch::Tensor PoisonGradients(const torch::Tensor& loss, torch::nn::Module& net) {
  for (auto& p : net.parameters()) {
    if (!p.requires_grad()) continue;
    torch::Tensor s = p.to(torch::kFloat).sum();
    return loss + (s - s.detach()).sqrt() * 0.0;
  }
  return loss;
}
}  // namespace

torch::Tensor TrainingLoss(SegmentationModel& net, const RunFn& run, const torch::Tensor& x, const torch::Tensor& y,
                           const TrainStepOptions& o, StepResult* parts, const torch::Tensor& depth) {
  SegOutput out;
  {
    at::ScalarType type = AutocastType(o.precision);
    AutocastGuard guard(x.device(), type == at::kFloat ? at::kBFloat16 : type, type != at::kFloat);
    out = run(x);
  }
  LossOptions lo = o.loss_options;
  lo.ignore_index = o.ignore_index;
  // The logits as the network gives them (bf16 under autocast): every loss computes in float32, the fused
  // cross-entropy reading bf16 directly (train/losses.cc).
  torch::Tensor main = SegmentationLoss(o.loss, out.out, y, lo);
  torch::Tensor loss = main;
  std::vector<std::pair<std::string, torch::Tensor>> terms{{"main", main}};
  for (auto& a : out.aux) {
    torch::Tensor l;
    double w = 0;
    if (a.first == "depth") {
      if (!depth.defined()) continue;  // multi-task models without depth targets: segmentation only
      l = DepthLoss(a.second.to(torch::kFloat), depth.to(a.second.device()), o.depth_loss);
      w = o.depth_weight;
    } else {
      l = net.AuxLoss(a.first, a.second.to(torch::kFloat), y, o.ignore_index);
      if (!l.defined()) continue;
      w = net.AuxWeight(a.first, o.aux_weight);
    }
    loss = loss + w * l;
    terms.emplace_back(a.first, l);
  }
  if (parts) {
    for (auto& t : terms) parts->parts.emplace_back(t.first, t.second.item<double>());
    parts->loss = loss.item<double>();
  }
  return loss;
}

// Gradients are released rather than zeroed (PyTorch 2.x's zero_grad(set_to_none=True)): between
// steps they take no memory, and backward allocates each one as the activations it needs are freed,
// so a step's peak holds the activations or the gradients, not both at full size. An optimizer step
// skips parameters without a gradient (no weight decay on a parameter the loss did not reach).
void ClearGradients(torch::nn::Module& net) {
  for (auto& p : net.parameters()) p.mutable_grad() = torch::Tensor();
}

StepResult TrainStep(TrainingState& state, SegmentationModel& net, const RunFn& run, const torch::Tensor& x,
                     const torch::Tensor& y, const torch::Tensor& d, const TrainStepOptions& o) {
  bool was_training = net.is_training();
  net.train();
  StepResult result;
  const std::vector<double>& base_lrs = state.optimizer.base_lrs();
  // The forward updates BatchNorm's running statistics; a step that fails (a non-finite loss or
  // gradients, a failed exchange) puts them back, so that it changes nothing (an overflowing image
  // would otherwise leave non-finite statistics and every later prediction NaN). A few KB per BN
  // layer. Data parallel: as they are after rank 0's were copied to this rank (the same on every rank).
  std::vector<torch::Tensor> buffers = net.buffers(), saved;
  try {
    if (state.micro % o.accumulate == 0) ClearGradients(net);
    if (state.parallel) state.parallel->BeforeForward(net);
    {
      torch::NoGradGuard no_grad;
      saved.reserve(buffers.size());
      for (const auto& b : buffers) saved.push_back(b.clone());
    }
    torch::Tensor loss = TrainingLoss(net, run, x, y, o, &result, d);
    bool fp16 = o.precision == Precision::kFp16;
    bool last = (state.micro + 1) % o.accumulate == 0;
    if (!std::isfinite(result.loss) && !fp16) {
      if (!state.parallel) {
        ClearGradients(net);
        ThrowError("training step " + std::to_string(state.steps + 1) + " produced a non-finite loss (" +
                   std::to_string(result.loss) + "); the weights were not updated. Lower the learning rate, clip the gradients (clipGradNorm) or check the data.");
      }
      // Data parallel: the other ranks are in (or on their way to) the gradient exchange; this rank
      // skips its backward and says so there, and every rank throws the same error.
      state.parallel->NonFiniteLoss(result.loss);
    } else {
      if (state.parallel) state.parallel->BeforeBackward(net, last, !fp16);
      if (NanGradientAt(state.steps + 1)) loss = PoisonGradients(loss, net);
      RECORD_USER_SCOPE("segtorch::backward");  // named in SEGTORCH_PROFILE's traces
      (loss * ((fp16 ? state.scaler.scale : 1.0) / static_cast<double>(o.accumulate))).backward();
    }
    ++state.micro;
    if (state.micro % o.accumulate == 0) {
      auto params = net.parameters();
      // Data parallel: gradients averaged over the ranks on the last micro-batch only (earlier
      // ones accumulate locally, as DistributedDataParallel under no_sync()).
      if (state.parallel) {
        try {
          state.parallel->ReduceGradients(params);
        } catch (...) {
          ClearGradients(net);
          throw;
        }
      }
      // A finite loss can still give inf / NaN gradients (an overflow inside the network); an update
      // with them would ruin every weight, so the step stops as for a non-finite loss (fp16: the
      // loss scaler skips the update instead, as GradScaler does). Data parallel over 2 or more
      // processes: each rank checked its own gradients before the exchange (ReduceGradients threw).
      // With clipping (fp32 / bf16), the gradients' global norm is that check too: one read of every
      // gradient instead of two (a non-finite gradient, or one whose square leaves float's range, makes
      // it non-finite); -1: not computed.
      const bool clip = o.clip_grad_norm > 0;
      const double norm = clip && !fp16 ? GradientNorm(params) : -1.0;
      const bool checked = state.parallel && state.parallel->WorldSize() > 1;
      if (!fp16 && !checked && !(clip ? std::isfinite(norm) : GradientsFinite(params))) {
        ClearGradients(net);
        ThrowError("training step " + std::to_string(state.steps + 1) + " produced non-finite gradients from a finite loss (" +
                   std::to_string(result.loss) + "); the weights were not updated. Lower the learning rate, clip the gradients (clipGradNorm) or check the data.");
      }
      bool ok = fp16 ? state.scaler.UnscaleAndCheck(params) : true;
      if (ok) {
        double grad_scale = 1.0;
        if (clip) {
          result.grad_norm = norm >= 0 ? norm : GradientNorm(params);
          grad_scale = ClipCoefficient(o.clip_grad_norm, result.grad_norm);
        }
        double factor = LrFactor(o.schedule, state.steps);
        state.optimizer.SetLearningRates(factor);
        result.lr = base_lrs.empty() ? 0 : base_lrs[0] * factor;
        for (double b : base_lrs) result.lrs.push_back(b * factor);
        {
          RECORD_USER_SCOPE("segtorch::optimizer_step");
          state.optimizer.Step(grad_scale);
        }
        ++state.steps;
        result.updated = true;
      } else {
        result.skipped = true;
      }
      ClearGradients(net);
    } else {
      result.lr = base_lrs.empty() ? 0 : base_lrs[0] * LrFactor(o.schedule, state.steps);
    }
  } catch (...) {
    {
      torch::NoGradGuard no_grad;
      for (size_t k = 0; k < saved.size(); ++k) buffers[k].copy_(saved[k]);
    }
    net.train(was_training);
    throw;
  }
  net.train(was_training);
  result.step = state.steps;
  return result;
}

std::vector<std::string> ParametersWithoutGradient(SegmentationModel& net, const RunFn& run, const torch::Tensor& x,
                                                   const torch::Tensor& y, const TrainStepOptions& o) {
  bool was_training = net.is_training();
  net.train();
  ClearGradients(net);
  std::vector<std::string> missing;
  try {
    TrainingLoss(net, run, x, y, o, nullptr).backward();
    for (auto& kv : net.named_parameters()) {
      const auto& g = kv.value().grad();
      if (kv.value().requires_grad() && (!g.defined() || !torch::isfinite(g).all().item<bool>())) missing.push_back(kv.key());
    }
  } catch (...) {
    net.train(was_training);
    throw;
  }
  ClearGradients(net);
  net.train(was_training);
  return missing;
}

}  // namespace segtorch
