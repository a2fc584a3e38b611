#include "base/alloc_budget.h"

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>

#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#endif

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>

#include "base/env.h"
#include "base/errors.h"

namespace segtorch {

namespace {

thread_local int64_t tl_left = -1;  // bytes left in the current budget; -1: no budget
thread_local int64_t tl_total = 0;  // the budget's size
thread_local const char* tl_what = "";

// The cache of large blocks. glibc serves blocks above its mmap threshold (128 KiB at first) with
// fresh mappings, so every activation of every forward pass is page-faulted in again (measured:
// 41,000 page faults and a third of the time of an MTRefineNet predict at 512x512). Freed blocks of
// at least kMinCached bytes are kept here instead, up to a limit, and handed out again for a
// request of their size or up to an eighth smaller. Never destroyed: deleters may run at exit.
constexpr size_t kMinCached = size_t{128} << 10;

// Under AddressSanitizer (scripts/sanitize.sh) cached blocks are poisoned, so that a use after free
// of a cached block is still reported.
#if defined(__SANITIZE_ADDRESS__)
void Poison(void* p, size_t n) { ASAN_POISON_MEMORY_REGION(p, n); }
void Unpoison(void* p, size_t n) { ASAN_UNPOISON_MEMORY_REGION(p, n); }
#else
void Poison(void*, size_t) {}
void Unpoison(void*, size_t) {}
#endif

struct Block {
  c10::DataPtr data;  // from the base allocator
  size_t capacity = 0;
};

struct BlockCache {
  std::mutex mu;
  c10::Allocator* base = nullptr;
  std::unordered_map<void*, Block> in_use;  // blocks handed out, by address
  std::multimap<size_t, Block> free;        // cached blocks, by capacity
  size_t free_bytes = 0, in_use_bytes = 0, limit = 0;
  uint64_t hits = 0, misses = 0;
};

BlockCache& Cache() {
  static BlockCache* cache = new BlockCache();  // never destroyed
  return *cache;
}

// SEGTORCH_CPU_CACHE_MB, a whole number of MiB up to 2^30 (0: no cache; anything else EnvInteger
// rejects, "-1" or "64M" included, keeps the default): an eighth of the physical memory, at most 2 GiB.
size_t CacheLimit() {
  const long mb = EnvInteger("SEGTORCH_CPU_CACHE_MB", -1, 0, 1L << 30);
  if (mb >= 0) return static_cast<size_t>(mb) << 20;
  long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  size_t physical = pages > 0 && page > 0 ? static_cast<size_t>(pages) * static_cast<size_t>(page) : 0;
  return std::min(physical / 8, size_t{2} << 30);
}

// The deleter of every block this allocator hands out, and its raw deleter: a cached block goes back
// to the cache (or to the base allocator beyond the limit); anything else (small blocks through
// raw_allocate) to the base allocator's raw deleter.
void CacheDelete(void* ptr) {
  BlockCache& c = Cache();
  Block dropped;  // released after the lock
  {
    std::lock_guard<std::mutex> lock(c.mu);
    auto it = c.in_use.find(ptr);
    if (it != c.in_use.end()) {
      Block b = std::move(it->second);
      c.in_use.erase(it);
      c.in_use_bytes -= b.capacity;
      if (c.free_bytes + b.capacity <= c.limit) {
        Poison(ptr, b.capacity);
        c.free_bytes += b.capacity;
        c.free.emplace(b.capacity, std::move(b));
      } else {
        dropped = std::move(b);
      }
      return;
    }
  }
  c10::DeleterFnPtr d = c.base->raw_deleter();
  if (d) d(ptr);
}

c10::DataPtr CachedAllocate(size_t n) {
  BlockCache& c = Cache();
  if (n < kMinCached || c.limit == 0) return c.base->allocate(n);
  void* ptr = nullptr;
  {
    std::lock_guard<std::mutex> lock(c.mu);
    auto it = c.free.lower_bound(n);
    if (it != c.free.end() && it->first <= n + n / 8) {
      Block b = std::move(it->second);
      c.free.erase(it);
      c.free_bytes -= b.capacity;
      c.in_use_bytes += b.capacity;
      ptr = b.data.get();
      Unpoison(ptr, b.capacity);
      c.in_use.emplace(ptr, std::move(b));
      ++c.hits;
    }
  }
  if (ptr == nullptr) {
    Block b{c.base->allocate(n), n};  // outside the lock: may take a while, may throw
    ptr = b.data.get();
    if (ptr == nullptr) return std::move(b.data);
    std::lock_guard<std::mutex> lock(c.mu);
    c.in_use_bytes += n;
    c.in_use.emplace(ptr, std::move(b));
    ++c.misses;
  }
  return c10::DataPtr(ptr, ptr, &CacheDelete, c10::Device(c10::DeviceType::CPU));
}

// Forwards to the allocator that was installed before it (large blocks through the cache). libtorch
// 1.13 declares allocate() const, 2.x non-const and adds a pure copy_data(): both signatures are
// provided (without `override`) so the same class compiles against both.
class BudgetAllocator final : public c10::Allocator {
 public:
  explicit BudgetAllocator(c10::Allocator* base) : base_(base) {}
  c10::DataPtr allocate(size_t n) const { return Charge(n); }
  c10::DataPtr allocate(size_t n) { return Charge(n); }
  c10::DeleterFnPtr raw_deleter() const override { return &CacheDelete; }
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
    return CachedAllocate(n);
  }
  c10::Allocator* base_;
};

bool Install() {
  c10::Allocator* base = c10::GetCPUAllocator();
  if (!base) return false;
  Cache().base = base;
  Cache().limit = CacheLimit();
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

CpuCacheStats GetCpuCacheStats() {
  BlockCache& c = Cache();
  std::lock_guard<std::mutex> lock(c.mu);
  return CpuCacheStats{c.limit, c.free_bytes, c.in_use_bytes, c.hits, c.misses};
}

void EmptyCpuCache() {
  BlockCache& c = Cache();
  std::multimap<size_t, Block> blocks;
  {
    std::lock_guard<std::mutex> lock(c.mu);
    blocks.swap(c.free);
    c.free_bytes = 0;
  }
  for (auto& kv : blocks) Unpoison(kv.second.data.get(), kv.second.capacity);
}  // the blocks go back to the base allocator here, outside the lock

}  // namespace segtorch
