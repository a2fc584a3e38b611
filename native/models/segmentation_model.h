// What every architecture is: a torch::nn::Module that maps normalised images [N,C,H,W] to logits
// [N,K,H,W] (plus named auxiliary outputs in training mode), and the configuration that builds it.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "base/thread_flag.h"

namespace segtorch {

struct ModelConfig {
  std::string arch = "fcn";
  std::string backbone = "resnet50";
  int64_t num_classes = 21;
  int64_t in_channels = 3;
  int64_t output_stride = 8;
  bool aux = false;
  std::vector<double> mean, std;
  std::string device = "cpu";
  // Architecture-specific options (TypeScript validates and fills them).
  std::map<std::string, double> numbers;
  std::map<std::string, std::string> strings;
  // The configuration as the user's JSON, stored in checkpoints.
  std::string json;
  // Limits when the configuration comes from a file (0: none): bytes libtorch may allocate while the
  // network is built, and its parameter count.
  int64_t max_build_bytes = 0;
  int64_t max_parameters = 0;

  double Number(const std::string& key, double def) const {
    auto it = numbers.find(key);
    return it == numbers.end() ? def : it->second;
  }
  std::string String(const std::string& key, const std::string& def) const {
    auto it = strings.find(key);
    return it == strings.end() ? def : it->second;
  }
};

struct SegOutput {
  torch::Tensor out;                                        // [N,K,H,W] logits at input size
  std::vector<std::pair<std::string, torch::Tensor>> aux;   // training-mode extras, e.g. {"aux", ...}
  // Set only under a DeferFinalResize: `out` is still at the network's own resolution, and its last
  // step, a bilinear resize to resize_to ({H, W}) with resize_align_corners, is left to the caller.
  std::vector<int64_t> resize_to;
  bool resize_align_corners = false;
};

// The network's last step: out.out = logits resized bilinearly to x's size (align_corners as the
// reference implementation has it); under a DeferFinalResize on this thread, out.out = logits as they
// are, the resize noted in out.resize_to for the caller to fuse with what follows (predict's labels:
// infer/labels.h).
void SetLogits(SegOutput& out, const torch::Tensor& logits, const torch::Tensor& x, bool align_corners = false);

// A network's output (logits, auxiliary logits, depth) resized to the input `like`. With gradients
// the small map is resized in NCHW: the loss's log_softmax over channels takes NCHW (it copied a
// channels-last output, and its gradient was copied back for the resize's backward), and a bilinear
// resize of a few channels runs faster NCHW (PyTorch 2.15, 21 channels 32 x 32 -> 256 x 256 with the
// cross-entropy, forward and backward: 33 ms against 37); the gradient goes back to the network in
// the output's own layout, so that the convolution before it gets it as its forward ran. Without
// gradients (predict, evaluate, exported graphs) ResizeLike, the layout kept.
torch::Tensor ResizeOutput(const torch::Tensor& x, const torch::Tensor& like, bool align_corners = false);

// Runs a resize SetLogits deferred (none: nothing to do).
void ApplyDeferredResize(SegOutput& out);

// While one lives, SetLogits on this thread defers the final resize.
class DeferFinalResize : public ThreadFlagScope {
 public:
  DeferFinalResize();
};

class SegmentationModel : public torch::nn::Module {
 public:
  // x: normalised float images [N,C,H,W] whose H and W are multiples of input_multiple().
  virtual SegOutput forward(const torch::Tensor& x) = 0;
  // Inputs are padded (with the mean colour) to a multiple of this inside Segmenter, then cropped
  // back. 1: no padding, the network takes any size as its reference does (resizing to the input or
  // to the skip connection's size). Only architectures that cannot work otherwise override it: U-Net
  // (skip concatenations, 16), GCN (sums of upsampled and skip maps, 32), FCN-VGG (its crops, 32);
  // none of them has a global pooling that padding could leak into.
  virtual int64_t input_multiple() const { return 1; }
  // Loss of a named extra output (SegOutput::aux) against the labels [N,H,W] (int64). Return an
  // undefined tensor to leave the output out of the loss. Default: cross-entropy over the pixels
  // that are not ignore_index, labels resized (nearest) to the output's size when it differs
  // (ICNet's cascade label guidance uses exactly this).
  virtual torch::Tensor AuxLoss(const std::string& name, const torch::Tensor& output, const torch::Tensor& labels,
                                int64_t ignore_index);
  // Weight of that loss in the total; `requested` is the user's auxWeight (default 0.4).
  virtual double AuxWeight(const std::string& name, double requested) const { return requested; }
};

// Mean cross-entropy over pixels that are not ignore_index (0 when all are ignored).
torch::Tensor SegmentationCrossEntropy(const torch::Tensor& logits, const torch::Tensor& labels, int64_t ignore_index);
// Labels [N,H,W] resized to (h, w) with nearest neighbour.
torch::Tensor ResizeLabels(const torch::Tensor& labels, int64_t h, int64_t w);

using ModelPtr = std::shared_ptr<SegmentationModel>;
using ModelFactory = std::function<ModelPtr(const ModelConfig&)>;

// What a factory accepts, checked in one place by CheckConfig (TypeScript checks the same first;
// this guards configurations read from model files and C++ callers): the backbone among
// `backbones`, outputStride among `strides` (empty: any), aux only when `aux`.
struct Accepts {
  std::vector<std::string> backbones;
  std::vector<int64_t> strides;
  bool aux = true;
};
inline const std::vector<std::string> kResNets = {"resnet18", "resnet34", "resnet50", "resnet101", "resnet152"};
inline std::vector<std::string> ResNetsAnd(const std::vector<std::string>& more) {
  std::vector<std::string> all = kResNets;
  all.insert(all.end(), more.begin(), more.end());
  return all;
}
// RangeError "Expected backbone a, b or c for <arch> but received x" (likewise outputStride, aux).
void CheckConfig(const ModelConfig& c, const Accepts& accepts);

// A channel-count option `key` (default `def`): a RangeError unless an integer in [1, 65536].
int64_t ChannelOption(const ModelConfig& c, const std::string& key, int64_t def);

// The registry (models/registry.cc): arch name -> factory.
ModelPtr CreateNetwork(const ModelConfig& config);
std::vector<std::string> Architectures();

}  // namespace segtorch
