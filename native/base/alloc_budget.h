// A per-thread cap on CPU memory that libtorch allocates, used while a network is built from a file's
// configuration: a configuration edited to, say, 1024 base channels must fail with a clear error, not
// allocate gigabytes. Plain C++ over c10's allocator interface.
//
// At load time segtorch wraps libtorch's CPU allocator (c10::SetCPUAllocator) with one that forwards
// every request (large blocks through a cache, below); only on a thread inside an AllocationBudget scope does it count bytes and throw a
// RangeError (UserError) once the budget would be exceeded. Other threads pay one thread-local read.
#pragma once
#include <cstddef>
#include <cstdint>

namespace segtorch {

class AllocationBudget {
 public:
  // bytes <= 0: no limit. `what` names the thing being built, for the error message.
  AllocationBudget(int64_t bytes, const char* what);
  ~AllocationBudget();
  AllocationBudget(const AllocationBudget&) = delete;
  AllocationBudget& operator=(const AllocationBudget&) = delete;

 private:
  int64_t saved_left_;
  const char* saved_what_;
  int64_t saved_total_;
};

// Whether the wrapping allocator is installed (false if libtorch's allocator could not be wrapped).
bool AllocationBudgetAvailable();

// The same wrapper keeps freed CPU blocks of 128 KiB or more for reuse (glibc would return them to
// the system and page-fault them in again on the next forward pass), up to a limit:
// SEGTORCH_CPU_CACHE_MB, default an eighth of the physical memory and at most 2 GiB; 0 turns it off.
struct CpuCacheStats {
  size_t limit_bytes;   // the most kept for reuse
  size_t cached_bytes;  // kept for reuse now
  size_t in_use_bytes;  // large blocks held by tensors now
  uint64_t hits;        // large requests served from the cache
  uint64_t misses;      // large requests served by the system allocator
};
CpuCacheStats GetCpuCacheStats();
// Returns every cached block to the system allocator (blocks in use are not affected).
void EmptyCpuCache();

}  // namespace segtorch
