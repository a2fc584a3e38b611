// Errors that native code raises for the user. Plain C++ (no Napi): the boundary maps them to
// JS TypeError / RangeError / Error (see node/jobs.h).
#pragma once
#include <stdexcept>
#include <string>

namespace segtorch {

enum class ErrorKind { kError, kTypeError, kRangeError };

class UserError : public std::runtime_error {
 public:
  UserError(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

[[noreturn]] inline void ThrowRange(const std::string& m) { throw UserError(ErrorKind::kRangeError, m); }
[[noreturn]] inline void ThrowType(const std::string& m) { throw UserError(ErrorKind::kTypeError, m); }
[[noreturn]] inline void ThrowError(const std::string& m) { throw UserError(ErrorKind::kError, m); }

// The message of any exception, without the C++ backtrace that c10::Error carries. Never throws:
// it runs inside catch handlers, where an exception escaping (a what() that fails, no memory for
// the copy) would end the thread, or the process on an executor thread; it falls back to a fixed
// message then.
std::string CleanMessage(const std::exception& e) noexcept;
ErrorKind KindOf(const std::exception& e) noexcept;

}  // namespace segtorch
