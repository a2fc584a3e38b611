#include "backbones/backbone.h"

#include <functional>
#include <map>

#include "backbones/mobilenet_v2.h"
#include "backbones/mobilenet_v3.h"
#include "backbones/resnet.h"
#include "backbones/vgg.h"
#include "backbones/xception.h"
#include "base/errors.h"

namespace segtorch {

namespace {
using Factory = std::function<BackbonePtr(int64_t in_channels, int64_t output_stride)>;

BackbonePtr MakeResNet(int64_t depth, int64_t in_channels, int64_t output_stride) {
  return std::make_shared<ResNetImpl>(ResNetOptions(depth).in_channels(in_channels).output_stride(output_stride));
}

// The one list of backbones.
const std::map<std::string, Factory>& Backbones() {
  static const std::map<std::string, Factory> backbones = {
      {"resnet18", [](int64_t c, int64_t os) { return MakeResNet(18, c, os); }},
      {"resnet34", [](int64_t c, int64_t os) { return MakeResNet(34, c, os); }},
      {"resnet50", [](int64_t c, int64_t os) { return MakeResNet(50, c, os); }},
      {"resnet101", [](int64_t c, int64_t os) { return MakeResNet(101, c, os); }},
      {"resnet152", [](int64_t c, int64_t os) { return MakeResNet(152, c, os); }},
      {"xception65", [](int64_t c, int64_t os) { return std::make_shared<XceptionImpl>(XceptionOptions().in_channels(c).output_stride(os)); }},
      {"vgg16", [](int64_t c, int64_t os) { return std::make_shared<VGGImpl>(VGGOptions(false).in_channels(c).output_stride(os)); }},
      {"vgg16_bn", [](int64_t c, int64_t os) { return std::make_shared<VGGImpl>(VGGOptions(true).in_channels(c).output_stride(os)); }},
      {"mobilenetv2", [](int64_t c, int64_t os) {
         return std::make_shared<MobileNetV2Impl>(MobileNetV2Options().in_channels(c).output_stride(os));
       }},
      {"mobilenetv3_large", [](int64_t c, int64_t os) {
         return std::make_shared<MobileNetV3Impl>(MobileNetV3Options().in_channels(c).output_stride(os));
       }},
  };
  return backbones;
}
}  // namespace

std::vector<std::string> BackboneNames() {
  std::vector<std::string> names;
  for (auto& kv : Backbones()) names.push_back(kv.first);
  return names;
}

BackbonePtr CreateBackbone(const std::string& name, int64_t in_channels, int64_t output_stride) {
  auto it = Backbones().find(name);
  if (it == Backbones().end()) {
    std::string allowed;
    for (auto& n : BackboneNames()) allowed += (allowed.empty() ? "" : ", ") + n;
    ThrowRange("Expected backbone to be one of " + allowed + " but received " + name);
  }
  return it->second(in_channels, output_stride);
}

}  // namespace segtorch
