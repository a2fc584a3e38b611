// Batch transforms for the data loader: resize / pad (evaluation) and random scale, crop, flip and
// photometric jitter (training) on uint8 images, with masks resampled by nearest neighbour only.
// Plain ATen, no Node-API: a C++ user can call AugmentBatch directly.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

namespace segtorch {

struct AugmentOptions {
  // Deterministic (evaluation) transforms.
  int64_t resize_h = 0, resize_w = 0;  // resample every sample to this size first (0: keep)
  int64_t pad_h = 0, pad_w = 0;        // without a crop: pad bottom/right to at least this size
  bool pad_to_batch = false;           // without a crop: pad bottom/right to the batch's largest size
  // Random (training) transforms; every random draw comes from the seed.
  double scale_min = 1.0, scale_max = 1.0;  // factor on the (resized) size
  int64_t crop_h = 0, crop_w = 0;           // random crop to this size, padded where the image is smaller
  bool flip = false;                        // horizontal flip with probability 1/2
  double brightness = 0, contrast = 0, saturation = 0, hue = 0;  // factors 1 +- x; hue shift +- x turns
  // Filling and output.
  int64_t ignore_index = 255;  // mask padding
  std::vector<double> fill;    // image padding per channel (0..255); empty: 0
  float depth_fill = 0.f;      // depth padding (0 = invalid for the depth losses)
  std::vector<double> mean, std;  // non-empty: float32 images (x / 255 - mean) / std
};

// Tensors of any strides (views are read in place). AugmentBatch runs plain loops only, no ATen
// parallel operation, so it stays on the calling thread.
struct AugmentSample {
  at::Tensor image;  // uint8 [H, W, C] (interleaved, as decoders produce it, or a view of [C, H, W])
  at::Tensor mask;   // uint8 [H, W], or undefined
  at::Tensor depth;  // float32 [H, W], or undefined
};

struct AugmentResult {
  at::Tensor images;  // uint8 [N, C, H, W], or float32 with mean/std
  at::Tensor masks;   // uint8 [N, H, W] (undefined when the samples have none)
  at::Tensor depth;   // float32 [N, H, W] (undefined when the samples have none)
};

// Transforms a batch. Sample i draws its random numbers from (seed, i) only, so a batch is
// reproducible whatever thread runs it. Samples of different sizes need a crop, a resize or
// padding to a common size; otherwise a RangeError names the sizes.
AugmentResult AugmentBatch(const std::vector<AugmentSample>& samples, const AugmentOptions& options, uint64_t seed);

}  // namespace segtorch
