#include "dist/data_parallel.h"

#include <map>
#include <mutex>
#include <sstream>
#include <tuple>

#include "base/errors.h"
#include "dist/sync_batch_norm.h"
#include "io/module_state.h"

namespace segtorch {
namespace dist {

namespace {

// One line per parameter and buffer: "name shape dtype", the first line the caller's description.
std::vector<std::string> Signature(torch::nn::Module& net, const std::string& description) {
  std::vector<std::string> lines{"model " + description};
  for (auto& kv : net.named_parameters()) {
    lines.push_back("parameter " + kv.key() + " " + ShapeString(kv.value().sizes()) + " " + std::string(c10::toString(kv.value().scalar_type())) +
                    (kv.value().requires_grad() ? "" : " frozen"));
  }
  for (auto& kv : net.named_buffers()) {
    lines.push_back("buffer " + kv.key() + " " + ShapeString(kv.value().sizes()) + " " + std::string(c10::toString(kv.value().scalar_type())));
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

// The error of a step that some rank could not take: which ranks had a non-finite loss (this one's
// value when it is among them) or non-finite gradients from a finite one; lists like "0, 2".
std::string NonFiniteStep(int64_t step, const std::string& bad_losses, const std::string& bad_gradients, bool mine, double bad_loss) {
  auto ranks = [](const std::string& list) { return std::string(list.find(',') == std::string::npos ? " rank " : " ranks ") + list; };
  std::string m = "training step " + std::to_string(step) + " produced ";
  if (!bad_losses.empty()) {
    m += "a non-finite loss on" + ranks(bad_losses);
    if (mine) m += " (this rank: " + std::to_string(bad_loss) + ")";
  }
  if (!bad_gradients.empty()) m += std::string(bad_losses.empty() ? "" : " and ") + "non-finite gradients from a finite loss on" + ranks(bad_gradients);
  return m + "; no rank updated its weights. Lower the learning rate, clip the gradients (clipGradNorm) or check the data.";
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

// The gradient exchange of one optimizer step. The hooks (one per trainable parameter) call Arrive
// from the backward (on CPU the thread that called backward; on CUDA autograd's device thread), the
// step thread calls Arm and Finish: a mutex orders them.
struct DataParallel::Reducer {
  std::shared_ptr<ProcessGroup> group;
  int64_t bucket_bytes = 0;
  std::mutex mu;
  // Set by Arm for the last micro-batch's backward, cleared by Finish and by the next forward.
  bool armed = false;
  std::vector<torch::Tensor> params;            // the trainable parameters, registration order
  std::vector<std::pair<torch::Tensor, unsigned>> hooks;  // (parameter, hook handle) to remove
  std::vector<std::vector<size_t>> buckets;     // indices into params, reverse registration order
  std::vector<size_t> bucket_of, offset_of;     // per parameter: its bucket and offset in it
  // This step:
  std::vector<torch::Tensor> flats;             // per bucket: its gradients, flat
  std::vector<int64_t> waiting;                 // per bucket: parameters still to arrive
  std::vector<char> arrived;                    // per parameter
  std::vector<Pending> pending;                 // issued, in bucket order
  size_t next = 0;                              // the next bucket to issue
  bool non_finite = false;
  double bad_loss = 0;
  bool check_finite = false;                    // this step: check each bucket before it is issued
  torch::Tensor finite;                         // this step: every issued bucket was finite (on the device)
  std::string error;                            // a failure inside a hook (raised by Finish)
  int64_t steps = 0;

  std::string What() const { return "all-reduce of the gradients (optimizer step " + std::to_string(steps + 1) + ")"; }

  // The trainable parameters changed (first step, or a part was frozen or unfrozen): new buckets
  // and hooks.
  void Build(const std::vector<torch::Tensor>& trainable, const std::weak_ptr<Reducer>& self) {
    for (auto& h : hooks) h.first.remove_hook(h.second);
    hooks.clear();
    params = trainable;
    buckets.clear();
    // Reverse registration order, a new bucket when the dtype or device changes or the cap is reached.
    std::vector<size_t> current;
    int64_t bytes = 0;
    for (size_t k = params.size(); k-- > 0;) {
      const auto& p = params[k];
      bool same = current.empty() || (params[current[0]].scalar_type() == p.scalar_type() && params[current[0]].device() == p.device());
      int64_t b = p.numel() * static_cast<int64_t>(p.element_size());
      if (!current.empty() && (!same || bytes + b > bucket_bytes)) {
        buckets.push_back(current);
        current.clear();
        bytes = 0;
      }
      current.push_back(k);
      bytes += b;
    }
    if (!current.empty()) buckets.push_back(current);
    bucket_of.assign(params.size(), 0);
    offset_of.assign(params.size(), 0);
    for (size_t b = 0; b < buckets.size(); ++b) {
      int64_t offset = 0;
      for (size_t k : buckets[b]) {
        bucket_of[k] = b;
        offset_of[k] = static_cast<size_t>(offset);
        offset += params[k].numel();
      }
    }
    for (size_t k = 0; k < params.size(); ++k) {
      unsigned h = params[k].register_hook([self, k](const torch::Tensor& grad) {
        if (auto r = self.lock()) r->Arrive(k, grad);
      });
      hooks.emplace_back(params[k], h);
    }
  }

  bool Same(const std::vector<torch::Tensor>& trainable) const {
    if (trainable.size() != params.size()) return false;
    for (size_t k = 0; k < params.size(); ++k)
      if (!trainable[k].is_same(params[k])) return false;
    return true;
  }

  void Arm() {
    flats.clear();
    waiting.clear();
    for (auto& bucket : buckets) {
      int64_t n = 0;
      for (size_t k : bucket) n += params[k].numel();
      flats.push_back(torch::empty({n}, params[bucket[0]].options().requires_grad(false)));
      waiting.push_back(static_cast<int64_t>(bucket.size()));
    }
    arrived.assign(params.size(), 0);
    finite = torch::Tensor();
    pending.clear();
    next = 0;
    armed = true;
  }

  // The gradient that parameter k will hold after this backward: what earlier micro-batches
  // accumulated plus this one's.
  void Place(size_t k, const torch::Tensor& grad) {
    const auto& p = params[k];
    torch::Tensor slot = flats[bucket_of[k]].narrow(0, static_cast<int64_t>(offset_of[k]), p.numel()).view(p.sizes());
    if (!grad.defined()) {
      slot.zero_();
    } else if (p.grad().defined() && grad.unsafeGetTensorImpl() != p.grad().unsafeGetTensorImpl()) {
      torch::add_out(slot, p.grad(), grad);
    } else {
      slot.copy_(grad);
    }
    arrived[k] = 1;
    --waiting[bucket_of[k]];
  }

  // Issues the ready buckets that come next in order (a bucket waits for the ones before it: every
  // rank issues the same reductions in the same order).
  void IssueReady(bool overlapped) {
    while (next < buckets.size() && waiting[next] == 0) {
      if (check_finite) {  // before the reduction overwrites this rank's gradients; no host sync here
        // As train/step.cc's GradientsFinite: a finite sum (one read of the bucket, 17x cheaper than isfinite().all()).
        torch::Tensor f = torch::isfinite(flats[next].sum());
        finite = finite.defined() ? finite.logical_and(f) : f;
      }
      pending.push_back(group->StartAllReduceSum(flats[next], What()));
      if (overlapped) group->CountOverlapped(flats[next].numel() * static_cast<int64_t>(flats[next].element_size()));
      ++next;
    }
  }

  void Arrive(size_t k, const torch::Tensor& grad) {
    std::lock_guard<std::mutex> lock(mu);
    if (!armed || !error.empty()) return;
    try {
      torch::NoGradGuard no_grad;
      if (arrived[k]) {
        error = "parameter " + std::to_string(k) + " received two gradients in one backward pass";
        return;
      }
      Place(k, grad);
      IssueReady(true);
    } catch (const std::exception& e) {
      error = CleanMessage(e);  // raised by Finish, on the step's thread (never through autograd)
    }
  }
};

DataParallel::DataParallel(std::shared_ptr<ProcessGroup> group, torch::nn::Module& net, const DataParallelOptions& options)
    : group_(std::move(group)), options_(options), reducer_(std::make_shared<Reducer>()) {
  if (options_.bucket_bytes < 1) ThrowRange("Expected bucket bytes >= 1");
  reducer_->group = group_;
  reducer_->bucket_bytes = options_.bucket_bytes;
  CheckSameModel(*group_, net, options_.description);
  std::vector<torch::Tensor> state = net.parameters();
  for (auto& b : net.buffers()) state.push_back(b);
  BroadcastTensors(*group_, state, 0, "copying rank 0's parameters and buffers to every rank");
  SetSyncBatchNorm(net, options_.sync_batch_norm ? group_ : nullptr);
}

DataParallel::~DataParallel() {
  std::lock_guard<std::mutex> lock(reducer_->mu);
  reducer_->armed = false;
  for (auto& h : reducer_->hooks) h.first.remove_hook(h.second);
  reducer_->hooks.clear();
}

void DataParallel::BeforeForward(torch::nn::Module& net) {
  {
    std::lock_guard<std::mutex> lock(reducer_->mu);
    reducer_->armed = false;  // a backward that threw before its exchange leaves nothing armed
  }
  if (!options_.broadcast_buffers || group_->world_size() < 2) return;
  std::vector<torch::Tensor> buffers = net.buffers();
  if (!buffers.empty()) BroadcastTensors(*group_, buffers, 0, "copying rank 0's buffers (batch-norm statistics) before a forward pass");
}

namespace {
std::vector<torch::Tensor> Trainable(const std::vector<torch::Tensor>& all) {
  std::vector<torch::Tensor> out;
  for (auto& p : all)
    if (p.requires_grad()) out.push_back(p);
  return out;
}
}  // namespace

void DataParallel::BeforeBackward(torch::nn::Module& net, bool last_micro_batch, bool check_finite) {
  if (!last_micro_batch || group_->world_size() < 2) return;
  Reducer& r = *reducer_;
  std::lock_guard<std::mutex> lock(r.mu);
  std::vector<torch::Tensor> trainable = Trainable(net.parameters());
  if (r.hooks.empty() || !r.Same(trainable)) r.Build(trainable, reducer_);
  r.error.clear();
  r.Arm();
  r.check_finite = check_finite;
}

int64_t DataParallel::WorldSize() const { return group_->world_size(); }

void DataParallel::NonFiniteLoss(double loss) {
  std::lock_guard<std::mutex> lock(reducer_->mu);
  if (!reducer_->non_finite) reducer_->bad_loss = loss;
  reducer_->non_finite = true;
}

void DataParallel::ReduceGradients(const std::vector<torch::Tensor>& all) {
  Reducer& r = *reducer_;
  std::unique_lock<std::mutex> lock(r.mu);
  bool non_finite = r.non_finite;
  double bad_loss = r.bad_loss;
  r.non_finite = false;
  if (group_->world_size() < 2) {
    r.steps++;
    r.armed = false;
    if (non_finite) ThrowError(NonFiniteStep(r.steps, "0", "", true, bad_loss));  // as with more ranks (the step skipped this backward)
    return;
  }
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> trainable = Trainable(all);
  if (!r.armed) {
    // No hooked backward this step (this rank's loss was not finite, or the trainable set changed
    // after it): everything is placed now.
    if (r.hooks.empty() || !r.Same(trainable)) r.Build(trainable, reducer_);
    r.Arm();
    r.check_finite = false;  // this rank is already flagged (its loss)
  }
  r.armed = false;
  const std::string what = r.What();
  if (!r.error.empty()) ThrowError("distributed: rank " + std::to_string(group_->rank()) + ": " + what + " failed: " + r.error);
  // Parameters without a gradient from this backward: what earlier micro-batches left, or zeros.
  std::vector<float> present(r.params.size() + static_cast<size_t>(group_->world_size()), 0.f);
  for (size_t k = 0; k < r.params.size(); ++k) {
    present[k] = r.arrived[k] || r.params[k].grad().defined() ? 1.f : 0.f;
    if (!r.arrived[k]) r.Place(k, r.params[k].grad());
  }
  r.IssueReady(false);
  // Which parameters have a gradient (summed: on how many ranks), and per rank (each writes its own
  // slot): 1 its loss was not finite, 2 its gradients were not (from a finite loss).
  const int64_t mine = static_cast<int64_t>(r.params.size()) + group_->rank();
  present[static_cast<size_t>(mine)] = non_finite ? 1.f : 0.f;
  torch::Tensor flags = torch::tensor(present, torch::kFloat);
  if (!r.params.empty() && r.params[0].device() != flags.device()) flags = flags.to(r.params[0].device());
  if (!non_finite && r.check_finite && r.finite.defined())
    flags.narrow(0, mine, 1).add_(r.finite.logical_not().to(torch::kFloat).mul(2).view({1}));
  r.pending.push_back(group_->StartAllReduceSum(flags, what));
  std::vector<Pending> pending = std::move(r.pending);
  r.pending.clear();
  r.steps++;
  group_->WaitAll(pending);
  torch::Tensor summed = flags.to(torch::kCPU);
  auto pf = summed.accessor<float, 1>();
  std::string bad_losses, bad_gradients;
  for (int64_t q = 0; q < group_->world_size(); ++q) {
    float v = pf[static_cast<int64_t>(r.params.size()) + q];
    std::string& list = v > 1.5f ? bad_gradients : bad_losses;
    if (v > 0.5f) list += (list.empty() ? "" : ", ") + std::to_string(q);
  }
  if (!bad_losses.empty() || !bad_gradients.empty()) {
    for (auto& p : r.params) p.mutable_grad() = torch::Tensor();
    ThrowError(NonFiniteStep(r.steps, bad_losses, bad_gradients, non_finite, bad_loss));
  }
  double inv = 1.0 / static_cast<double>(group_->world_size());
  for (auto& flat : r.flats) flat.mul_(inv);
  for (size_t k = 0; k < r.params.size(); ++k) {
    auto& p = r.params[k];
    p.mutable_grad() = pf[static_cast<int64_t>(k)] > 0 ? r.flats[r.bucket_of[k]].narrow(0, static_cast<int64_t>(r.offset_of[k]), p.numel()).view(p.sizes())
                                                       : torch::Tensor();
  }
  r.flats.clear();
}

}  // namespace dist
}  // namespace segtorch
