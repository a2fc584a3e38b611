// Reading and writing PyTorch state dicts in the zip format of Python's torch.save (the default
// since PyTorch 1.6), without Python and without torch::pickle_load (whose unpickler cannot rebuild
// the collections.OrderedDict that Module.state_dict() returns).
//
// Plain C++ (no Node-API types). Works with libtorch 1.13 and 2.x.
#pragma once
#include <ATen/ATen.h>

#include <string>
#include <utility>
#include <vector>

namespace segtorch {

class Archive;
using TensorList = std::vector<std::pair<std::string, at::Tensor>>;

// Reads `path`, a file written by Python's `torch.save(obj, path)` where obj is a flat dict
// (collections.OrderedDict or dict) of name -> tensor, e.g. `model.state_dict()`.
//
// Returns the (string key, tensor) pairs in file order. Tensors are dense, on the CPU, contiguous,
// with the dtype, shape and values saved; requires_grad is not restored. A tensor that exactly spans
// its saved storage keeps that memory (two such tensors saved from one storage, e.g. tied weights,
// then share it, as they do after Python's torch.load); any other tensor is a compact copy.
// Entries whose key is not a string or whose value is not a tensor (nested dicts, numbers, ...) are
// skipped; a file that holds no tensor at all is an error.
//
// The file is read whole and checked first (io/archive.h: zip structure, every record's CRC-32,
// bounded inflation). The pickle is run by a small, strict VM: only the opcodes and globals that
// torch.save emits for a state dict are accepted, nesting (64 levels) and value counts (2^20) are
// capped, and every tensor's storage, size, stride and offset are checked against the bytes its record
// really holds before anything is allocated (a view with more elements than its storage is refused). Throws std::runtime_error (the message starts with `path`) for a missing
// file, a file that is not a PyTorch zip checkpoint (legacy non-zip torch.save files, truncated or
// corrupt zips), a TorchScript archive, an unsupported pickle opcode or global (e.g. a whole
// nn.Module saved with torch.save(model)), an unsupported dtype, or inconsistent tensor data.
TensorList ReadStateDict(const std::string& path);

// The same reader on pickle record `pickle` of a checked archive (storages in data/).
TensorList ReadTensorDict(const Archive& archive, const std::string& pickle);

// Runs pickle record `pickle` of a TorchScript archive without building anything: any class is an
// opaque value, but nesting and value counts are capped and every tensor's storage (in storage_dir,
// e.g. "data/" or "constants/") is bounds-checked as above. Throws std::runtime_error.
void CheckPickle(const Archive& archive, const std::string& pickle, const std::string& storage_dir);

// Writes `tensors` to `path` so that Python's `torch.load(path)` (PyTorch >= 1.6, including 2.x with
// its default weights_only=True) returns a collections.OrderedDict of the same keys, in the same order,
// mapped to CPU tensors of the same dtypes, shapes and values (saved contiguous, requires_grad False).
//
// Tensors may live on any device (they are copied to the CPU) and have any strides. Supported dtypes:
// float32/64, float16, bfloat16, int64/32/16/8, uint8, bool, complex64/128. Keys must be unique and
// valid UTF-8. The write is atomic: the archive goes to `path + ".tmp-<pid>"`, is fsync'ed, then
// renamed over `path`; on failure the temporary file is removed and `path` is left as it was.
// Throws std::runtime_error on invalid input or I/O errors.
void WriteStateDict(const std::string& path, const TensorList& tensors);

// The same archive with several tensor dicts (each pickle record's storages are distinct records under
// data/) and extra records holding bytes as given (e.g. "segtorch.json"). Atomic like WriteStateDict.
void WriteTensorArchive(const std::string& path, const std::vector<std::pair<std::string, TensorList>>& pickles,
                        const std::vector<std::pair<std::string, std::string>>& records);

}  // namespace segtorch
