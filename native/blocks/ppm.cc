#include "blocks/ppm.h"
#include "blocks/batch_norm.h"
#include "blocks/conv2d.h"

#include <torch/csrc/jit/frontend/tracer.h>

#include <algorithm>
#include <utility>

#include "base/env.h"
#include "blocks/conv_shape.h"
#include "blocks/linear_taps.h"
#include "blocks/pool_bins.h"
#include "blocks/resize.h"
#include "train/precision.h"

namespace segtorch {

namespace nn = torch::nn;

namespace {

// For a convolution along one dimension (k taps, zero padding pad, dilation dil, `out` outputs) of a map resized
// from `in` to `size` positions: [out, k in], whose entry (o, j in + a) is the weight of small-map position a in the
// resized value that tap j of output o reads (0 where the tap reads padding).
torch::Tensor ShiftedResize(int64_t in, int64_t size, int64_t k, int64_t pad, int64_t dil, int64_t out, bool align_corners) {
  const LinearTaps taps(in, size, align_corners);  // ATen's resize weights
  torch::Tensor m = at::zeros({out, k * in}, at::kFloat);
  float* p = m.data_ptr<float>();
  for (int64_t o = 0; o < out; ++o) {
    for (int64_t j = 0; j < k; ++j) {
      const int64_t at = o + j * dil - pad;
      if (at < 0 || at >= size) continue;
      float* row = p + o * k * in + j * in;
      row[taps.i0[at]] += taps.l0[at];
      row[taps.i1[at]] += taps.l1[at];
    }
  }
  return m;
}

}  // namespace

PPMImpl::PPMImpl(const PPMOptions& o) : options_(o) {
  features = register_module("features", nn::ModuleList());
  for (int64_t bin : o.bins()) {
    auto branch = nn::Sequential(nn::AdaptiveAvgPool2d(nn::AdaptiveAvgPool2dOptions(bin)),
                                 Conv2d(nn::Conv2dOptions(o.in_channels(), o.channels(), 1).bias(false)),
                                 BatchNorm2d(o.channels()), nn::ReLU());
    branches_.push_back(branch);
    features->push_back(branch);
  }
}

std::vector<torch::Tensor> PPMImpl::Branches(const torch::Tensor& x) {
  std::vector<torch::Tensor> out;
  if (PoolBinsApply(x)) {
    // Every bin count's pooling in one pass over x, then each branch from its second module on.
    std::vector<torch::Tensor> pooled = AdaptiveAvgPoolBins(x, options_.bins());
    for (size_t b = 0; b < branches_.size(); ++b) out.push_back(ForwardSequential(branches_[b], std::move(pooled[b]), 1));
  } else {
    for (auto& b : branches_) out.push_back(ForwardSequential(b, x));
  }
  return out;
}

torch::Tensor PPMImpl::forward(const torch::Tensor& x) {
  std::vector<torch::Tensor> out = Branches(x);
  out.insert(out.begin(), x);
  return CatResized(out, x, options_.align_corners());
}

bool PPMImpl::SplitApplies(const torch::Tensor& x, nn::SequentialImpl& head) const {
  static const long mode = EnvInteger("SEGTORCH_PPM_SPLIT", -1, 0, 1);
  if (mode == 0 || AsTracedActive() || !c10::InferenceMode::is_enabled() || torch::jit::tracer::isTracing() || !x.is_cpu() || x.dim() != 4 ||
      x.size(1) != options_.in_channels() || head.size() == 0) {
    return false;
  }
  const auto* conv = head.ptr(0)->as<Conv2dImpl>();
  int64_t ph = 0, pw = 0;
  if (conv == nullptr || !conv->weight.is_cpu() || conv->weight.dim() != 4 || conv->weight.size(1) != out_channels() ||
      conv->options.groups() != 1 || !conv->ZeroPaddingValues(&ph, &pw)) {
    return false;
  }
  const auto& st = *conv->options.stride();
  const auto& dl = *conv->options.dilation();
  const int64_t ho = ConvOutputSize(x.size(2), conv->weight.size(2), ph, dl[0]), wo = ConvOutputSize(x.size(3), conv->weight.size(3), pw, dl[1]);
  if (st[0] != 1 || st[1] != 1 || ho < 1 || wo < 1) return false;
  // The rule: 1024 output pixels or more in the batch. The multiplications saved per pass over the kernel's branch
  // channels (read in float32 on every call) are the output pixels: below about 32 x 32, those reads and the small
  // products cost what the split saves (PSPNet-ResNet18: 0.96-1.04x at 32 x 32, 1.04-1.11x at 48 x 48 and 64 x 64;
  // ResNet-101: 1.07x at 32 x 32, 1.09-1.17x at 64 x 64; bench/README.md).
  return mode == 1 || x.size(0) * ho * wo >= 1024;
}

void PPMImpl::DropWeightCopies() {
  if (main_) main_->Prepack(false);
  branch_kernel_ = torch::Tensor();
  weight_stamp_ = bias_stamp_ = WeightStamp();
}

void PPMImpl::EnsureParts(Conv2dImpl& conv) {
  const torch::Tensor& w = conv.weight;
  const torch::Tensor& b = conv.bias;
  const bool same = main_ && branch_kernel_.defined() && weight_stamp_.Matches(w) && main_->bias.defined() == b.defined() &&
                    (!b.defined() || bias_stamp_.Matches(b)) && main_->weight.scalar_type() == w.scalar_type() &&
                    main_->prepacked() == conv.prepacked();
  if (same) return;
  // Normal tensors, not inference ones (which have no version counter, and kernel transforms kept by main_ are
  // stamped with their weight's version), without gradients.
  c10::InferenceMode normal(false);
  torch::NoGradGuard no_grad;
  const int64_t C0 = options_.in_channels(), K = w.size(0), kh = w.size(2), kw = w.size(3);
  if (!main_ || main_->bias.defined() != b.defined()) {
    // Made once (the kernel's shape never changes); its initial values are overwritten below.
    int64_t ph = 0, pw = 0;
    conv.ZeroPaddingValues(&ph, &pw);
    main_ = Conv2d(nn::Conv2dOptions(C0, K, {kh, kw}).padding({ph, pw}).dilation(*conv.options.dilation()).bias(b.defined()));
    main_->eval();
    for (auto& p : main_->parameters()) p.set_requires_grad(false);
  }
  main_->weight.set_data(w.detach().slice(1, 0, C0).contiguous(w.suggest_memory_format()));
  if (b.defined()) main_->bias.set_data(b.detach().clone());
  main_->Prepack(conv.prepacked());
  // [K, bins Cb, kh, kw] -> [bins, Cb, kh kw K]
  const int64_t bins = static_cast<int64_t>(branches_.size()), Cb = options_.channels();
  branch_kernel_ = w.detach().slice(1, C0).to(at::kFloat).reshape({K, bins, Cb, kh * kw}).permute({1, 2, 3, 0}).reshape({bins, Cb, kh * kw * K}).contiguous();
  weight_stamp_.Set(w);
  if (b.defined()) bias_stamp_.Set(b);
}

torch::Tensor PPMImpl::ForwardHead(const torch::Tensor& x, nn::SequentialImpl& head) {
  if (!SplitApplies(x, head)) return ForwardSequential(head, forward(x));
  auto& conv = *head.ptr(0)->as<Conv2dImpl>();
  EnsureParts(conv);
  const bool align = options_.align_corners();
  const int64_t N = x.size(0), H = x.size(2), W = x.size(3);
  const int64_t K = conv.weight.size(0), kh = conv.weight.size(2), kw = conv.weight.size(3), Cb = options_.channels();
  int64_t ph = 0, pw = 0;
  conv.ZeroPaddingValues(&ph, &pw);
  const auto& dl = *conv.options.dilation();
  const int64_t Ho = ConvOutputSize(H, kh, ph, dl[0]), Wo = ConvOutputSize(W, kw, pw, dl[1]);
  // Each branch's share of the convolution: Z_ij = W_ij p on its pooled s x t map (float32), resized along the columns
  // and the rows by the resize's weights shifted by the tap (i, j), summed over the taps and the branches.
  const std::vector<torch::Tensor> pooled = Branches(x);
  torch::Tensor add;
  {
    // In float32: not autocast's bf16 (which would cast the kernel on every call and round the sums).
    c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::DispatchKey::AutocastCPU);
    // Every branch's Z = p W_b in one batched product, the pooled maps padded to the largest's pixels.
    int64_t most = 0;
    for (const auto& p : pooled) most = std::max(most, p.size(2) * p.size(3));
    torch::Tensor ps = at::zeros({static_cast<int64_t>(pooled.size()), N * most, Cb}, x.options().dtype(at::kFloat));
    for (size_t b = 0; b < pooled.size(); ++b) {
      const torch::Tensor& p = pooled[b];
      const int64_t st = p.size(2) * p.size(3);
      ps[static_cast<int64_t>(b)].view({N, most, Cb}).narrow(1, 0, st).copy_(p.permute({0, 2, 3, 1}).reshape({N, st, Cb}));
    }
    const torch::Tensor zs = at::bmm(ps, branch_kernel_);  // [bins, N most, kh kw K]
    // Along the columns per tap j (summed over j), into [L = sum kh s, N, Wo, K]; then along the rows per tap i with
    // every branch in one product: [Ho, L] x [L, N Wo K].
    int64_t L = 0;
    for (const auto& p : pooled) L += kh * p.size(2);
    torch::Tensor c = at::empty({L, N, Wo, K}, x.options().dtype(at::kFloat));
    torch::Tensor r = at::zeros({Ho, L}, x.options().dtype(at::kFloat));
    int64_t offset = 0;
    for (size_t b = 0; b < pooled.size(); ++b) {
      const int64_t s = pooled[b].size(2), t = pooled[b].size(3);
      // [N, s, t, kh, kw, K] -> [kh, s, N, kw t, K]
      const torch::Tensor z = zs[static_cast<int64_t>(b)].view({N, most, kh * kw * K}).narrow(1, 0, s * t)
                                  .reshape({N, s, t, kh, kw, K}).permute({3, 1, 0, 4, 2, 5}).reshape({kh * s * N, kw * t, K});
      const torch::Tensor cols = ShiftedResize(t, W, kw, pw, dl[1], Wo, align);  // [Wo, kw t]
      torch::Tensor out = c.narrow(0, offset, kh * s).view({kh * s * N, Wo, K});
      at::bmm_out(out, cols.unsqueeze(0).expand({kh * s * N, Wo, kw * t}), z);
      r.narrow(1, offset, kh * s).copy_(ShiftedResize(s, H, kh, ph, dl[0], Ho, align));
      offset += kh * s;
    }
    // [Ho, N, Wo, K] -> [N, K, Ho, Wo], channels-last where N is 1 (else made so: the fused addition needs the layout).
    add = at::mm(r, c.view({L, N * Wo * K})).view({Ho, N, Wo, K}).permute({1, 3, 0, 2});
    if (N > 1) add = add.contiguous(at::MemoryFormat::ChannelsLast);
  }
  // The convolution's output type: bf16 under CPU autocast, else its weight's.
  const at::ScalarType type = CpuAutocastIs(at::kBFloat16) ? at::kBFloat16 : main_->weight.scalar_type();
  if (add.scalar_type() != type) add = add.to(type);
  auto* bn = head.size() > 1 ? head.ptr(1)->as<BatchNorm2dImpl>() : nullptr;
  const size_t relu_at = bn != nullptr ? 2 : 1;
  const bool relu = relu_at < head.size() && head.ptr(relu_at)->as<nn::ReLUImpl>() != nullptr;
  if (bn == nullptr || bn->folded()) {
    torch::Tensor y = main_->ForwardAct(x, relu ? Activation::kReLU : Activation::kNone, std::move(add));
    return ForwardSequential(head, std::move(y), relu ? relu_at + 1 : relu_at);
  }
  return ForwardSequential(head, main_->ForwardAct(x, Activation::kNone, std::move(add)), 1);
}

}  // namespace segtorch
