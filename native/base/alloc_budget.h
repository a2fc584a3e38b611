// A per-thread cap on CPU memory that libtorch allocates, used while a network is built from a file's
// configuration: a configuration edited to, say, 1024 base channels must fail with a clear error, not
// allocate gigabytes. Plain C++ over c10's allocator interface.
//
// At load time segtorch wraps libtorch's CPU allocator (c10::SetCPUAllocator) with one that forwards
// every request; only on a thread inside an AllocationBudget scope does it count bytes and throw a
// RangeError (UserError) once the budget would be exceeded. Other threads pay one thread-local read.
#pragma once
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

}  // namespace segtorch
