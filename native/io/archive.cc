// Zip reading for untrusted files. See archive.h. Only what PyTorch's writer (miniz) produces is
// accepted: no encryption, no multi-disk archives, stored or deflated records.
#include "io/archive.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <utility>

namespace segtorch {

void FailFile(const std::string& path, const std::string& message) {
  throw std::runtime_error(path + ": " + message);
}

namespace {

struct Crc32Table {
  uint32_t t[8][256];
  Crc32Table() {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
      t[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; ++i)
      for (int s = 1; s < 8; ++s) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xff];
  }
};

const Crc32Table& Table() {
  static const Crc32Table table;
  return table;
}

// Little-endian reads at a checked position.
class Cursor {
 public:
  Cursor(const std::string& path, const std::string& bytes, uint64_t pos, uint64_t end, std::string what)
      : path_(path), p_(reinterpret_cast<const uint8_t*>(bytes.data())), pos_(pos), end_(end), what_(std::move(what)) {
    if (pos > end || end > bytes.size()) FailFile(path_, what_ + " lies outside the file: truncated or corrupt zip");
  }
  void Need(uint64_t n) const {
    if (n > end_ - pos_) FailFile(path_, what_ + " is truncated: not a valid zip archive");
  }
  uint64_t Le(int n) {
    Need(static_cast<uint64_t>(n));
    uint64_t v = 0;
    for (int k = n - 1; k >= 0; --k) v = (v << 8) | p_[pos_ + k];
    pos_ += static_cast<uint64_t>(n);
    return v;
  }
  std::string Str(uint64_t n) {
    Need(n);
    std::string s(reinterpret_cast<const char*>(p_ + pos_), static_cast<size_t>(n));
    pos_ += n;
    return s;
  }
  void Skip(uint64_t n) {
    Need(n);
    pos_ += n;
  }
  uint64_t pos() const { return pos_; }

 private:
  const std::string& path_;
  const uint8_t* p_;
  uint64_t pos_, end_;
  std::string what_;
};

constexpr uint32_t kLocalSig = 0x04034b50, kCentralSig = 0x02014b50, kEndSig = 0x06054b50;
constexpr uint32_t kEnd64Sig = 0x06064b50, kLocator64Sig = 0x07064b50;

[[noreturn]] void FailAccess(const std::string& path, const std::string& message) {
  throw FileAccessError(path + ": " + message);
}

std::string ReadWholeFile(const std::string& path) {
  // O_NONBLOCK: opening a FIFO without a writer must not wait; it is refused just below anyway.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) FailAccess(path, std::string("cannot open: ") + std::strerror(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    FailAccess(path, std::string("cannot stat: ") + std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    FailAccess(path, S_ISDIR(st.st_mode) ? "is a directory, not a file" : "is not a regular file (a FIFO, socket or device?)");
  }
  std::string bytes;
  bytes.resize(static_cast<size_t>(st.st_size));
  size_t got = 0;
  while (got < bytes.size()) {
    ssize_t n = ::read(fd, &bytes[got], bytes.size() - got);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      int err = errno;
      ::close(fd);
      FailAccess(path, std::string("cannot read: ") + std::strerror(err));
    }
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  ::close(fd);
  if (got != bytes.size()) FailAccess(path, "the file shrank while it was read");
  return bytes;
}

}  // namespace

uint32_t Crc32(const void* data, size_t n, uint32_t crc) {
  const auto& t = Table().t;
  const uint8_t* p = static_cast<const uint8_t*>(data);
  crc = ~crc;
  while (n >= 8) {
    uint32_t a = crc ^ (uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24);
    crc = t[7][a & 0xff] ^ t[6][(a >> 8) & 0xff] ^ t[5][(a >> 16) & 0xff] ^ t[4][a >> 24] ^ t[3][p[4]] ^ t[2][p[5]] ^
          t[1][p[6]] ^ t[0][p[7]];
    p += 8;
    n -= 8;
  }
  while (n--) crc = t[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
  return ~crc;
}

std::shared_ptr<const Archive> Archive::Read(const std::string& path) { return FromBytes(path, ReadWholeFile(path)); }

std::string Archive::ReadFile(const std::string& path) { return ReadWholeFile(path); }

std::shared_ptr<const Archive> Archive::FromBytes(const std::string& path, std::string bytes) {
  std::shared_ptr<Archive> a(new Archive());
  a->path_ = path;
  a->bytes_ = std::move(bytes);
  a->Parse();
  return a;
}

std::string_view Archive::Record(const std::string& name) const {
  auto it = records_.find(name);
  if (it == records_.end()) FailFile(path_, "the archive has no record " + name);
  const Entry& e = it->second;
  if (e.inflated >= 0) return std::string_view(inflated_[static_cast<size_t>(e.inflated)]);
  return std::string_view(bytes_.data() + e.offset, static_cast<size_t>(e.size));
}

std::vector<std::string> Archive::Names() const {
  std::vector<std::string> out;
  out.reserve(records_.size());
  for (const auto& kv : records_) out.push_back(kv.first);
  return out;
}

void Archive::Parse() {
  const std::string& path = path_;
  const uint64_t size = bytes_.size();
  const uint8_t* p = reinterpret_cast<const uint8_t*>(bytes_.data());
  if (size < 22) FailFile(path, "is not a zip archive (too short)");
  if (!(p[0] == 'P' && p[1] == 'K')) {
    if (p[0] == 0x80 && p[1] >= 2 && p[1] <= 5)
      FailFile(path,
           "is a legacy (non-zip) torch.save file; re-save it from Python with a PyTorch >= 1.6 default "
           "torch.save(obj, path)");
    FailFile(path, "is not a zip archive (no PK signature at its start)");
  }

  // End of central directory: the last 22+ bytes; its comment must end exactly at the end of file.
  uint64_t eocd = UINT64_MAX;
  uint64_t lowest = size >= 22 + 65535 ? size - 22 - 65535 : 0;
  for (uint64_t pos = size - 22 + 1; pos-- > lowest;) {
    if (p[pos] == 0x50 && p[pos + 1] == 0x4b && p[pos + 2] == 0x05 && p[pos + 3] == 0x06) {
      uint64_t comment = uint64_t(p[pos + 20]) | uint64_t(p[pos + 21]) << 8;
      if (pos + 22 + comment == size) {
        eocd = pos;
        break;
      }
    }
  }
  if (eocd == UINT64_MAX) FailFile(path, "has no zip end-of-central-directory record: truncated or not a zip archive");
  Cursor e(path, bytes_, eocd + 4, size, "the end-of-central-directory record");
  uint64_t disk = e.Le(2), cd_disk = e.Le(2), n_disk = e.Le(2), n_total = e.Le(2);
  uint64_t cd_size = e.Le(4), cd_offset = e.Le(4);
  uint64_t cd_limit = eocd;  // the central directory ends before the (zip64) end record
  if (eocd >= 20 && p[eocd - 20] == 0x50 && p[eocd - 19] == 0x4b && p[eocd - 18] == 0x06 && p[eocd - 17] == 0x07) {
    Cursor l(path, bytes_, eocd - 16, eocd, "the zip64 end-of-central-directory locator");
    uint64_t l_disk = l.Le(4), end64 = l.Le(8), disks = l.Le(4);
    if (l_disk != 0 || disks > 1) FailFile(path, "is a multi-disk zip archive (not supported)");
    if (end64 > eocd - 20 || eocd - 20 - end64 < 56) FailFile(path, "has a zip64 end record outside the file");
    Cursor z(path, bytes_, end64, eocd - 20, "the zip64 end-of-central-directory record");
    if (z.Le(4) != kEnd64Sig) FailFile(path, "has a corrupt zip64 end-of-central-directory record");
    z.Skip(8 + 2 + 2);  // record size, versions
    // The classic record's fields either say "see zip64" (all ones) or agree with the zip64 ones.
    auto agree = [&](uint64_t classic, uint64_t all_ones, uint64_t v) {
      if (classic != all_ones && classic != v) FailFile(path, "has two end-of-central-directory records that disagree");
      return v;
    };
    disk = agree(disk, 0xffff, z.Le(4));
    cd_disk = agree(cd_disk, 0xffff, z.Le(4));
    n_disk = agree(n_disk, 0xffff, z.Le(8));
    n_total = agree(n_total, 0xffff, z.Le(8));
    cd_size = agree(cd_size, 0xffffffffu, z.Le(8));
    cd_offset = agree(cd_offset, 0xffffffffu, z.Le(8));
    cd_limit = end64;
  }
  if (disk != 0 || cd_disk != 0 || n_disk != n_total) FailFile(path, "is a multi-disk zip archive (not supported)");
  if (cd_offset > cd_limit || cd_size != cd_limit - cd_offset)
    FailFile(path, "has a central directory whose size or offset does not match the file (truncated or corrupt zip)");
  if (n_total > kMaxRecords || n_total > cd_size / 46)
    FailFile(path, "declares " + std::to_string(n_total) + " records, more than its central directory can hold");
  if (n_total == 0) FailFile(path, "is an empty zip archive");

  Cursor c(path, bytes_, cd_offset, cd_limit, "the zip central directory");
  uint64_t inflated_total = 0;
  for (uint64_t i = 0; i < n_total; ++i) {
    if (c.Le(4) != kCentralSig) FailFile(path, "has a corrupt zip central directory (entry " + std::to_string(i) + ")");
    c.Skip(4);  // versions
    uint64_t flags = c.Le(2), method = c.Le(2);
    c.Skip(4);  // time, date
    uint64_t crc = c.Le(4), csize = c.Le(4), usize = c.Le(4);
    uint64_t nlen = c.Le(2), xlen = c.Le(2), clen = c.Le(2), edisk = c.Le(2);
    c.Skip(6);  // attributes
    uint64_t lho = c.Le(4);
    std::string name = c.Str(nlen);
    // zip64 extended information: the 64-bit values of the fields that hold all ones, in order.
    uint64_t xend = c.pos() + xlen;
    c.Need(xlen);
    while (c.pos() + 4 <= xend) {
      uint64_t id = c.Le(2), len = c.Le(2);
      if (len > xend - c.pos()) FailFile(path, "record " + name + " has a corrupt zip extra field");
      uint64_t fend = c.pos() + len;
      if (id == 0x0001) {
        Cursor z(path, bytes_, c.pos(), fend, "a zip64 extra field");
        if (usize == 0xffffffffu) usize = z.Le(8);
        if (csize == 0xffffffffu) csize = z.Le(8);
        if (lho == 0xffffffffu) lho = z.Le(8);
        if (edisk == 0xffffu) edisk = z.Le(4);
      }
      c.Skip(fend - c.pos());
    }
    c.Skip(xend - c.pos());
    c.Skip(clen);

    if (name.empty() || name.size() > 4096 || name.find('\0') != std::string::npos)
      FailFile(path, "has a record with an invalid name");
    if (edisk != 0) FailFile(path, "is a multi-disk zip archive (not supported)");
    if (flags & 0x41) FailFile(path, "record " + name + " is encrypted (not supported)");
    if (method != 0 && method != 8)
      FailFile(path, "record " + name + " uses zip compression method " + std::to_string(method) + " (only stored and deflate)");
    if (method == 0 && csize != usize) FailFile(path, "record " + name + " is stored but its sizes differ");

    // Local header: same name and method; the data follows it and ends before the central directory.
    Cursor l(path, bytes_, lho, cd_offset, "the local header of " + name);
    if (l.Le(4) != kLocalSig) FailFile(path, "record " + name + " has a corrupt local header");
    l.Skip(2 + 2);  // version, flags
    if (l.Le(2) != method) FailFile(path, "record " + name + " has different compression methods in its two headers");
    l.Skip(4 + 4 + 4 + 4);  // time, date, crc, sizes (may be in a data descriptor instead)
    uint64_t lnlen = l.Le(2), lxlen = l.Le(2);
    if (l.Str(lnlen) != name) FailFile(path, "record " + name + " has a different name in its local header");
    l.Skip(lxlen);
    uint64_t data = l.pos();
    if (csize > cd_offset - data) FailFile(path, "record " + name + " runs past the end of the archive data (truncated?)");

    // One top folder for every record (as PyTorch's reader requires).
    auto slash = name.find('/');
    if (slash == std::string::npos || slash == 0) FailFile(path, "record " + name + " is not inside the archive's top folder");
    std::string top = name.substr(0, slash + 1);
    if (prefix_.empty()) prefix_ = top;
    else if (top != prefix_) FailFile(path, "has records in two top folders (" + prefix_ + ", " + top + ")");
    std::string rel = name.substr(slash + 1);
    if (records_.count(rel)) FailFile(path, "has two records named " + name);

    Entry entry;
    const char* bytes = bytes_.data() + data;
    if (method == 0) {
      entry.offset = data;
      entry.size = usize;
      if (Crc32(bytes, static_cast<size_t>(usize)) != crc)
        FailFile(path, "record " + name + " fails its CRC-32 check: the file is corrupt");
    } else {
      if (csize > usize + usize / 8 + 1024) FailFile(path, "record " + name + " is larger compressed than inflated: the file is corrupt");
      if (usize > kMaxInflatedRecord || inflated_total + usize > kMaxInflatedTotal)
        FailFile(path, "record " + name + " inflates to " + std::to_string(usize) + " bytes, more than the " +
                       std::to_string(kMaxInflatedRecord >> 20) + " MiB a compressed record may hold here");
      inflated_total += usize;
      std::string out(static_cast<size_t>(usize), '\0');
      z_stream zs;
      std::memset(&zs, 0, sizeof zs);
      if (inflateInit2(&zs, -15) != Z_OK) FailFile(path, "cannot start inflating record " + name);
      zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(bytes));
      zs.avail_in = static_cast<uInt>(csize);
      zs.next_out = reinterpret_cast<Bytef*>(out.empty() ? nullptr : &out[0]);
      zs.avail_out = static_cast<uInt>(usize);
      int rc = inflate(&zs, Z_FINISH);
      uint64_t produced = zs.total_out;
      inflateEnd(&zs);
      if (rc != Z_STREAM_END || produced != usize)
        FailFile(path, "record " + name + " does not inflate to its declared size: the file is corrupt");
      if (Crc32(out.data(), out.size()) != crc) FailFile(path, "record " + name + " fails its CRC-32 check: the file is corrupt");
      entry.inflated = static_cast<int>(inflated_.size());
      entry.size = usize;
      inflated_.push_back(std::move(out));
    }
    records_.emplace(std::move(rel), entry);
  }
}

}  // namespace segtorch
