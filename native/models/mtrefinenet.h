// Multi-task Light-Weight RefineNet (Nekrasov, Dharmasiri, Spek, Drummond, Shen, Reid: Real-Time
// Joint Semantic Segmentation and Depth Estimation Using Asymmetric Annotations, ICRA 2019): one
// shared Light-Weight RefineNet decoder, a segmentation head and a depth head.
#pragma once
#include "models/segmentation_model.h"

namespace segtorch {
ModelPtr CreateMTRefineNet(const ModelConfig& config);
}
