#include "blocks/heads.h"
#include "blocks/batch_norm.h"
#include "blocks/conv2d.h"

namespace segtorch {

namespace nn = torch::nn;

nn::Sequential FCNHead(int64_t in_channels, int64_t num_classes) {
  int64_t inter = in_channels / 4;
  return nn::Sequential(Conv2d(nn::Conv2dOptions(in_channels, inter, 3).padding(1).bias(false)),
                        BatchNorm2d(inter), nn::ReLU(), nn::Dropout(0.1),
                        Conv2d(nn::Conv2dOptions(inter, num_classes, 1)));
}

}  // namespace segtorch
