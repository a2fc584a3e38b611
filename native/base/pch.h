// Precompiled header: <torch/torch.h> costs ~14 s per translation unit; compile it once.
#pragma once
#include <torch/torch.h>
