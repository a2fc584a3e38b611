// The fully connected CRF of Krähenbühl and Koltun ("Efficient Inference in Fully Connected CRFs
// with Gaussian Edge Potentials", NIPS 2011), as DeepLab v1/v2 post-process their predictions:
// mean-field inference with a Potts model over two Gaussian kernels, one on positions ("smoothness")
// and one on positions and colours ("appearance"), each filtered with the permutohedral lattice.
// Plain ATen on the CPU.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>

namespace segtorch {

// Every field is given by the caller (defaults, as pydensecrf's addPairwiseGaussian /
// addPairwiseBilateral and 5 iterations: lib/crf.ts; read by node/options.cc).
struct CrfOptions {
  bool enabled{};            // predict: apply the CRF after the (averaged) probabilities
  double gaussian_sxy{};     // position std (pixels) of the smoothness kernel
  double gaussian_compat{};  // its Potts weight (0 leaves it out)
  double bilateral_sxy{};    // position std (pixels) of the appearance kernel
  double bilateral_srgb{};   // colour std (0..255 units) of the appearance kernel
  double bilateral_compat{}; // its Potts weight (0 leaves it out)
  int64_t iterations{};      // mean-field iterations
};

// Refined probabilities [K,H,W] float32 for one image. image: [C,H,W] colours on a 0..255 scale
// (uint8 or floating point; every channel is a colour feature of the appearance kernel); probs:
// [K,H,W] probabilities, the unary is -log(max(p, 1e-5)). Each kernel is normalised symmetrically
// (D^-1/2 K D^-1/2 with D = K 1, the pixel's own term included), as pydensecrf's default.
at::Tensor DenseCrf(const at::Tensor& image, const at::Tensor& probs, const CrfOptions& options);

// Batched: images [N,C,H,W], probs [N,K,H,W]; tensors on any device, the CRF runs on the CPU and
// the result [N,K,H,W] float32 comes back on probs' device.
at::Tensor DenseCrfBatch(const at::Tensor& images, const at::Tensor& probs, const CrfOptions& options);

// Throws a RangeError-kind error naming the first option out of range.
void CheckCrfOptions(const CrfOptions& options);

}  // namespace segtorch
