// The permutohedral lattice (Adams, Baek and Davis, "Fast High-Dimensional Filtering Using the
// Permutohedral Lattice", Eurographics 2010): Gaussian filtering of N points with d-dimensional
// features in O(N (d+1)) per value channel, by splatting each point onto the d+1 vertices of its
// enclosing simplex, blurring the lattice along its d+1 axes with [1/2 1 1/2] and slicing back.
// Plain C++ over float buffers; the lattice is built once and then filters any number of signals.
#pragma once
#include <cstdint>
#include <vector>

namespace segtorch {

class PermutohedralLattice {
 public:
  static constexpr int kMaxDims = 32;

  // features: n x d, row-major, already divided by the Gaussian's standard deviations, so that the
  // filter approximates sum_j exp(-|f_i - f_j|^2 / 2) v_j (up to a constant factor; see Filter).
  PermutohedralLattice(const float* features, int64_t n, int d);

  // out[i] = sum over j of w(i, j) * in[j] for every value channel: in and out are n x vd
  // row-major (out may not alias in). w approximates c * exp(-|f_i - f_j|^2 / 2) with a constant c
  // close to 1 (the lattice's blur normalised so that a lattice vertex keeps weight 1).
  // Not reentrant: one Filter at a time per lattice (it reuses its scratch buffers).
  // Optional per-point factors, fused into the splat and the slice: in_scale[j] multiplies
  // in[j] and out_scale[i] the result; with accumulate, the result is added to out.
  void Filter(const float* in, float* out, int vd, const float* in_scale = nullptr, const float* out_scale = nullptr,
              bool accumulate = false);

  int64_t points() const { return static_cast<int64_t>(num_points_); }
  int dims() const { return d_; }

 private:
  int d_;
  int64_t n_;
  int32_t num_points_ = 0;
  std::vector<int32_t> offsets_;  // n x (d+1): the lattice vertex of each simplex corner
  std::vector<float> weights_;    // n x (d+1): barycentric weights
  std::vector<int32_t> neighbours_;  // points x (d+1) x 2: vertex index of -1 / +1 along each axis, or -1
  std::vector<float> values_, next_;  // scratch: points x vd
};

}  // namespace segtorch
