// Export of our networks: libtorch's tracer (torch::jit::tracer) over the eval-mode forward of a
// copy with every foldable BatchNorm folded (infer/folded_net.h), made size-independent where the
// network allows it, saved as a TorchScript module (Python's torch.jit.load and our
// loadTorchScript read it) or described node by node for a converter in another language (the
// ONNX converter is lib/export/onnx.ts). Plain libtorch.
//
// Dynamic sizes: the C++ tracer records every size our code computes from a tensor's shape as a
// constant. The network is therefore traced twice, at two batch sizes and input sizes; the
// constants that differ between the two traces are sizes, and each is rewritten as the size of a
// tensor of the graph (aten::size, times or divided by 2..32) that matches it in both traces. The
// result is checked against the network at a third size; when that check or the rewrite fails, the
// export is refused with the reason (a UserError). A fixed-size export (dynamic = false) takes
// batch 1 and the example's size (any size that pads to the same multiple of the input multiple).
#pragma once
#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "models/segmentation_model.h"

namespace torch {
namespace jit {
struct Graph;
struct Module;
}  // namespace jit
}  // namespace torch

namespace segtorch {

struct ExportOptions {
  int64_t height = 64, width = 64;  // the example size (what a fixed-size export takes)
  bool dynamic = true;              // size-independent (refused when the network does not allow it)
  // The weights' and the computation's type: kFloat, or kBFloat16 (the graph casts the float32
  // input to it and its logits back to float32: the interface stays float32).
  at::ScalarType dtype = at::kFloat;
};

// A tensor constant's key: its data pointer and element count (the tracer holds parameters, not copies).
using TensorKey = std::pair<const void*, int64_t>;

struct ExportGraph {
  // One input: normalised float32 images [N, C, H, W]; one output: logits [N, K, H, W] float32.
  // Padding to the network's input multiple and the crop back are part of the graph.
  std::shared_ptr<torch::jit::Graph> graph;
  // Names (as in a state dict) of the tensor constants that are parameters or buffers.
  std::map<TensorKey, std::pair<std::string, bool>> names;  // key -> (name, is_buffer)
  bool dynamic = false;
  std::string note;          // "" or what the export is
  int64_t batch = 1, height = 0, width = 0;  // what a fixed-size export takes
  int64_t input_multiple = 1;
};

// Traces the folded copy of `source` (an architecture built from `config`, on `device`).
ExportGraph TraceForExport(const ModelConfig& config, SegmentationModel& source, const torch::Device& device,
                           const ExportOptions& options);

// The TorchScript module of an export: parameters and buffers as attributes under their state-dict
// names (submodules per dotted prefix), forward(x) = the graph.
torch::jit::Module ToTorchScript(const ExportGraph& e, const std::string& arch);
// ToTorchScript(e, arch) saved to `path` with `metadata` as the archive's extra file
// "segtorch.json" (Python: torch.jit.load(path, _extra_files={'segtorch.json': ''})): written to a
// temporary file, fsynced, renamed over `path`.
void SaveTorchScript(const ExportGraph& e, const std::string& arch, const std::string& path, const std::string& metadata);

// The graph node by node, for converters outside libtorch.
struct GraphDescription {
  struct ValueInfo {
    std::string type;            // "Tensor", "int", "int[]", "float", "bool", "NoneType", "Tensor[]", ...
    std::vector<int64_t> sizes;  // a tensor's sizes in the trace (empty when unknown)
    std::string dtype;           // a tensor's dtype in the trace ("" when unknown)
  };
  struct NodeInfo {
    std::string kind;  // "aten::_convolution", "prim::Constant", "prim::ListConstruct", ...
    std::vector<int64_t> inputs, outputs;  // indices into values
    c10::IValue constant;                  // prim::Constant: its value
    std::string name;                      // a tensor constant that is a parameter: its name
  };
  std::vector<ValueInfo> values;
  std::vector<NodeInfo> nodes;
  int64_t input = 0, output = 0;
};
GraphDescription Describe(const ExportGraph& e);

}  // namespace segtorch
