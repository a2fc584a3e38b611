// A zip archive as PyTorch writes it (torch.save, torch.jit.save, our model files), read from a file
// that may come from a stranger. Plain C++ (no Node-API types, no libtorch).
//
// What Archive::Read checks before anyone looks at a record:
//   - the path is a regular file (a FIFO or device would block or never end); it is read whole,
//     once, so later checks and loaders see exactly the bytes that were checked;
//   - the zip structure: end of central directory (zip64 too), every central directory entry, its
//     local header, names (unique, one top folder), offsets and sizes inside the file, no
//     encryption, multi-disk or compression other than stored / deflate;
//   - every record's CRC-32 (PyTorch's own reader does not check them);
//   - deflated records (TorchScript writes its code/ files deflated) are inflated with their
//     declared size as a hard bound, itself capped (kMaxInflatedRecord, kMaxInflatedTotal), so a
//     small file cannot inflate to gigabytes.
// Every failure throws std::runtime_error whose message starts with the path and says what is wrong.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace segtorch {

// The file could not be opened or read at all (missing, unreadable, not a regular file): callers
// word this differently from a file that is there but not a valid archive.
class FileAccessError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Throws std::runtime_error "<path>: <message>" (the form of every failure of the readers here).
[[noreturn]] void FailFile(const std::string& path, const std::string& message);

class Archive {
 public:
  static constexpr uint64_t kMaxInflatedRecord = 64ull << 20;   // one deflated record, inflated
  static constexpr uint64_t kMaxInflatedTotal = 256ull << 20;   // all of them together
  static constexpr uint64_t kMaxRecords = 1u << 20;

  static std::shared_ptr<const Archive> Read(const std::string& path);
  // The whole of `path`, which must be a regular file (refused without blocking otherwise).
  static std::string ReadFile(const std::string& path);
  // The same checks on bytes already in memory (`path` names them in messages).
  static std::shared_ptr<const Archive> FromBytes(const std::string& path, std::string bytes);

  const std::string& path() const { return path_; }
  // The top folder every record lives in, with its trailing slash ("archive/").
  const std::string& prefix() const { return prefix_; }
  // Names relative to the top folder ("data.pkl", "data/0", "code/__torch__/m.py").
  bool Has(const std::string& name) const { return records_.count(name) != 0; }
  // A record's (inflated) bytes; throws when there is none. Valid while the archive lives.
  std::string_view Record(const std::string& name) const;
  std::vector<std::string> Names() const;
  // The whole file, as read and checked.
  const std::string& bytes() const { return bytes_; }

 private:
  struct Entry {
    uint64_t offset = 0;  // data start in bytes_ (stored records)
    uint64_t size = 0;
    int inflated = -1;    // index into inflated_ (deflated records)
  };
  Archive() = default;
  void Parse();

  std::string path_;
  std::string bytes_;
  std::string prefix_;
  std::map<std::string, Entry> records_;
  std::vector<std::string> inflated_;
};

// CRC-32 (ISO-HDLC, as zip and PNG use).
uint32_t Crc32(const void* data, size_t n, uint32_t crc = 0);

}  // namespace segtorch
