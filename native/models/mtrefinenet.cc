// The shared trunk is lwrefinenet's (its last CRP with depthwise convolutions, as the reference);
// each task head is a depthwise 1x1 convolution, ReLU6, and a 3x3 convolution (pre_segm/segm with
// numClasses channels, pre_depth/depth with one), both at 1/4 and upsampled to the input size.
// The depth map is the extra output "depth" in training and in eval mode.
#include "models/mtrefinenet.h"

#include "blocks/conv2d.h"
#include "blocks/resize.h"
#include "models/lwrefinenet.h"

namespace segtorch {

namespace nn = torch::nn;

namespace {

Conv2d DepthwiseConv1x1(int64_t channels) {
  return Conv2d(nn::Conv2dOptions(channels, channels, 1).groups(channels).bias(false));
}
Conv2d MtConv3x3(int64_t in, int64_t out) { return Conv2d(nn::Conv2dOptions(in, out, 3).padding(1).bias(true)); }

class MTRefineNet : public LWRefineNetTrunk {
 public:
  explicit MTRefineNet(const ModelConfig& c) : LWRefineNetTrunk(c, /*depthwise_last_crp=*/true, /*align_corners=*/false) {
    pre_depth = register_module("pre_depth", DepthwiseConv1x1(kWidth));
    depth = register_module("depth", MtConv3x3(kWidth, 1));
    pre_segm = register_module("pre_segm", DepthwiseConv1x1(kWidth));
    segm = register_module("segm", MtConv3x3(kWidth, c.num_classes));
  }
  SegOutput forward(const torch::Tensor& x) override {
    auto shared = Decode(x);
    SegOutput out;
    SetLogits(out, segm(Activation(pre_segm(shared))), x);
    out.aux.emplace_back("depth", ResizeOutput(depth(Activation(pre_depth(shared))), x));
    return out;
  }
  // Depth needs depth targets, which trainStep does not take yet: left out of the loss.
  torch::Tensor AuxLoss(const std::string& name, const torch::Tensor& output, const torch::Tensor& labels,
                        int64_t ignore_index) override {
    if (name == "depth") return {};
    return SegmentationModel::AuxLoss(name, output, labels, ignore_index);
  }

  Conv2d pre_depth{nullptr}, depth{nullptr}, pre_segm{nullptr}, segm{nullptr};
};

}  // namespace

ModelPtr CreateMTRefineNet(const ModelConfig& c) { return std::make_shared<MTRefineNet>(c); }

}  // namespace segtorch
