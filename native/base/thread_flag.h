// A scope that sets one of this thread's flags while it lives.
#pragma once

namespace segtorch {

// Sets `flag` (a thread_local bool of the caller's) to `value` and gives it back its previous value
// when destroyed, so scopes nest. Made and destroyed on one thread, like the flag it sets. The
// named scopes (WholeKernelGuard, WinogradGuard, AsTracedScope, DeferFinalResize, ...) derive
// from it and keep their flags private to their .cc files.
class ThreadFlagScope {
 public:
  ThreadFlagScope(bool& flag, bool value) : flag_(flag), previous_(flag) { flag_ = value; }
  ~ThreadFlagScope() { flag_ = previous_; }
  ThreadFlagScope(const ThreadFlagScope&) = delete;
  ThreadFlagScope& operator=(const ThreadFlagScope&) = delete;

 private:
  bool& flag_;
  bool previous_;
};

}  // namespace segtorch
