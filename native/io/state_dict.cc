// PyTorch zip checkpoints (torch.save, PyTorch >= 1.6) without Python: a strict pickle VM for
// reading, a fixed pickle emitter for writing. See state_dict.h.
//
// Archive layout written by torch.save (the top folder's name varies; PyTorchStreamReader finds it):
//   <archive>/data.pkl     pickle (protocol 2) of the object; each tensor storage is a persistent id
//                          ('storage', torch.<T>Storage, key, location, numel)
//   <archive>/data/<key>   the raw little-endian bytes of storage <key>
//   <archive>/version      archive format version (written by PyTorchStreamWriter itself)
//   <archive>/byteorder    "little" / "big" (PyTorch >= 2.0; absent means little)
#include "io/state_dict.h"

#include <c10/util/Exception.h>
#include <caffe2/serialize/inline_container.h>

#include "io/archive.h"
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <stdexcept>
#include <unordered_map>
#include <unordered_set>

namespace segtorch {
namespace {

// c10::Error's message without its backtrace, first line only.
std::string C10Message(const c10::Error& e) {
  std::string m = e.what_without_backtrace();
  auto nl = m.find('\n');
  if (nl != std::string::npos) m.resize(nl);
  // libtorch 2.x appends a long generic advice to miniz errors; the first sentence says it all.
  auto advice = m.find(". This is an internal miniz error");
  if (advice != std::string::npos) m.resize(advice);
  return m;
}

std::string Hex2(unsigned v) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%02x", v & 0xffu);
  return buf;
}

// torch.<name>Storage <-> dtype. The legacy typed storage classes are what torch.save names in its
// persistent ids, in 1.x and 2.x alike.
struct StorageType {
  const char* name;
  at::ScalarType dtype;
};
const StorageType kStorageTypes[] = {
    {"FloatStorage", at::ScalarType::Float},     {"DoubleStorage", at::ScalarType::Double},
    {"HalfStorage", at::ScalarType::Half},       {"BFloat16Storage", at::ScalarType::BFloat16},
    {"LongStorage", at::ScalarType::Long},       {"IntStorage", at::ScalarType::Int},
    {"ShortStorage", at::ScalarType::Short},     {"CharStorage", at::ScalarType::Char},
    {"ByteStorage", at::ScalarType::Byte},       {"BoolStorage", at::ScalarType::Bool},
    {"ComplexFloatStorage", at::ScalarType::ComplexFloat},
    {"ComplexDoubleStorage", at::ScalarType::ComplexDouble},
};

const char* StorageNameOf(at::ScalarType dtype) {
  for (const auto& s : kStorageTypes)
    if (s.dtype == dtype) return s.name;
  return nullptr;
}

bool ValidUtf8(const std::string& s) {
  size_t i = 0, n = s.size();
  while (i < n) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    size_t len;
    uint32_t cp;
    if (c < 0x80) { ++i; continue; }
    if ((c & 0xe0) == 0xc0) { len = 2; cp = c & 0x1f; }
    else if ((c & 0xf0) == 0xe0) { len = 3; cp = c & 0x0f; }
    else if ((c & 0xf8) == 0xf0) { len = 4; cp = c & 0x07; }
    else return false;
    if (i + len > n) return false;
    for (size_t k = 1; k < len; ++k) {
      unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
      return false;
    i += len;
  }
  return true;
}

// ------------------------------------------------------------------------------------------------
// Reading
// ------------------------------------------------------------------------------------------------

enum class Kind { kNone, kBool, kInt, kFloat, kStr, kBytes, kTuple, kList, kDict, kGlobal, kStorage, kTensor, kObject };

const char* KindName(Kind k) {
  switch (k) {
    case Kind::kNone: return "None";
    case Kind::kBool: return "bool";
    case Kind::kInt: return "int";
    case Kind::kFloat: return "float";
    case Kind::kStr: return "str";
    case Kind::kBytes: return "bytes";
    case Kind::kTuple: return "tuple";
    case Kind::kList: return "list";
    case Kind::kDict: return "dict";
    case Kind::kGlobal: return "class/function";
    case Kind::kStorage: return "storage";
    case Kind::kTensor: return "tensor";
    case Kind::kObject: return "object";
  }
  return "?";
}

enum class GlobalId { kOrderedDict, kRebuildTensorV2, kRebuildParameter, kRebuildParameterWithState, kStorageType, kOther };

struct Value;
using Ref = std::shared_ptr<Value>;

struct Value {
  Kind kind = Kind::kNone;
  bool b = false;
  int64_t i = 0;
  double f = 0.0;
  std::string s;                               // kStr, kBytes; kGlobal: "module.name"; kStorage: record key
  std::vector<Ref> items;                      // kTuple, kList
  std::vector<std::pair<Ref, Ref>> entries;    // kDict, in insertion order
  std::unique_ptr<std::unordered_map<std::string, size_t>> index;  // kDict: hashed key -> position in entries
  int depth = 0;                               // containers: 1 + the deepest value they hold
  GlobalId global = GlobalId::kOrderedDict;    // kGlobal
  at::ScalarType dtype = at::ScalarType::Byte;  // kGlobal (storage type), kStorage
  int64_t numel = 0;                           // kStorage
  at::Tensor tensor;                           // kTensor
};

// Limits for pickles from untrusted files: a state dict nests 3-5 levels and holds ~20 values per
// tensor; a TorchScript archive's pickles a few more.
constexpr int kMaxDepth = 64;
constexpr size_t kMaxValues = 1u << 20;

// Runs a pickle from an archive record. Two modes:
//  - kBuild: only what torch.save emits for a dict of tensors; tensors are materialised (copied out
//    of their records) after their storage, size, stride and offset are checked;
//  - kScan: any class or function is accepted as an opaque value (TorchScript archives pickle their
//    own classes); nothing is built, but nesting, value counts and every tensor's storage bounds are
//    checked the same way, so that libtorch's loader only ever sees consistent data.
// Every value is also kept in all_, and the destructor empties each container before releasing it:
// freeing never recurses (a chain of 200,000 nested tuples is refused anyway) and cycles built through
// the memo are broken.
class Unpickler {
 public:
  enum class Mode { kBuild, kScan };
  Unpickler(const std::string& path, const std::string& record, const Archive& archive, const std::string& storage_dir,
            Mode mode)
      : path_(path), record_(record), archive_(archive), storage_dir_(storage_dir), mode_(mode) {
    std::string_view bytes = archive.Record(record);
    data_ = reinterpret_cast<const uint8_t*>(bytes.data());
    size_ = bytes.size();
  }
  ~Unpickler() {
    stack_.clear();
    memo_.clear();
    for (auto& v : all_) {
      v->items.clear();
      v->entries.clear();
    }
    all_.clear();
  }

  Ref Run() {
    for (;;) {
      op_pos_ = pos_;
      uint8_t op = U8();
      switch (op) {
        case 0x80: {  // PROTO
          uint8_t proto = U8();
          if (proto > 5) Error("unsupported pickle protocol " + std::to_string(proto));
          break;
        }
        case 0x95:  // FRAME (protocol 4): only a read-ahead hint
          U64();
          break;
        case '(':  // MARK
          marks_.push_back(stack_.size());
          break;
        case '.': {  // STOP
          if (!marks_.empty()) Error("STOP with an open MARK");
          if (stack_.size() != 1) Error("STOP with " + std::to_string(stack_.size()) + " values on the stack");
          return stack_.back();
        }
        case '0':  // POP
          if (stack_.size() > Base()) stack_.pop_back();
          else PopMark();
          break;
        case '1':  // POP_MARK
          PopMark();
          break;
        case '2':  // DUP
          Push(Top());
          break;
        case '}':  // EMPTY_DICT
          Push(Make(Kind::kDict));
          break;
        case 'd': {  // DICT
          auto items = PopMark();
          if (items.size() % 2) Error("DICT with an odd number of items");
          auto d = Make(Kind::kDict);
          for (size_t k = 0; k < items.size(); k += 2) SetItem(*d, items[k], items[k + 1]);
          Push(d);
          break;
        }
        case ')':  // EMPTY_TUPLE
          Push(Make(Kind::kTuple));
          break;
        case ']':  // EMPTY_LIST
          Push(Make(Kind::kList));
          break;
        case 't': {  // TUPLE
          auto t = Make(Kind::kTuple);
          t->items = PopMark();
          for (const auto& x : t->items) Nest(*t, *x);
          Push(t);
          break;
        }
        case 0x85:  // TUPLE1
        case 0x86:  // TUPLE2
        case 0x87: {  // TUPLE3
          size_t n = op - 0x84;
          auto t = Make(Kind::kTuple);
          t->items.resize(n);
          for (size_t k = n; k-- > 0;) t->items[k] = Pop();
          for (const auto& x : t->items) Nest(*t, *x);
          Push(t);
          break;
        }
        case 'X':  // BINUNICODE
          PushStr(Kind::kStr, U32());
          break;
        case 0x8c:  // SHORT_BINUNICODE
          PushStr(Kind::kStr, U8());
          break;
        case 0x8d:  // BINUNICODE8
          PushStr(Kind::kStr, U64());
          break;
        case 'B':  // BINBYTES
          PushStr(Kind::kBytes, U32());
          break;
        case 'C':  // SHORT_BINBYTES
          PushStr(Kind::kBytes, U8());
          break;
        case 0x8e:  // BINBYTES8
          PushStr(Kind::kBytes, U64());
          break;
        case 'c': {  // GLOBAL
          std::string module = Line();
          std::string name = Line();
          Push(ResolveGlobal(module, name));
          break;
        }
        case 0x93: {  // STACK_GLOBAL
          Ref name = Pop();
          Ref module = Pop();
          if (module->kind != Kind::kStr || name->kind != Kind::kStr) Error("STACK_GLOBAL needs two strings");
          Push(ResolveGlobal(module->s, name->s));
          break;
        }
        case 0x81: {  // NEWOBJ: cls.__new__(cls, *args) (TorchScript objects; scan mode only)
          Ref args = Pop();
          Ref cls = Pop();
          if (mode_ != Mode::kScan || cls->kind != Kind::kGlobal) Error("unsupported NEWOBJ");
          auto o = Make(Kind::kObject);
          Nest(*o, *args);
          Push(o);
          break;
        }
        case 'Q': {  // BINPERSID
          Ref pid = Pop();
          Push(PersistentLoad(*pid));
          break;
        }
        case 'R': {  // REDUCE
          Ref args = Pop();
          Ref fn = Pop();
          Push(Reduce(*fn, *args));
          break;
        }
        case 'b': {  // BUILD
          Ref state = Pop();
          Ref target = Top();
          Build(*target, *state);
          break;
        }
        case 's': {  // SETITEM
          Ref value = Pop();
          Ref key = Pop();
          Ref d = Top();
          if (d->kind != Kind::kDict) Error(std::string("SETITEM on a ") + KindName(d->kind));
          SetItem(*d, key, value);
          break;
        }
        case 'u': {  // SETITEMS
          auto items = PopMark();
          Ref d = Top();
          if (d->kind != Kind::kDict) Error(std::string("SETITEMS on a ") + KindName(d->kind));
          if (items.size() % 2) Error("SETITEMS with an odd number of items");
          for (size_t k = 0; k < items.size(); k += 2) SetItem(*d, items[k], items[k + 1]);
          break;
        }
        case 'a': {  // APPEND
          Ref value = Pop();
          Ref l = Top();
          if (l->kind != Kind::kList) Error(std::string("APPEND on a ") + KindName(l->kind));
          Nest(*l, *value);
          l->items.push_back(value);
          break;
        }
        case 'e': {  // APPENDS
          auto items = PopMark();
          Ref l = Top();
          if (l->kind != Kind::kList) Error(std::string("APPENDS on a ") + KindName(l->kind));
          for (const auto& x : items) Nest(*l, *x);
          l->items.insert(l->items.end(), items.begin(), items.end());
          break;
        }
        case 'J': {  // BININT
          uint32_t u = U32();
          PushInt(static_cast<int32_t>(u));
          break;
        }
        case 'K':  // BININT1
          PushInt(U8());
          break;
        case 'M':  // BININT2
          PushInt(U16());
          break;
        case 0x8a: {  // LONG1
          uint8_t n = U8();
          if (n > 8) Error("integer of " + std::to_string(n) + " bytes does not fit in 64 bits");
          Need(n);
          uint64_t u = 0;
          for (uint8_t k = 0; k < n; ++k) u |= static_cast<uint64_t>(data_[pos_ + k]) << (8 * k);
          if (n > 0 && n < 8 && (data_[pos_ + n - 1] & 0x80)) u |= ~uint64_t{0} << (8 * n);  // sign-extend
          pos_ += n;
          PushInt(static_cast<int64_t>(u));
          break;
        }
        case 'G': {  // BINFLOAT: big-endian IEEE double
          Need(8);
          uint64_t u = 0;
          for (int k = 0; k < 8; ++k) u = (u << 8) | data_[pos_ + k];
          pos_ += 8;
          auto v = Make(Kind::kFloat);
          std::memcpy(&v->f, &u, sizeof u);
          Push(v);
          break;
        }
        case 'N':  // NONE
          Push(Make(Kind::kNone));
          break;
        case 0x88:  // NEWTRUE
        case 0x89: {  // NEWFALSE
          auto v = Make(Kind::kBool);
          v->b = op == 0x88;
          Push(v);
          break;
        }
        case 'q':  // BINPUT
          memo_[U8()] = Top();
          break;
        case 'r':  // LONG_BINPUT
          memo_[U32()] = Top();
          break;
        case 0x94: {  // MEMOIZE
          uint32_t key = static_cast<uint32_t>(memo_.size());
          memo_[key] = Top();
          break;
        }
        case 'h':  // BINGET
          Push(MemoGet(U8()));
          break;
        case 'j':  // LONG_BINGET
          Push(MemoGet(U32()));
          break;
        default:
          Error("unsupported pickle opcode " + Hex2(op));
      }
    }
  }

 private:
  [[noreturn]] void Error(const std::string& what, const std::string& why = "") {
    FailFile(path_, what + " at byte " + std::to_string(op_pos_) + " of " + record_ + (why.empty() ? "" : ": " + why));
  }

  Ref Make(Kind k) {
    if (all_.size() >= kMaxValues)
      Error("too many values", "more than " + std::to_string(kMaxValues) + " in one pickle (corrupt or hostile file)");
    auto v = std::make_shared<Value>();
    v->kind = k;
    if (k == Kind::kDict) v->index = std::make_unique<std::unordered_map<std::string, size_t>>();
    all_.push_back(v);
    return v;
  }
  // A container now holds `child`: its depth is at least one more than the child's.
  void Nest(Value& parent, const Value& child) {
    if (child.depth + 1 > parent.depth) parent.depth = child.depth + 1;
    if (parent.depth > kMaxDepth)
      Error("values nested too deeply", "more than " + std::to_string(kMaxDepth) + " levels (corrupt or hostile file)");
  }

  void Need(uint64_t n) {
    if (n > size_ - pos_) Error("truncated pickle");
  }
  uint8_t U8() {
    Need(1);
    return data_[pos_++];
  }
  uint16_t U16() {
    Need(2);
    uint16_t v = static_cast<uint16_t>(data_[pos_] | (data_[pos_ + 1] << 8));
    pos_ += 2;
    return v;
  }
  uint32_t U32() {
    Need(4);
    uint32_t v = 0;
    for (int k = 3; k >= 0; --k) v = (v << 8) | data_[pos_ + k];
    pos_ += 4;
    return v;
  }
  uint64_t U64() {
    Need(8);
    uint64_t v = 0;
    for (int k = 7; k >= 0; --k) v = (v << 8) | data_[pos_ + k];
    pos_ += 8;
    return v;
  }
  std::string Line() {
    size_t start = pos_;
    while (pos_ < size_ && data_[pos_] != '\n') ++pos_;
    if (pos_ >= size_) Error("truncated pickle");
    std::string s(reinterpret_cast<const char*>(data_ + start), pos_ - start);
    ++pos_;
    return s;
  }
  void PushStr(Kind kind, uint64_t n) {
    Need(n);
    auto v = Make(kind);
    v->s.assign(reinterpret_cast<const char*>(data_ + pos_), static_cast<size_t>(n));
    pos_ += static_cast<size_t>(n);
    Push(v);
  }
  void PushInt(int64_t i) {
    auto v = Make(Kind::kInt);
    v->i = i;
    Push(v);
  }

  size_t Base() const { return marks_.empty() ? 0 : marks_.back(); }
  void Push(Ref v) { stack_.push_back(std::move(v)); }
  Ref Pop() {
    if (stack_.size() <= Base()) Error("pickle stack underflow");
    Ref v = std::move(stack_.back());
    stack_.pop_back();
    return v;
  }
  Ref Top() {
    if (stack_.size() <= Base()) Error("pickle stack underflow");
    return stack_.back();
  }
  std::vector<Ref> PopMark() {
    if (marks_.empty()) Error("no MARK on the pickle stack");
    size_t base = marks_.back();
    marks_.pop_back();
    std::vector<Ref> items(std::make_move_iterator(stack_.begin() + base), std::make_move_iterator(stack_.end()));
    stack_.resize(base);
    return items;
  }
  Ref MemoGet(uint32_t key) {
    auto it = memo_.find(key);
    if (it == memo_.end()) Error("memo key " + std::to_string(key) + " is not defined");
    return it->second;
  }

  // Dict keys hash to a string; only the scalar types a state dict (or its _metadata) uses.
  std::string HashKey(const Value& k) {
    switch (k.kind) {
      case Kind::kStr: return "s" + k.s;
      case Kind::kInt: return "i" + std::to_string(k.i);
      case Kind::kBool: return std::string("i") + (k.b ? "1" : "0");  // True == 1 in Python
      case Kind::kNone: return "n";
      case Kind::kBytes: return "y" + k.s;
      default:
        if (mode_ == Mode::kScan) return "p" + std::to_string(reinterpret_cast<uintptr_t>(&k));
        Error(std::string("unsupported dict key of type ") + KindName(k.kind));
    }
  }
  void SetItem(Value& d, const Ref& key, const Ref& value) {
    std::string h = HashKey(*key);
    Nest(d, *value);
    auto it = d.index->find(h);
    if (it != d.index->end()) {
      d.entries[it->second].second = value;  // Python keeps the first position, takes the last value
    } else {
      d.index->emplace(std::move(h), d.entries.size());
      d.entries.emplace_back(key, value);
    }
  }

  Ref ResolveGlobal(const std::string& module, const std::string& name) {
    auto g = Make(Kind::kGlobal);
    g->s = module + "." + name;
    if (module == "collections" && name == "OrderedDict") {
      g->global = GlobalId::kOrderedDict;
      return g;
    }
    if (module == "torch._utils") {
      if (name == "_rebuild_tensor_v2") {
        g->global = GlobalId::kRebuildTensorV2;
        return g;
      }
      if (name == "_rebuild_parameter") {
        g->global = GlobalId::kRebuildParameter;
        return g;
      }
      if (name == "_rebuild_parameter_with_state") {
        g->global = GlobalId::kRebuildParameterWithState;
        return g;
      }
      if (name.compare(0, 9, "_rebuild_") == 0 && mode_ == Mode::kBuild)
        Error("unsupported global " + g->s,
              "this kind of tensor (quantized, sparse, nested, a tensor subclass, or a dtype added after "
              "PyTorch 1.13) cannot be read");
    }
    if (module == "torch") {
      for (const auto& st : kStorageTypes) {
        if (name == st.name) {
          g->global = GlobalId::kStorageType;
          g->dtype = st.dtype;
          return g;
        }
      }
    }
    if ((module == "torch" || module == "torch.storage") && name == "UntypedStorage") {
      g->global = GlobalId::kStorageType;
      g->dtype = at::ScalarType::Byte;  // an untyped storage counts bytes
      return g;
    }
    if (mode_ == Mode::kScan) {
      g->global = GlobalId::kOther;
      return g;
    }
    Error("unsupported global " + g->s, "this file holds more than a state dict");
  }

  Ref PersistentLoad(const Value& pid) {
    if (pid.kind != Kind::kTuple || pid.items.size() < 5)
      Error("unsupported persistent id (expected ('storage', type, key, location, numel))");
    const Value& tag = *pid.items[0];
    const Value& type = *pid.items[1];
    const Value& key = *pid.items[2];
    const Value& location = *pid.items[3];
    const Value& numel = *pid.items[4];
    if ((tag.kind != Kind::kStr && tag.kind != Kind::kBytes) || tag.s != "storage")
      Error("unsupported persistent id (not a 'storage' reference)");
    if (type.kind != Kind::kGlobal || type.global != GlobalId::kStorageType)
      Error("persistent id names " + (type.kind == Kind::kGlobal ? type.s : std::string(KindName(type.kind))) +
            ", not a storage type");
    if (key.kind != Kind::kStr || (location.kind != Kind::kStr && location.kind != Kind::kBytes) ||
        numel.kind != Kind::kInt || numel.i < 0)
      Error("malformed storage persistent id");
    auto known = storage_dtypes_.find(key.s);
    if (known != storage_dtypes_.end() && known->second != type.dtype)
      Error("storage '" + key.s + "' is used with two different dtypes");
    storage_dtypes_[key.s] = type.dtype;
    auto v = Make(Kind::kStorage);
    v->s = key.s;
    v->dtype = type.dtype;
    v->numel = numel.i;
    StorageBytes(*v);
    return v;
  }

  // The storage's record: it must exist and hold at least numel elements of its dtype.
  std::string_view StorageBytes(const Value& st) {
    const std::string record = storage_dir_ + st.s;
    if (!archive_.Has(record)) Error("the archive has no record " + record);
    std::string_view bytes = archive_.Record(record);
    const size_t itemsize = c10::elementSize(st.dtype);
    if (static_cast<uint64_t>(st.numel) > bytes.size() / itemsize)
      Error("record " + record + " holds " + std::to_string(bytes.size()) + " bytes, less than the " +
            std::to_string(st.numel) + " x " + std::to_string(itemsize) + " bytes of its storage");
    return bytes;
  }

  // The whole storage as a 1-D tensor with its own copy of the record's bytes; one per key.
  at::Tensor StorageTensor(const Value& st) {
    auto it = storages_.find(st.s);
    if (it != storages_.end()) {
      if (it->second.numel() != st.numel) Error("storage '" + st.s + "' is used with two different sizes");
      return it->second;
    }
    std::string_view bytes = StorageBytes(st);
    at::Tensor t = at::empty({st.numel}, at::TensorOptions().dtype(st.dtype).device(at::kCPU));
    if (st.numel > 0) std::memcpy(t.data_ptr(), bytes.data(), static_cast<size_t>(st.numel) * c10::elementSize(st.dtype));
    storages_.emplace(st.s, t);
    return t;
  }

  std::vector<int64_t> IntTuple(const Value& v, const char* what) {
    if (v.kind != Kind::kTuple) Error(std::string("tensor ") + what + " is a " + KindName(v.kind) + ", not a tuple");
    std::vector<int64_t> out;
    for (const auto& x : v.items) {
      if (x->kind != Kind::kInt) Error(std::string("tensor ") + what + " holds a " + KindName(x->kind));
      out.push_back(x->i);
    }
    return out;
  }

  // torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad,
  //                                 backward_hooks[, metadata])
  Ref RebuildTensor(const Value& args) {
    if (args.items.size() != 6 && args.items.size() != 7)
      Error("_rebuild_tensor_v2 with " + std::to_string(args.items.size()) + " arguments");
    const Value& st = *args.items[0];
    const Value& offset_v = *args.items[1];
    if (st.kind != Kind::kStorage) Error(std::string("_rebuild_tensor_v2 of a ") + KindName(st.kind));
    if (offset_v.kind != Kind::kInt) Error("_rebuild_tensor_v2: storage offset is not an int");
    std::vector<int64_t> size = IntTuple(*args.items[2], "size");
    std::vector<int64_t> stride = IntTuple(*args.items[3], "stride");
    if (args.items[4]->kind != Kind::kBool) Error("_rebuild_tensor_v2: requires_grad is not a bool");
    Kind hooks = args.items[5]->kind;
    if (hooks != Kind::kDict && hooks != Kind::kNone) Error("_rebuild_tensor_v2: backward hooks are not a dict");
    bool neg = false, conj = false;
    if (args.items.size() == 7) {
      const Value& meta = *args.items[6];
      if (meta.kind != Kind::kDict) Error("_rebuild_tensor_v2: tensor metadata is not a dict");
      for (const auto& kv : meta.entries) {
        if (kv.first->kind != Kind::kStr || kv.second->kind != Kind::kBool ||
            (kv.first->s != "neg" && kv.first->s != "conj"))
          Error("_rebuild_tensor_v2: unsupported tensor metadata");
        (kv.first->s == "neg" ? neg : conj) = kv.second->b;
      }
    }
    if (size.size() != stride.size()) Error("tensor size and stride have different lengths");
    const int64_t offset = offset_v.i;
    if (offset < 0) Error("negative storage offset");
    bool empty = false;
    uint64_t last = static_cast<uint64_t>(offset);  // highest element index the view touches
    for (size_t d = 0; d < size.size(); ++d) {
      if (size[d] < 0 || stride[d] < 0) Error("negative tensor size or stride");
      if (size[d] == 0) empty = true;
    }
    if (!empty) {
      for (size_t d = 0; d < size.size(); ++d) {
        uint64_t span = static_cast<uint64_t>(size[d] - 1) * static_cast<uint64_t>(stride[d]);
        if (stride[d] != 0 && span / static_cast<uint64_t>(stride[d]) != static_cast<uint64_t>(size[d] - 1))
          Error("tensor extent overflows");
        last += span;
        if (last < span) Error("tensor extent overflows");
      }
      if (last >= static_cast<uint64_t>(st.numel))
        Error("tensor of storage '" + st.s + "' reaches element " + std::to_string(last) + " of a storage of " +
              std::to_string(st.numel));
    } else if (offset > st.numel) {
      Error("storage offset beyond its storage");
    }
    // A view with more elements than its storage (zero or overlapping strides) would make the copy
    // below allocate far more than the file holds.
    uint64_t numel = 1;
    for (int64_t d : size) {
      if (d != 0 && numel > UINT64_MAX / static_cast<uint64_t>(d)) Error("tensor size overflows");
      numel *= static_cast<uint64_t>(d);
    }
    if (numel > static_cast<uint64_t>(st.numel))
      Error("tensor of " + std::to_string(numel) + " elements over a storage of " + std::to_string(st.numel) +
            " (expanded or overlapping strides are not supported)");
    if (mode_ == Mode::kScan) {
      StorageBytes(st);
      return Make(Kind::kTensor);
    }
    at::Tensor base = StorageTensor(st);
    at::Tensor t = base.as_strided(size, stride, offset);
    // Share the record's memory only when the tensor is exactly its whole storage; otherwise make a
    // compact copy, so that a small view does not pin a large storage.
    bool whole = offset == 0 && t.numel() == st.numel && t.is_contiguous();
    if (!whole) t = t.clone(at::MemoryFormat::Contiguous);
    if (conj) t = t.conj_physical();
    if (neg) t = t.neg();
    auto v = Make(Kind::kTensor);
    v->tensor = t;
    return v;
  }

  Ref Reduce(const Value& fn, const Value& args) {
    if (fn.kind != Kind::kGlobal) Error(std::string("REDUCE calls a ") + KindName(fn.kind));
    if (args.kind != Kind::kTuple) Error("REDUCE arguments are not a tuple");
    switch (fn.global) {
      case GlobalId::kOrderedDict:
        if (!args.items.empty()) Error("collections.OrderedDict called with arguments");
        return Make(Kind::kDict);
      case GlobalId::kRebuildTensorV2:
        return RebuildTensor(args);
      case GlobalId::kRebuildParameter:  // (data, requires_grad, backward_hooks)
      case GlobalId::kRebuildParameterWithState: {  // (data, requires_grad, backward_hooks, state)
        size_t want = fn.global == GlobalId::kRebuildParameter ? 3 : 4;
        if (args.items.size() != want || args.items[0]->kind != Kind::kTensor) Error(fn.s + " with unexpected arguments");
        return args.items[0];
      }
      case GlobalId::kStorageType:
        break;
      case GlobalId::kOther: {
        auto o = Make(Kind::kObject);
        Nest(*o, args);
        return o;
      }
    }
    Error("unsupported call of " + fn.s);
  }

  // BUILD: setting an instance's state. state_dict() is an OrderedDict with a `_metadata` attribute
  // (per-module versions); that state is accepted and ignored. Anything else is refused.
  void Build(Value& target, const Value& state) {
    if (mode_ == Mode::kScan) {
      Nest(target, state);
      return;
    }
    auto ignorable = [](const Value& s) { return s.kind == Kind::kDict || s.kind == Kind::kNone; };
    if (target.kind == Kind::kDict) {
      if (ignorable(state)) return;
      if (state.kind == Kind::kTuple && state.items.size() == 2 && ignorable(*state.items[0]) &&
          ignorable(*state.items[1]))
        return;
    }
    Error(std::string("unsupported BUILD (setting the state of a ") + KindName(target.kind) + ")");
  }

  const std::string& path_;
  const std::string record_;
  const Archive& archive_;
  const std::string storage_dir_;
  const Mode mode_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  size_t pos_ = 0;
  size_t op_pos_ = 0;
  std::vector<Ref> all_;
  std::vector<Ref> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint32_t, Ref> memo_;
  std::unordered_map<std::string, at::ScalarType> storage_dtypes_;
  std::unordered_map<std::string, at::Tensor> storages_;
};


// ------------------------------------------------------------------------------------------------
// Writing
// ------------------------------------------------------------------------------------------------

class PickleWriter {
 public:
  void Op(uint8_t op) { out_.push_back(static_cast<char>(op)); }
  void Global(const char* module, const char* name) {
    Op('c');
    out_ += module;
    out_ += '\n';
    out_ += name;
    out_ += '\n';
  }
  void Str(const std::string& s) {
    Op('X');  // BINUNICODE
    Le(s.size(), 4);
    out_ += s;
  }
  void Int(int64_t v) {
    if (v >= 0 && v < 0x100) {
      Op('K');
      Le(static_cast<uint64_t>(v), 1);
    } else if (v >= 0 && v < 0x10000) {
      Op('M');
      Le(static_cast<uint64_t>(v), 2);
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
      Op('J');
      Le(static_cast<uint64_t>(static_cast<uint32_t>(static_cast<int32_t>(v))), 4);
    } else {
      Op(0x8a);  // LONG1: little-endian two's complement
      Op(8);
      Le(static_cast<uint64_t>(v), 8);
    }
  }
  void IntTuple(c10::IntArrayRef values) {
    Op('(');
    for (int64_t v : values) Int(v);
    Op('t');
  }
  const std::string& str() const { return out_; }

 private:
  void Le(uint64_t v, int bytes) {
    for (int k = 0; k < bytes; ++k) out_.push_back(static_cast<char>((v >> (8 * k)) & 0xff));
  }
  std::string out_;
};

std::vector<int64_t> ContiguousStrides(c10::IntArrayRef size) {
  std::vector<int64_t> stride(size.size());
  int64_t s = 1;
  for (size_t d = size.size(); d-- > 0;) {
    stride[d] = s;
    s *= std::max<int64_t>(size[d], 1);
  }
  return stride;
}

std::string ErrnoText(int err) { return std::strerror(err); }

}  // namespace

std::vector<std::pair<std::string, at::Tensor>> ReadTensorDict(const Archive& archive, const std::string& pickle) {
  const std::string& path = archive.path();
  if (!archive.Has(pickle)) FailFile(path, "the archive has no record " + pickle);
  if (archive.Has("byteorder")) {
    std::string_view order = archive.Record("byteorder");
    if (order != "little")
      FailFile(path, "holds " + std::string(order.substr(0, 16)) + "-endian data; only little-endian checkpoints are supported");
  }
  Unpickler vm(path, pickle, archive, "data/", Unpickler::Mode::kBuild);
  Ref top = vm.Run();
  if (top->kind != Kind::kDict)
    FailFile(path, std::string("holds a ") + KindName(top->kind) + ", not a state dict (a dict of name -> tensor)");
  std::vector<std::pair<std::string, at::Tensor>> out;
  out.reserve(top->entries.size());
  for (const auto& kv : top->entries) {
    if (kv.first->kind == Kind::kStr && kv.second->kind == Kind::kTensor) out.emplace_back(kv.first->s, kv.second->tensor);
  }
  if (out.empty()) {
    if (top->entries.empty()) FailFile(path, "holds an empty dict: no tensors");
    FailFile(path, "holds a dict of " + std::to_string(top->entries.size()) +
                   (top->entries.size() == 1 ? " entry" : " entries") +
                   " but no tensor values (nested dicts such as {'state_dict': ...} are not supported)");
  }
  return out;
}

void CheckPickle(const Archive& archive, const std::string& pickle, const std::string& storage_dir) {
  Unpickler vm(archive.path(), pickle, archive, storage_dir, Unpickler::Mode::kScan);
  vm.Run();
}

std::vector<std::pair<std::string, at::Tensor>> ReadStateDict(const std::string& path) {
  std::shared_ptr<const Archive> archive;
  try {
    archive = Archive::Read(path);
  } catch (const FileAccessError&) {
    throw;
  } catch (const std::exception& e) {
    std::string m = e.what();
    if (m.find("legacy") != std::string::npos) throw;
    if (m.compare(0, path.size() + 2, path + ": ") == 0) m = m.substr(path.size() + 2);
    FailFile(path, "is not a PyTorch zip checkpoint (torch.save format) or is truncated/corrupt: " + m);
  }
  if (!archive->Has("data.pkl")) FailFile(path, "is a zip archive without data.pkl: not a torch.save checkpoint");
  if (archive->Has("constants.pkl"))
    FailFile(path, "is a TorchScript archive (torch.jit.save), not a state dict saved with torch.save");
  return ReadTensorDict(*archive, "data.pkl");
}

namespace {
// The pickle of an OrderedDict of `tensors`; their storages are keys first_key, first_key + 1, ...
std::string TensorDictPickle(const std::string& path, const TensorList& tensors, size_t first_key) {
  std::unordered_set<std::string> seen;
  PickleWriter p;
  p.Op(0x80);  // PROTO 2
  p.Op(2);
  p.Global("collections", "OrderedDict");
  p.Op(')');  // EMPTY_TUPLE
  p.Op('R');  // REDUCE -> OrderedDict()
  if (!tensors.empty()) p.Op('(');
  for (size_t i = 0; i < tensors.size(); ++i) {
    const std::string& key = tensors[i].first;
    const at::Tensor& t = tensors[i].second;
    if (!seen.insert(key).second) FailFile(path, "cannot write state dict: duplicate key '" + key + "'");
    if (!ValidUtf8(key)) FailFile(path, "cannot write state dict: key '" + key + "' is not valid UTF-8");
    if (!t.defined()) FailFile(path, "cannot write state dict: '" + key + "' is an undefined tensor");
    if (t.layout() != at::kStrided) FailFile(path, "cannot write state dict: '" + key + "' is not a dense tensor");
    const char* storage = StorageNameOf(t.scalar_type());
    if (!storage)
      FailFile(path, std::string("cannot write state dict: '") + key + "' has unsupported dtype " +
                     c10::toString(t.scalar_type()));
    // (key, _rebuild_tensor_v2(('storage', torch.<T>Storage, '<i>', 'cpu', numel), 0, size, stride,
    //                          False, OrderedDict()))
    p.Str(key);
    p.Global("torch._utils", "_rebuild_tensor_v2");
    p.Op('(');
    p.Op('(');
    p.Str("storage");
    p.Global("torch", storage);
    p.Str(std::to_string(first_key + i));
    p.Str("cpu");
    p.Int(t.numel());
    p.Op('t');
    p.Op('Q');  // BINPERSID
    p.Int(0);
    p.IntTuple(t.sizes());
    p.IntTuple(ContiguousStrides(t.sizes()));
    p.Op(0x89);  // NEWFALSE: requires_grad
    p.Global("collections", "OrderedDict");
    p.Op(')');
    p.Op('R');
    p.Op('t');
    p.Op('R');
  }
  if (!tensors.empty()) p.Op('u');  // SETITEMS
  p.Op('.');                        // STOP
  return p.str();
}
}  // namespace

void WriteStateDict(const std::string& path, const TensorList& tensors) {
  WriteTensorArchive(path, {{"data.pkl", tensors}}, {});
}

void WriteTensorArchive(const std::string& path, const std::vector<std::pair<std::string, TensorList>>& pickles,
                        const std::vector<std::pair<std::string, std::string>>& records) {
  // Validate everything and emit the pickles before touching the disk.
  std::vector<std::string> pickled;
  std::vector<const at::Tensor*> storages;
  for (const auto& pk : pickles) {
    pickled.push_back(TensorDictPickle(path, pk.second, storages.size()));
    for (const auto& kv : pk.second) storages.push_back(&kv.second);
  }

  const std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd < 0) FailFile(path, "cannot create " + tmp + ": " + ErrnoText(errno));
  // The writer is told every write succeeded: a failing write would make it throw, and its destructor
  // (which finishes the archive) could then throw again. The first error is kept and reported below.
  int write_errno = 0;
  std::function<size_t(const void*, size_t)> sink = [fd, &write_errno](const void* buf, size_t n) -> size_t {
    const char* q = static_cast<const char*>(buf);
    size_t left = n;
    while (left > 0 && write_errno == 0) {
      ssize_t w = ::write(fd, q, left);
      if (w < 0) {
        if (errno == EINTR) continue;
        write_errno = errno;
      } else {
        q += w;
        left -= static_cast<size_t>(w);
      }
    }
    return n;
  };
  try {
    try {
      caffe2::serialize::PyTorchStreamWriter writer(sink);
      for (size_t k = 0; k < pickles.size(); ++k)
        writer.writeRecord(pickles[k].first, pickled[k].data(), pickled[k].size());
      for (const auto& r : records) writer.writeRecord(r.first, r.second.data(), r.second.size());
      static const char kLittle[] = "little";
      writer.writeRecord("byteorder", kLittle, sizeof kLittle - 1);
      for (size_t i = 0; i < storages.size() && write_errno == 0; ++i) {
        at::Tensor t = storages[i]->detach();
        if (t.is_conj()) t = t.resolve_conj();
        if (t.is_neg()) t = t.resolve_neg();
        t = t.to(at::kCPU).contiguous();
        size_t nbytes = static_cast<size_t>(t.numel()) * t.element_size();
        writer.writeRecord("data/" + std::to_string(i), nbytes ? t.data_ptr() : nullptr, nbytes);
      }
      writer.writeEndOfFile();  // adds the `version` record
    } catch (const c10::Error& e) {
      throw std::runtime_error(path + ": cannot write state dict: " + C10Message(e));
    }
    if (write_errno != 0) throw std::runtime_error(path + ": cannot write " + tmp + ": " + ErrnoText(write_errno));
    if (::fsync(fd) != 0) throw std::runtime_error(path + ": cannot fsync " + tmp + ": " + ErrnoText(errno));
    int rc = ::close(fd);
    fd = -1;
    if (rc != 0) throw std::runtime_error(path + ": cannot write " + tmp + ": " + ErrnoText(errno));
    if (::rename(tmp.c_str(), path.c_str()) != 0)
      throw std::runtime_error(path + ": cannot rename " + tmp + " over it: " + ErrnoText(errno));
  } catch (...) {
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  // Make the rename durable (best effort).
  std::string dir = path.find('/') == std::string::npos ? "." : path.substr(0, path.rfind('/'));
  if (dir.empty()) dir = "/";
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

}  // namespace segtorch
