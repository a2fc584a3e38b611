// Each RefineNet-k block: its backbone path through a 3x3 dimension reduction and two residual
// convolution units (RCUs: ReLU-conv-ReLU-conv, no BN); multi-resolution fusion (a 3x3 conv per
// input to the smallest width, upsampling to the largest resolution, sum; RefineNet-4 has a single
// input and skips it); chained residual pooling (ReLU, then `crpBlocks` [5x5 stride-1 max pool +
// 3x3 conv] blocks chained and summed into the path); one output RCU. 512 channels in RefineNet-4,
// 256 in the others; RefineNet-1 is followed by two extra RCUs and a 3x3 classifier at 1/4, then
// bilinear upsampling to the input size.
// Names follow DrSleep/refinenet-pytorch (p_ims1d2_outl*_dimred, adapt_stage*_b, mflow_conv_g*_...,
// clf_conv), whose network uses 4 CRP blocks and 3 output RCUs in RefineNet-4..2 where the paper
// has 2 and 1: crpBlocks 4 and outputRcus 3 give that network, name for name (118 M parameters on
// ResNet-101, the figure the Light-Weight RefineNet paper quotes), but without its dropout.
#include "models/refinenet.h"

#include "backbones/resnet.h"
#include "base/errors.h"
#include "blocks/conv2d.h"
#include "blocks/refinenet.h"
#include "blocks/relu.h"
#include "blocks/resize.h"

namespace segtorch {

namespace nn = torch::nn;

namespace {

Conv2d RefineConv3x3(int64_t in, int64_t out) { return Conv2d(nn::Conv2dOptions(in, out, 3).padding(1).bias(false)); }

class RefineNet : public SegmentationModel {
 public:
  explicit RefineNet(const ModelConfig& c) {
    if (c.output_stride != 32) ThrowRange("Expected outputStride 32 for refinenet but received " + std::to_string(c.output_stride));
    int64_t crp = static_cast<int64_t>(c.Number("crpBlocks", 2));
    if (crp < 1 || crp > 8) ThrowRange("Expected crpBlocks in [1, 8] for refinenet but received " + std::to_string(crp));
    int64_t rcus = static_cast<int64_t>(c.Number("outputRcus", 1));
    if (rcus < 1 || rcus > 8) ThrowRange("Expected outputRcus in [1, 8] for refinenet but received " + std::to_string(rcus));
    backbone_ = register_module("backbone", ResNet(ResNetOptions(ResNetDepth(c.backbone)).in_channels(c.in_channels)));
    auto ch = backbone_->channels();
    // RefineNet-4 (layer4, 512 channels)
    p_ims1d2_outl1_dimred = register_module("p_ims1d2_outl1_dimred", RefineConv3x3(ch[3], 512));
    adapt_stage1_b = register_module("adapt_stage1_b", RCUStack(512, 2));
    mflow_conv_g1_pool = register_module("mflow_conv_g1_pool", CRPStack(512, crp, 3));
    mflow_conv_g1_b = register_module("mflow_conv_g1_b", RCUStack(512, rcus));
    mflow_conv_g1_b3_joint_varout_dimred = register_module("mflow_conv_g1_b3_joint_varout_dimred", RefineConv3x3(512, 256));
    // RefineNet-3 (layer3 + RefineNet-4)
    p_ims1d2_outl2_dimred = register_module("p_ims1d2_outl2_dimred", RefineConv3x3(ch[2], 256));
    adapt_stage2_b = register_module("adapt_stage2_b", RCUStack(256, 2));
    adapt_stage2_b2_joint_varout_dimred = register_module("adapt_stage2_b2_joint_varout_dimred", RefineConv3x3(256, 256));
    mflow_conv_g2_pool = register_module("mflow_conv_g2_pool", CRPStack(256, crp, 3));
    mflow_conv_g2_b = register_module("mflow_conv_g2_b", RCUStack(256, rcus));
    mflow_conv_g2_b3_joint_varout_dimred = register_module("mflow_conv_g2_b3_joint_varout_dimred", RefineConv3x3(256, 256));
    // RefineNet-2 (layer2 + RefineNet-3)
    p_ims1d2_outl3_dimred = register_module("p_ims1d2_outl3_dimred", RefineConv3x3(ch[1], 256));
    adapt_stage3_b = register_module("adapt_stage3_b", RCUStack(256, 2));
    adapt_stage3_b2_joint_varout_dimred = register_module("adapt_stage3_b2_joint_varout_dimred", RefineConv3x3(256, 256));
    mflow_conv_g3_pool = register_module("mflow_conv_g3_pool", CRPStack(256, crp, 3));
    mflow_conv_g3_b = register_module("mflow_conv_g3_b", RCUStack(256, rcus));
    mflow_conv_g3_b3_joint_varout_dimred = register_module("mflow_conv_g3_b3_joint_varout_dimred", RefineConv3x3(256, 256));
    // RefineNet-1 (layer1 + RefineNet-2); its output RCU and the two extra RCUs before the classifier
    // (3 RCUs whatever outputRcus says, as the reference)
    p_ims1d2_outl4_dimred = register_module("p_ims1d2_outl4_dimred", RefineConv3x3(ch[0], 256));
    adapt_stage4_b = register_module("adapt_stage4_b", RCUStack(256, 2));
    adapt_stage4_b2_joint_varout_dimred = register_module("adapt_stage4_b2_joint_varout_dimred", RefineConv3x3(256, 256));
    mflow_conv_g4_pool = register_module("mflow_conv_g4_pool", CRPStack(256, crp, 3));
    mflow_conv_g4_b = register_module("mflow_conv_g4_b", RCUStack(256, 3));
    clf_conv = register_module("clf_conv", Conv2d(nn::Conv2dOptions(256, c.num_classes, 3).padding(1).bias(true)));
  }

  SegOutput forward(const torch::Tensor& x) override {
    auto f = backbone_->forward(x);
    // The reference upsamples between blocks with align_corners=True.
    // Each coarser path is upsampled (align_corners=True, as the reference) as it is added to the finer one.
    auto add_up = [](torch::Tensor fine, const torch::Tensor& coarse) { return AddResized(std::move(fine), coarse, /*align_corners=*/true); };
    auto x4 = adapt_stage1_b->forward(p_ims1d2_outl1_dimred(f[3]));
    x4 = mflow_conv_g1_b->forward(mflow_conv_g1_pool->forward(Relu(x4)));
    x4 = mflow_conv_g1_b3_joint_varout_dimred(x4);

    auto x3 = adapt_stage2_b2_joint_varout_dimred(adapt_stage2_b->forward(p_ims1d2_outl2_dimred(f[2])));
    x3 = mflow_conv_g2_b->forward(mflow_conv_g2_pool->forward(ReluInPlace(add_up(std::move(x3), x4))));
    x3 = mflow_conv_g2_b3_joint_varout_dimred(x3);

    auto x2 = adapt_stage3_b2_joint_varout_dimred(adapt_stage3_b->forward(p_ims1d2_outl3_dimred(f[1])));
    x2 = mflow_conv_g3_b->forward(mflow_conv_g3_pool->forward(ReluInPlace(add_up(std::move(x2), x3))));
    x2 = mflow_conv_g3_b3_joint_varout_dimred(x2);

    auto x1 = adapt_stage4_b2_joint_varout_dimred(adapt_stage4_b->forward(p_ims1d2_outl4_dimred(f[0])));
    x1 = mflow_conv_g4_b->forward(mflow_conv_g4_pool->forward(ReluInPlace(add_up(std::move(x1), x2))));
    SegOutput out;
    SetLogits(out, clf_conv(x1), x);
    return out;
  }

 private:
  ResNet backbone_{nullptr};

 public:
  // The decoder, named as the reference port names it.
  Conv2d p_ims1d2_outl1_dimred{nullptr}, mflow_conv_g1_b3_joint_varout_dimred{nullptr};
  Conv2d p_ims1d2_outl2_dimred{nullptr}, adapt_stage2_b2_joint_varout_dimred{nullptr},
      mflow_conv_g2_b3_joint_varout_dimred{nullptr};
  Conv2d p_ims1d2_outl3_dimred{nullptr}, adapt_stage3_b2_joint_varout_dimred{nullptr},
      mflow_conv_g3_b3_joint_varout_dimred{nullptr};
  Conv2d p_ims1d2_outl4_dimred{nullptr}, adapt_stage4_b2_joint_varout_dimred{nullptr}, clf_conv{nullptr};
  nn::Sequential adapt_stage1_b{nullptr}, mflow_conv_g1_pool{nullptr}, mflow_conv_g1_b{nullptr};
  nn::Sequential adapt_stage2_b{nullptr}, mflow_conv_g2_pool{nullptr}, mflow_conv_g2_b{nullptr};
  nn::Sequential adapt_stage3_b{nullptr}, mflow_conv_g3_pool{nullptr}, mflow_conv_g3_b{nullptr};
  nn::Sequential adapt_stage4_b{nullptr}, mflow_conv_g4_pool{nullptr}, mflow_conv_g4_b{nullptr};
};

}  // namespace

ModelPtr CreateRefineNet(const ModelConfig& c) {
  CheckConfig(c, {kResNets});
  return std::make_shared<RefineNet>(c);
}

}  // namespace segtorch
