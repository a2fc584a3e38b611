// A process group over c10d, torch.distributed's C++ engine: a TCPStore rendezvous (ours on rank 0,
// or torchrun's agent store), ProcessGroupGloo (CPU tensors) or ProcessGroupNCCL (CUDA tensors,
// where this libtorch has it). Plain C++: the c10d and gloo headers stay in process_group.cc (the
// only file compiled with them), so that the rest of segtorch builds without them. Collectives block
// the calling thread (an executor thread) for at most `timeout_ms`; a failure names this rank, the
// operation and, when it can tell, the rank that died (a process of this machine that has exited).
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace segtorch {
namespace dist {

// Every field given by the caller (lib/distributed.ts fills the defaults from torchrun's environment).
struct GroupOptions {
  std::string backend;  // gloo | nccl
  int64_t rank{}, world_size{}, local_rank{}, local_world_size{};
  std::string master_addr;
  int64_t master_port{};
  // torchrun's agent hosts the store (TORCHELASTIC_USE_AGENT_STORE): every rank is a client, keys
  // under /worker/attempt_<restart_count>/.
  bool agent_store{};
  int64_t restart_count{};
  int64_t timeout_ms{};
};

// Whether this build has c10d and which backends; `why` says what is missing when it has none.
// A sum all-reduce started by ProcessGroup::StartAllReduceSum and finished by WaitAll.
struct PendingReduce;
using Pending = std::shared_ptr<PendingReduce>;

struct Availability {
  bool c10d = false, gloo = false, nccl = false;
  std::string why;
};
Availability Available();

class ProcessGroup {
 public:
  // The rendezvous: returns once every rank has joined (or throws after timeout_ms).
  explicit ProcessGroup(const GroupOptions& options);
  ~ProcessGroup();
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

  int64_t rank() const { return options_.rank; }
  int64_t world_size() const { return options_.world_size; }
  const GroupOptions& options() const { return options_; }
  // How the ranks met: "tcp store (rank 0)", "torchrun agent store", "file store ...", "tcp store on port ...".
  const std::string& rendezvous() const { return rendezvous_; }

  // In place, every rank the same tensors in the same order. `what` names the operation in errors.
  // Sum of each tensor over the ranks; the calls are issued together and then waited for.
  void AllReduceSum(std::vector<at::Tensor>& tensors, const std::string& what);
  // Starts the sum all-reduce of `tensor`, in place, and returns at once (the backend runs it on its
  // own threads; Gloo's are idle while the caller computes): `tensor` must stay alive and untouched
  // until WaitAll. Every rank starts the same reductions in the same order.
  Pending StartAllReduceSum(const at::Tensor& tensor, const std::string& what);
  // Waits for each (at most timeout_ms each); the first failure throws, naming its operation.
  void WaitAll(const std::vector<Pending>& pending);
  void AllReduceMax(at::Tensor& tensor, const std::string& what);
  // rank `root`'s values to every rank (each tensor).
  void Broadcast(std::vector<at::Tensor>& tensors, int64_t root, const std::string& what);
  void Barrier(const std::string& what);
  // Every rank's `mine`, by rank (through the store: for small strings such as model signatures).
  std::vector<std::string> AllGatherStrings(const std::string& mine, const std::string& what);

  // Bytes all-reduced since the group was made, and seconds spent waiting for them (for bench/).
  int64_t reduced_bytes() const { return reduced_bytes_; }
  double reduce_seconds() const { return reduce_seconds_; }
  // Bytes of those whose reduction was started during a backward pass (DataParallel's gradient
  // buckets issued from autograd hooks: communication overlapping computation).
  int64_t overlapped_bytes() const { return overlapped_bytes_; }
  void CountOverlapped(int64_t bytes) { overlapped_bytes_ += bytes; }

 private:
  struct Impl;
  [[noreturn]] void Fail(const std::string& what, const std::string& message);
  void CheckUsable(const std::string& what) const;

  GroupOptions options_;
  std::unique_ptr<Impl> impl_;
  std::string rendezvous_;
  std::string failed_;  // the first collective error: the group is unusable after it
  int64_t gather_calls_ = 0;
  int64_t reduced_bytes_ = 0;
  int64_t overlapped_bytes_ = 0;
  double reduce_seconds_ = 0;
};

// The process's group (torch.distributed's default group): set by distributed.init(), cleared by
// destroy(). Default() throws when there is none.
std::shared_ptr<ProcessGroup> Default();
std::shared_ptr<ProcessGroup> DefaultOrNull();
void SetDefault(std::shared_ptr<ProcessGroup> group);

}  // namespace dist
}  // namespace segtorch
