// The one list to edit when adding an architecture.
#include <map>

#include "base/errors.h"
#include "models/deeplabv1.h"
#include "models/deeplabv2.h"
#include "models/deeplabv3.h"
#include "models/deeplabv3plus.h"
#include "models/dilated.h"
#include "models/fcn.h"
#include "models/dfn.h"
#include "models/gcn.h"
#include "models/icnet.h"
#include "models/lraspp.h"
#include "models/lwrefinenet.h"
#include "models/mtrefinenet.h"
#include "models/pspnet.h"
#include "models/refinenet.h"
#include "models/segmentation_model.h"
#include "models/segnet.h"
#include "models/unet.h"
#include "models/upernet.h"

namespace segtorch {

namespace {
const std::map<std::string, ModelFactory>& ModelRegistry() {
  static const std::map<std::string, ModelFactory> registry = {
      {"deeplabv1", CreateDeepLabV1},
      {"deeplabv2", CreateDeepLabV2},
      {"deeplabv3", CreateDeepLabV3},
      {"deeplabv3plus", CreateDeepLabV3Plus},
      {"pspnet", CreatePSPNet},
      {"upernet", CreateUPerNet},
      {"dilated", CreateDilated},
      {"fcn", CreateFCN},
      {"segnet", CreateSegNet},
      {"unet", CreateUNet},
      {"dfn", CreateDFN},
      {"gcn", CreateGCN},
      {"icnet", CreateICNet},
      {"lraspp", CreateLRASPP},
      {"lwrefinenet", CreateLWRefineNet},
      {"mtrefinenet", CreateMTRefineNet},
      {"refinenet", CreateRefineNet},
  };
  return registry;
}
}  // namespace

std::vector<std::string> Architectures() {
  std::vector<std::string> names;
  for (auto& kv : ModelRegistry()) names.push_back(kv.first);
  return names;
}

ModelPtr CreateNetwork(const ModelConfig& config) {
  auto it = ModelRegistry().find(config.arch);
  if (it == ModelRegistry().end()) {
    std::string allowed;
    for (auto& n : Architectures()) allowed += (allowed.empty() ? "" : ", ") + n;
    ThrowRange("Expected arch to be one of " + allowed + " but received " + config.arch);
  }
  return it->second(config);
}

}  // namespace segtorch
