// U-Net (Ronneberger, Fischer, Brox, MICCAI 2015): four down and four up levels with skip
// concatenation, no pretrained backbone. Padded 3x3 convolutions, so every level keeps its size and
// the output is at the input size (the paper's valid convolutions shrink the map and need an
// overlap-tile strategy instead). Modules: inc, down1..down4 (2x2 max pool + double conv), up1..up4
// (up: 2x2 transposed conv, or bilinear x2 + 1x1 conv, halving the channels; conv: double conv on
// the concatenation), outc (1x1 conv to the classes).
#pragma once
#include "models/segmentation_model.h"

namespace segtorch {
ModelPtr CreateUNet(const ModelConfig& config);
}
