#include "base/errors.h"

#include <c10/util/Exception.h>

namespace segtorch {

std::string CleanMessage(const std::exception& e) noexcept {
  try {
    std::string msg;
    if (auto* c10e = dynamic_cast<const c10::Error*>(&e)) {
      msg = c10e->what_without_backtrace();
    } else {
      const char* what = e.what();
      msg = what ? what : "";
    }
    // c10 messages may still carry "Exception raised from ..." context lines: keep the first part.
    auto pos = msg.find("\nException raised from");
    if (pos != std::string::npos) msg.resize(pos);
    while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
    if (msg.empty()) msg = "native error without a message";
    return msg;
  } catch (...) {
  }
  try {
    return "native error (its message could not be read)";
  } catch (...) {
    return std::string();
  }
}

ErrorKind KindOf(const std::exception& e) noexcept {
  if (auto* u = dynamic_cast<const UserError*>(&e)) return u->kind();
  if (dynamic_cast<const c10::IndexError*>(&e)) return ErrorKind::kRangeError;
  if (dynamic_cast<const c10::TypeError*>(&e)) return ErrorKind::kTypeError;
  return ErrorKind::kError;
}

}  // namespace segtorch
