// Light-Weight RefineNet (Nekrasov, Shen, Reid: Light-Weight RefineNet for Real-Time Semantic
// Segmentation, BMVC 2018) on ResNet-18..152 or MobileNetV2, and the trunk it shares with the
// multi-task network (mtrefinenet).
#pragma once
#include "backbones/mobilenet_v2.h"
#include "backbones/resnet.h"
#include "blocks/conv2d.h"
#include "models/segmentation_model.h"

namespace segtorch {

ModelPtr CreateLWRefineNet(const ModelConfig& config);

// Backbone + Light-Weight RefineNet decoder up to its last chained residual pooling: 256 channels at
// 1/4 of the input. RefineNet's blocks with 1x1 instead of 3x3 convolutions, no RCUs, CRPs of four
// blocks. Parameter names follow DrSleep/light-weight-refinenet (ResNetLW: p_ims1d2_outl*_dimred,
// mflow_conv_g*_pool, ...; MBv2: conv3..conv8, crp1..crp4, conv_adapt2..4); the backbone is
// `backbone.*` with torchvision's names.
class LWRefineNetTrunk : public SegmentationModel {
 public:

 protected:
  // depthwise_last_crp: the last CRP's convolutions are depthwise (the multi-task network's).
  // align_corners: of the upsampling between decoder stages (true in the LW reference, false in
  // the multi-task one).
  LWRefineNetTrunk(const ModelConfig& config, bool depthwise_last_crp, bool align_corners);
  torch::Tensor Decode(const torch::Tensor& x);
  // ReLU for the ResNet decoder, ReLU6 for the MobileNetV2 one (as the reference).
  torch::Tensor Activation(const torch::Tensor& x) const { return mobile_ ? x.clamp(0, 6) : x.relu(); }
  static constexpr int64_t kWidth = 256;

 private:
  torch::Tensor DecodeResNet(const torch::Tensor& x);
  torch::Tensor DecodeMobileNet(const torch::Tensor& x);
  bool mobile_ = false;
  bool align_corners_ = true;
  ResNet resnet_{nullptr};
  MobileNetV2 mobilenet_{nullptr};

 public:
  // ResNet decoder
  Conv2d p_ims1d2_outl1_dimred{nullptr}, mflow_conv_g1_b3_joint_varout_dimred{nullptr};
  Conv2d p_ims1d2_outl2_dimred{nullptr}, adapt_stage2_b2_joint_varout_dimred{nullptr},
      mflow_conv_g2_b3_joint_varout_dimred{nullptr};
  Conv2d p_ims1d2_outl3_dimred{nullptr}, adapt_stage3_b2_joint_varout_dimred{nullptr},
      mflow_conv_g3_b3_joint_varout_dimred{nullptr};
  Conv2d p_ims1d2_outl4_dimred{nullptr}, adapt_stage4_b2_joint_varout_dimred{nullptr};
  torch::nn::Sequential mflow_conv_g1_pool{nullptr}, mflow_conv_g2_pool{nullptr}, mflow_conv_g3_pool{nullptr},
      mflow_conv_g4_pool{nullptr};
  // MobileNetV2 decoder
  Conv2d conv8{nullptr}, conv7{nullptr}, conv6{nullptr}, conv5{nullptr}, conv4{nullptr}, conv3{nullptr};
  torch::nn::Sequential crp4{nullptr}, crp3{nullptr}, crp2{nullptr}, crp1{nullptr};
  Conv2d conv_adapt4{nullptr}, conv_adapt3{nullptr}, conv_adapt2{nullptr};
};

}  // namespace segtorch
