#include "dist/data_parallel.h"

#include <map>
#include <sstream>
#include <tuple>

#include "base/errors.h"
#include "dist/sync_batch_norm.h"

namespace segtorch {
namespace dist {

namespace {

std::string Shape(const torch::Tensor& t) {
  std::ostringstream s;
  s << "[";
  for (int64_t i = 0; i < t.dim(); ++i) s << (i ? "," : "") << t.size(i);
  s << "]";
  return s.str();
}

// One line per parameter and buffer: "name shape dtype", the first line the caller's description.
std::vector<std::string> Signature(torch::nn::Module& net, const std::string& description) {
  std::vector<std::string> lines{"model " + description};
  for (auto& kv : net.named_parameters()) {
    lines.push_back("parameter " + kv.key() + " " + Shape(kv.value()) + " " + std::string(c10::toString(kv.value().scalar_type())) +
                    (kv.value().requires_grad() ? "" : " frozen"));
  }
  for (auto& kv : net.named_buffers()) {
    lines.push_back("buffer " + kv.key() + " " + Shape(kv.value()) + " " + std::string(c10::toString(kv.value().scalar_type())));
  }
  return lines;
}

std::string Join(const std::vector<std::string>& v) {
  std::string s;
  for (auto& l : v) s += l + "\n";
  return s;
}

std::vector<std::string> Split(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  std::string l;
  while (std::getline(in, l)) out.push_back(l);
  return out;
}

size_t Count(const std::vector<std::string>& lines, const std::string& kind) {
  size_t n = 0;
  for (auto& l : lines) n += l.rfind(kind, 0) == 0;
  return n;
}

// The same verdict on every rank: each compares every rank's signature with rank 0's.
void CheckSameModel(ProcessGroup& g, torch::nn::Module& net, const std::string& description) {
  std::vector<std::string> all = g.AllGatherStrings(Join(Signature(net, description)), "comparing the model between ranks");
  std::vector<std::string> ref = Split(all[0]);
  for (size_t r = 1; r < all.size(); ++r) {
    if (all[r] == all[0]) continue;
    std::vector<std::string> other = Split(all[r]);
    std::string m = "distributed: the model differs between ranks: rank " + std::to_string(r) + " has " +
                    std::to_string(Count(other, "parameter ")) + " parameters and " + std::to_string(Count(other, "buffer ")) +
                    " buffers, rank 0 has " + std::to_string(Count(ref, "parameter ")) + " and " + std::to_string(Count(ref, "buffer ")) +
                    "; first difference: ";
    size_t i = 0;
    while (i < ref.size() && i < other.size() && ref[i] == other[i]) ++i;
    m += "rank 0 '" + (i < ref.size() ? ref[i] : std::string("(nothing more)")) + "', rank " + std::to_string(r) + " '" +
         (i < other.size() ? other[i] : std::string("(nothing more)")) + "'. Every rank must create the same model (options, classes, backbone).";
    ThrowError(m);
  }
}

}  // namespace

void BroadcastTensors(ProcessGroup& group, const std::vector<torch::Tensor>& tensors, int64_t root, const std::string& what) {
  if (group.world_size() < 2 || tensors.empty()) return;
  torch::NoGradGuard no_grad;
  // Grouped by dtype and device, in order: one flat buffer (and one broadcast) per group.
  std::map<std::tuple<int, int, int>, std::vector<size_t>> groups;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& t = tensors[i];
    groups[std::make_tuple(static_cast<int>(t.scalar_type()), static_cast<int>(t.device().type()), static_cast<int>(t.device().index()))].push_back(i);
  }
  std::vector<torch::Tensor> flats;
  std::vector<std::vector<size_t>> members;
  for (auto& kv : groups) {
    std::vector<torch::Tensor> parts;
    for (size_t i : kv.second) parts.push_back(tensors[i].detach().reshape({-1}));
    flats.push_back(torch::cat(parts));
    members.push_back(kv.second);
  }
  group.Broadcast(flats, root, what);
  if (group.rank() == root) return;
  for (size_t b = 0; b < flats.size(); ++b) {
    int64_t offset = 0;
    for (size_t i : members[b]) {
      torch::Tensor t = tensors[i];
      int64_t n = t.numel();
      t.detach().copy_(flats[b].narrow(0, offset, n).view(t.sizes()));
      offset += n;
    }
  }
}

DataParallel::DataParallel(std::shared_ptr<ProcessGroup> group, torch::nn::Module& net, const DataParallelOptions& options)
    : group_(std::move(group)), options_(options) {
  if (options_.bucket_bytes < 1) ThrowRange("Expected bucket bytes >= 1");
  CheckSameModel(*group_, net, options_.description);
  std::vector<torch::Tensor> state = net.parameters();
  for (auto& b : net.buffers()) state.push_back(b);
  BroadcastTensors(*group_, state, 0, "copying rank 0's parameters and buffers to every rank");
  SetSyncBatchNorm(net, options_.sync_batch_norm ? group_ : nullptr);
}

void DataParallel::BeforeForward(torch::nn::Module& net) {
  if (!options_.broadcast_buffers || group_->world_size() < 2) return;
  std::vector<torch::Tensor> buffers = net.buffers();
  if (!buffers.empty()) BroadcastTensors(*group_, buffers, 0, "copying rank 0's buffers (batch-norm statistics) before a forward pass");
}

void DataParallel::ReduceGradients(const std::vector<torch::Tensor>& all) {
  ++steps_;
  if (group_->world_size() < 2) return;
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> params;
  for (auto& p : all)
    if (p.requires_grad()) params.push_back(p);
  if (buckets_.empty()) {
    // Reverse registration order, a new bucket when the dtype or device changes or the cap is reached.
    std::vector<size_t> current;
    int64_t bytes = 0;
    for (size_t k = params.size(); k-- > 0;) {
      const auto& p = params[k];
      bool same = current.empty() || (params[current[0]].scalar_type() == p.scalar_type() && params[current[0]].device() == p.device());
      int64_t b = p.numel() * static_cast<int64_t>(p.element_size());
      if (!current.empty() && (!same || bytes + b > options_.bucket_bytes)) {
        buckets_.push_back(current);
        current.clear();
        bytes = 0;
      }
      current.push_back(k);
      bytes += b;
    }
    if (!current.empty()) buckets_.push_back(current);
  }
  // Which parameters have a gradient on this rank (summed: on how many ranks).
  torch::Tensor flags = torch::zeros({static_cast<int64_t>(params.size())}, torch::kFloat);
  auto f = flags.accessor<float, 1>();
  for (size_t k = 0; k < params.size(); ++k) f[k] = params[k].grad().defined() ? 1.f : 0.f;
  if (!params.empty() && params[0].device() != flags.device()) flags = flags.to(params[0].device());
  std::vector<torch::Tensor> tensors{flags};
  for (auto& bucket : buckets_) {
    std::vector<torch::Tensor> parts;
    for (size_t k : bucket) {
      const auto& p = params[k];
      parts.push_back(p.grad().defined() ? p.grad().reshape({-1}) : torch::zeros({p.numel()}, p.options()));
    }
    tensors.push_back(torch::cat(parts));
  }
  last_bytes_ = 0;
  for (auto& t : tensors) last_bytes_ += t.numel() * static_cast<int64_t>(t.element_size());
  group_->AllReduceSum(tensors, "all-reduce of the gradients (optimizer step " + std::to_string(steps_) + ")");
  torch::Tensor present = tensors[0].to(torch::kCPU);
  auto pf = present.accessor<float, 1>();
  double inv = 1.0 / static_cast<double>(group_->world_size());
  for (size_t b = 0; b < buckets_.size(); ++b) {
    torch::Tensor flat = tensors[b + 1].mul_(inv);
    int64_t offset = 0;
    for (size_t k : buckets_[b]) {
      auto& p = params[k];
      int64_t n = p.numel();
      if (pf[k] > 0) p.mutable_grad() = flat.narrow(0, offset, n).view(p.sizes());
      offset += n;
    }
  }
}

}  // namespace dist
}  // namespace segtorch
