#include "backbones/resnet.h"
#include "blocks/batch_norm.h"
#include "blocks/conv2d.h"
#include "blocks/max_pool.h"

#include "base/errors.h"

namespace segtorch {

namespace nn = torch::nn;

namespace {

Conv2d Conv3x3(int64_t in, int64_t out, int64_t stride, int64_t dilation) {
  return Conv2d(nn::Conv2dOptions(in, out, 3).stride(stride).padding(dilation).dilation(dilation).bias(false));
}
Conv2d Conv1x1(int64_t in, int64_t out, int64_t stride = 1) {
  return Conv2d(nn::Conv2dOptions(in, out, 1).stride(stride).bias(false));
}

class BasicBlockImpl : public nn::Module {
 public:
  static constexpr int64_t kExpansion = 1;
  BasicBlockImpl(int64_t inplanes, int64_t planes, int64_t stride, nn::Sequential downsample, int64_t dilation,
                 int64_t previous_dilation)
      : conv1(register_module("conv1", Conv3x3(inplanes, planes, stride, previous_dilation))),
        bn1(register_module("bn1", BatchNorm2d(planes))),
        conv2(register_module("conv2", Conv3x3(planes, planes, 1, dilation))),
        bn2(register_module("bn2", BatchNorm2d(planes))),
        downsample(downsample) {
    if (downsample) register_module("downsample", downsample);
  }
  torch::Tensor forward(torch::Tensor x) {
    torch::Tensor identity = downsample ? downsample->forward(x) : x;
    torch::Tensor out = ConvBnAct(*conv1, *bn1, x, /*relu=*/true);
    x.reset();  // the identity holds the input alone now: the addition may write into it (ConvBnAct)
    return ConvBnAct(*conv2, *bn2, out, /*relu=*/true, std::move(identity));
  }
  Conv2d conv1;
  BatchNorm2d bn1;
  Conv2d conv2;
  BatchNorm2d bn2;
  nn::Sequential downsample;
};
TORCH_MODULE(BasicBlock);

class BottleneckImpl : public nn::Module {
 public:
  static constexpr int64_t kExpansion = 4;
  // torchvision: the first block of a layer uses the previous dilation in its 3x3 conv.
  BottleneckImpl(int64_t inplanes, int64_t planes, int64_t stride, nn::Sequential downsample, int64_t dilation)
      : conv1(register_module("conv1", Conv1x1(inplanes, planes))),
        bn1(register_module("bn1", BatchNorm2d(planes))),
        conv2(register_module("conv2", Conv3x3(planes, planes, stride, dilation))),
        bn2(register_module("bn2", BatchNorm2d(planes))),
        conv3(register_module("conv3", Conv1x1(planes, planes * kExpansion))),
        bn3(register_module("bn3", BatchNorm2d(planes * kExpansion))),
        downsample(downsample) {
    if (downsample) register_module("downsample", downsample);
  }
  torch::Tensor forward(torch::Tensor x) {
    torch::Tensor identity = downsample ? downsample->forward(x) : x;
    torch::Tensor out = ConvBnAct(*conv1, *bn1, x, /*relu=*/true);
    x.reset();  // the identity holds the input alone now: the addition may write into it (ConvBnAct)
    out = ConvBnAct(*conv2, *bn2, out, /*relu=*/true);
    return ConvBnAct(*conv3, *bn3, out, /*relu=*/true, std::move(identity));
  }
  Conv2d conv1;
  BatchNorm2d bn1;
  Conv2d conv2;
  BatchNorm2d bn2;
  Conv2d conv3;
  BatchNorm2d bn3;
  nn::Sequential downsample;
};
TORCH_MODULE(Bottleneck);

}  // namespace

bool IsResNet(const std::string& name) {
  return name == "resnet18" || name == "resnet34" || name == "resnet50" || name == "resnet101" || name == "resnet152";
}

int64_t ResNetDepth(const std::string& name) {
  if (!IsResNet(name)) ThrowRange("Expected a ResNet backbone (resnet18, resnet34, resnet50, resnet101, resnet152) but received " + name);
  return std::stoll(name.substr(6));
}

ResNetImpl::ResNetImpl(const ResNetOptions& o) {
  std::vector<int64_t> blocks;
  bool bottleneck = true;
  switch (o.depth()) {
    case 18: blocks = {2, 2, 2, 2}; bottleneck = false; break;
    case 34: blocks = {3, 4, 6, 3}; bottleneck = false; break;
    case 50: blocks = {3, 4, 6, 3}; break;
    case 101: blocks = {3, 4, 23, 3}; break;
    case 152: blocks = {3, 8, 36, 3}; break;
    default: ThrowRange("Expected ResNet depth 18, 34, 50, 101 or 152 but received " + std::to_string(o.depth()));
  }
  bool dilate3 = false, dilate4 = false;
  switch (o.output_stride()) {
    case 32: break;
    case 16: dilate4 = true; break;
    case 8: dilate3 = dilate4 = true; break;
    default: ThrowRange("Expected outputStride 8, 16 or 32 but received " + std::to_string(o.output_stride()));
  }
  if (o.in_channels() < 1) ThrowRange("Expected inChannels >= 1 but received " + std::to_string(o.in_channels()));
  conv1 = register_module("conv1", Conv2d(nn::Conv2dOptions(o.in_channels(), 64, 7).stride(2).padding(3).bias(false)));
  bn1 = register_module("bn1", BatchNorm2d(64));
  layer1 = register_module("layer1", make_layer(bottleneck, 64, blocks[0], 1, false));
  layer2 = register_module("layer2", make_layer(bottleneck, 128, blocks[1], 2, false));
  layer3 = register_module("layer3", make_layer(bottleneck, 256, blocks[2], 2, dilate3));
  layer4 = register_module("layer4", make_layer(bottleneck, 512, blocks[3], 2, dilate4));
  int64_t e = bottleneck ? 4 : 1;
  channels_ = {64 * e, 128 * e, 256 * e, 512 * e};
  strides_ = {4, 8, dilate3 ? 8 : 16, o.output_stride()};

  // torchvision's initialisation
  for (auto& m : modules(/*include_self=*/false)) {
    if (auto* conv = m->as<torch::nn::Conv2d>()) {
      nn::init::kaiming_normal_(conv->weight, 0.0, torch::kFanOut, torch::kReLU);
    } else if (auto* bn = m->as<BatchNorm2d>()) {
      nn::init::constant_(bn->weight, 1.0);
      nn::init::constant_(bn->bias, 0.0);
    }
  }
}

nn::Sequential ResNetImpl::make_layer(bool bottleneck, int64_t planes, int64_t blocks, int64_t stride, bool dilate) {
  int64_t expansion = bottleneck ? 4 : 1;
  int64_t previous_dilation = dilation_;
  if (dilate) {
    dilation_ *= stride;
    stride = 1;
  }
  nn::Sequential downsample{nullptr};
  if (stride != 1 || inplanes_ != planes * expansion) {
    downsample = nn::Sequential(Conv1x1(inplanes_, planes * expansion, stride), BatchNorm2d(planes * expansion));
  }
  nn::Sequential layer;
  if (bottleneck) {
    layer->push_back(Bottleneck(inplanes_, planes, stride, downsample, previous_dilation));
  } else {
    // torchvision's BasicBlock refuses dilation. Ours: the conv that replaces the stride keeps the
    // previous dilation (as the Bottleneck's 3x3 does), the second conv already sees the new one.
    layer->push_back(BasicBlock(inplanes_, planes, stride, downsample, dilation_, previous_dilation));
  }
  inplanes_ = planes * expansion;
  for (int64_t i = 1; i < blocks; ++i) {
    if (bottleneck) {
      layer->push_back(Bottleneck(inplanes_, planes, 1, nn::Sequential{nullptr}, dilation_));
    } else {
      layer->push_back(BasicBlock(inplanes_, planes, 1, nn::Sequential{nullptr}, dilation_, dilation_));
    }
  }
  return layer;
}

torch::Tensor ResNetImpl::stem(torch::Tensor x) {
  x = ConvBnAct(*conv1, *bn1, x, /*relu=*/true);
  return MaxPool2d(x, 3, 2, 1);
}

std::vector<torch::Tensor> ResNetImpl::forward(torch::Tensor x) {
  x = stem(x);
  auto c1 = layer1->forward(std::move(x));
  auto c2 = layer2->forward(c1);
  auto c3 = layer3->forward(c2);
  auto c4 = layer4->forward(c3);
  return {c1, c2, c3, c4};
}

}  // namespace segtorch
