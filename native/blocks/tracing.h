// Whether libtorch's tracer is recording this thread's operations (export/export.h). Fast paths
// that rewrite weights or reshape by computed sizes (the sub-pixel transposed convolution, the
// space-to-batch dilated convolution) take the plain operator then, so that exported graphs hold
// standard operations (ConvTranspose, a dilated Conv) whose sizes follow the input's.
// predict's compiled path traces at one fixed size (infer/compiled_net.h): the fast paths stay on.
#pragma once
#include <torch/csrc/jit/frontend/tracer.h>

#include "infer/compiled_net.h"

namespace segtorch {

inline bool Tracing() { return torch::jit::tracer::isTracing() && !TracingFixedSize(); }

}  // namespace segtorch
