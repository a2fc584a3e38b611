#include "base/alloc_budget.h"

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>

#include <cstring>
#include <string>

#include "base/errors.h"

namespace segtorch {

namespace {

thread_local int64_t tl_left = -1;  // bytes left in the current budget; -1: no budget
thread_local int64_t tl_total = 0;  // the budget's size
thread_local const char* tl_what = "";

// Forwards to the allocator that was installed before it. libtorch 1.13 declares allocate() const,
// 2.x non-const and adds a pure copy_data(): both signatures are provided (without `override`) so the
// same class compiles against both.
class BudgetAllocator final : public c10::Allocator {
 public:
  explicit BudgetAllocator(c10::Allocator* base) : base_(base) {}
  c10::DataPtr allocate(size_t n) const { return Charge(n); }
  c10::DataPtr allocate(size_t n) { return Charge(n); }
  c10::DeleterFnPtr raw_deleter() const override { return base_->raw_deleter(); }
  void copy_data(void* dest, const void* src, std::size_t count) const { std::memcpy(dest, src, count); }

 private:
  c10::DataPtr Charge(size_t n) const {
    if (tl_left >= 0) {
      if (static_cast<uint64_t>(n) > static_cast<uint64_t>(tl_left)) {
        int64_t total = tl_total;
        tl_left = -1;  // the error path may allocate (messages, unwinding)
        ThrowRange(std::string(tl_what) + " needs more memory than allowed: over " + std::to_string(total >> 20) +
                   " MiB while building it (an allocation of " + std::to_string(n >> 20) + " MiB was refused)");
      }
      tl_left -= static_cast<int64_t>(n);
    }
    return base_->allocate(n);
  }
  c10::Allocator* base_;
};

bool Install() {
  c10::Allocator* base = c10::GetCPUAllocator();
  if (!base) return false;
  static BudgetAllocator wrapper(base);
  // Priority: above the default registration, so later default registrations do not replace it.
  c10::SetCPUAllocator(&wrapper, /*priority=*/1);
  return c10::GetCPUAllocator() == &wrapper;
}

// Installed when the addon is loaded, before any other thread of ours allocates.
const bool g_installed = Install();

}  // namespace

AllocationBudget::AllocationBudget(int64_t bytes, const char* what)
    : saved_left_(tl_left), saved_what_(tl_what), saved_total_(tl_total) {
  if (bytes > 0) {
    tl_left = bytes;
    tl_total = bytes;
    tl_what = what;
  }
}

AllocationBudget::~AllocationBudget() {
  tl_left = saved_left_;
  tl_what = saved_what_;
  tl_total = saved_total_;
}

bool AllocationBudgetAvailable() { return g_installed; }

}  // namespace segtorch
