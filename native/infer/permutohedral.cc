#include "infer/permutohedral.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "base/errors.h"

namespace segtorch {

namespace {

// Open-addressing hash table from a lattice vertex (its first d coordinates; the last one is minus
// their sum) to a dense index. Grows when half full.
class VertexTable {
 public:
  explicit VertexTable(int d, int64_t expected) : d_(d) {
    int64_t cap = 64;
    while (cap < expected * 2) cap <<= 1;
    slots_.assign(static_cast<size_t>(cap), -1);
    mask_ = static_cast<uint64_t>(cap - 1);
  }

  int32_t FindOrInsert(const int32_t* key) {
    if ((size() + 1) * 2 > static_cast<int64_t>(slots_.size())) Grow();
    uint64_t h = Hash(key) & mask_;
    while (true) {
      int32_t s = slots_[h];
      if (s < 0) {
        s = static_cast<int32_t>(size());
        keys_.insert(keys_.end(), key, key + d_);
        slots_[h] = s;
        return s;
      }
      if (std::memcmp(&keys_[static_cast<size_t>(s) * d_], key, sizeof(int32_t) * d_) == 0) return s;
      h = (h + 1) & mask_;
    }
  }

  int32_t Find(const int32_t* key) const {
    uint64_t h = Hash(key) & mask_;
    while (true) {
      int32_t s = slots_[h];
      if (s < 0) return -1;
      if (std::memcmp(&keys_[static_cast<size_t>(s) * d_], key, sizeof(int32_t) * d_) == 0) return s;
      h = (h + 1) & mask_;
    }
  }

  int64_t size() const { return static_cast<int64_t>(keys_.size()) / d_; }
  const int32_t* key(int64_t i) const { return &keys_[static_cast<size_t>(i) * d_]; }

 private:
  uint64_t Hash(const int32_t* key) const {
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < d_; ++i) {
      h ^= static_cast<uint32_t>(key[i]);
      h *= 1099511628211ull;
      h ^= h >> 29;
    }
    return h;
  }

  void Grow() {
    std::vector<int32_t> slots(slots_.size() * 2, -1);
    uint64_t mask = slots.size() - 1;
    for (int64_t i = 0; i < size(); ++i) {
      uint64_t h = Hash(key(i)) & mask;
      while (slots[h] >= 0) h = (h + 1) & mask;
      slots[h] = static_cast<int32_t>(i);
    }
    slots_.swap(slots);
    mask_ = mask;
  }

  int d_;
  uint64_t mask_;
  std::vector<int32_t> slots_;
  std::vector<int32_t> keys_;
};

}  // namespace

PermutohedralLattice::PermutohedralLattice(const float* features, int64_t n, int d) : d_(d), n_(n) {
  const int d1 = d + 1;
  offsets_.resize(static_cast<size_t>(n * d1));
  weights_.resize(static_cast<size_t>(n * d1));
  // Embedding into the hyperplane sum(x) = 0 of R^(d+1): column k (1..d) of the basis is
  // (1, .., 1, -k, 0, .., 0) / sqrt(k (k+1)), scaled so that the blur below, together with the
  // splat and slice interpolations, has unit standard deviation in feature space.
  if (d < 1 || d > kMaxDims) ThrowRange("Expected between 1 and " + std::to_string(kMaxDims) + " lattice dimensions but received " + std::to_string(d));
  std::vector<float> scale(d);
  const double inv_std = std::sqrt(2.0 / 3.0) * d1;
  for (int k = 1; k <= d; ++k) scale[k - 1] = static_cast<float>(inv_std / std::sqrt(static_cast<double>(k) * (k + 1)));

  // Each point's simplex (vertex keys and barycentric weights) in parallel, then the vertices
  // are numbered sequentially (the hash table is not concurrent).
  std::vector<int32_t> keys(static_cast<size_t>(n * d1 * d));
  at::parallel_for(0, n, 4096, [&](int64_t begin, int64_t end) {
    float elevated[kMaxDims + 1], bary[kMaxDims + 2];
    int32_t rem0[kMaxDims + 1], rank[kMaxDims + 1];
    const float inv_d1 = 1.0f / d1;
    for (int64_t p = begin; p < end; ++p) {
      const float* f = features + p * d;
      float sum_cf = 0;
      for (int i = d; i >= 1; --i) {
        float cf = f[i - 1] * scale[i - 1];
        elevated[i] = sum_cf - i * cf;
        sum_cf += cf;
      }
      elevated[0] = sum_cf;
      // The closest lattice point whose coordinates are all multiples of d+1 ("remainder 0").
      int32_t sum = 0;
      for (int i = 0; i < d1; ++i) {
        float v = elevated[i] * inv_d1 + 0.5f;
        int32_t r = static_cast<int32_t>(v);
        if (static_cast<float>(r) > v) --r;  // floor(v / (d+1) + 1/2): the nearest multiple
        rem0[i] = r * d1;
        sum += r;
        rank[i] = 0;
      }
      // Rank of each coordinate's remainder, largest first.
      for (int i = 0; i < d; ++i) {
        for (int j = i + 1; j < d1; ++j) {
          if (elevated[i] - rem0[i] < elevated[j] - rem0[j]) ++rank[i];
          else ++rank[j];
        }
      }
      // Back onto the hyperplane: move the coordinates with the most extreme remainders by d+1.
      if (sum > 0) {
        for (int i = 0; i < d1; ++i) {
          if (rank[i] >= d1 - sum) {
            rem0[i] -= d1;
            rank[i] += sum - d1;
          } else {
            rank[i] += sum;
          }
        }
      } else if (sum < 0) {
        for (int i = 0; i < d1; ++i) {
          if (rank[i] < -sum) {
            rem0[i] += d1;
            rank[i] += d1 + sum;
          } else {
            rank[i] += sum;
          }
        }
      }
      // Barycentric coordinates of the point in its simplex.
      std::fill(bary, bary + d1 + 1, 0.0f);
      for (int i = 0; i < d1; ++i) {
        float v = (elevated[i] - rem0[i]) * inv_d1;
        bary[d - rank[i]] += v;
        bary[d1 - rank[i]] -= v;
      }
      bary[0] += 1.0f + bary[d1];
      // Vertex k of the simplex: rem0 plus the k-th vertex of the canonical simplex, permuted by rank.
      for (int k = 0; k < d1; ++k) {
        int32_t* key = &keys[static_cast<size_t>((p * d1 + k) * d)];
        for (int i = 0; i < d; ++i) key[i] = rem0[i] + (rank[i] <= d - k ? k : k - d1);
        weights_[p * d1 + k] = bary[k];
      }
    }
  });
  VertexTable table(d, n / 4 + 64);
  const size_t key_bytes = sizeof(int32_t) * d;
  for (int64_t p = 0; p < n; ++p) {
    for (int k = 0; k < d1; ++k) {
      const int32_t* key = &keys[static_cast<size_t>((p * d1 + k) * d)];
      // Neighbouring points mostly share their simplex: reuse the previous point's vertex.
      if (p > 0 && std::memcmp(key, key - d1 * d, key_bytes) == 0) {
        offsets_[p * d1 + k] = offsets_[(p - 1) * d1 + k];
      } else {
        offsets_[p * d1 + k] = table.FindOrInsert(key);
      }
    }
  }
  num_points_ = static_cast<int32_t>(table.size());

  // Neighbours along each lattice axis j: the vertex +- ((d+1) e_j - 1). Absent ones stay -1.
  neighbours_.assign(static_cast<size_t>(num_points_) * d1 * 2, -1);
  at::parallel_for(0, num_points_, 2048, [&](int64_t begin, int64_t end) {
    std::vector<int32_t> lo(d), hi(d);
    for (int64_t v = begin; v < end; ++v) {
      const int32_t* k = table.key(v);
      for (int j = 0; j < d1; ++j) {
        for (int i = 0; i < d; ++i) {
          lo[i] = k[i] - 1;
          hi[i] = k[i] + 1;
        }
        if (j < d) {
          lo[j] = k[j] + d;
          hi[j] = k[j] - d;
        }
        neighbours_[(v * d1 + j) * 2] = table.Find(lo.data());
        neighbours_[(v * d1 + j) * 2 + 1] = table.Find(hi.data());
      }
    }
  });
}

void PermutohedralLattice::Filter(const float* in, float* out, int vd, const float* in_scale, const float* out_scale,
                                  bool accumulate) {
  const int d1 = d_ + 1;
  const int64_t n = n_;
  const size_t size = static_cast<size_t>(num_points_) * vd;
  if (values_.size() < size) {
    values_.resize(size);
    next_.resize(size);
  }
  std::vector<float>& values = values_;
  std::vector<float>& next = next_;
  std::fill(values.begin(), values.begin() + size, 0.0f);
  // Splat: scatter each point's values onto its simplex's vertices. Writes collide across points,
  // so threads split the value channels, not the points.
  at::parallel_for(0, vd, vd * n > 65536 ? 1 : vd, [&](int64_t c0, int64_t c1) {
    for (int64_t p = 0; p < n; ++p) {
      const float* v = in + p * vd;
      const float s = in_scale ? in_scale[p] : 1.0f;
      for (int k = 0; k < d1; ++k) {
        float w = weights_[p * d1 + k] * s;
        float* dst = values.data() + static_cast<int64_t>(offsets_[p * d1 + k]) * vd;
        for (int64_t c = c0; c < c1; ++c) dst[c] += w * v[c];
      }
    }
  });
  // Blur along each of the d+1 axes with [1/2 1 1/2]; missing neighbours count as zero.
  for (int j = 0; j < d1; ++j) {
    at::parallel_for(0, num_points_, 1024, [&](int64_t begin, int64_t end) {
      for (int64_t v = begin; v < end; ++v) {
        const float* self = values.data() + v * vd;
        float* dst = next.data() + v * vd;
        int32_t lo = neighbours_[(v * d1 + j) * 2], hi = neighbours_[(v * d1 + j) * 2 + 1];
        const float* a = lo >= 0 ? values.data() + static_cast<int64_t>(lo) * vd : nullptr;
        const float* b = hi >= 0 ? values.data() + static_cast<int64_t>(hi) * vd : nullptr;
        if (a && b) {
          for (int c = 0; c < vd; ++c) dst[c] = self[c] + 0.5f * (a[c] + b[c]);
        } else if (a) {
          for (int c = 0; c < vd; ++c) dst[c] = self[c] + 0.5f * a[c];
        } else if (b) {
          for (int c = 0; c < vd; ++c) dst[c] = self[c] + 0.5f * b[c];
        } else {
          std::memcpy(dst, self, sizeof(float) * vd);
        }
      }
    });
    values.swap(next);
  }
  // Slice: interpolate back at every point. A vertex's own weight after the blur is 1 + 2^-d (it
  // is reached by the walk of zero steps and by the two walks of one step along every axis);
  // dividing by it makes a lone point's weight on itself about 1.
  const float alpha = 1.0f / (1.0f + std::pow(2.0f, -static_cast<float>(d_)));
  at::parallel_for(0, n, 1024, [&](int64_t begin, int64_t end) {
    std::vector<float> acc(vd);
    for (int64_t p = begin; p < end; ++p) {
      std::fill(acc.begin(), acc.end(), 0.0f);
      for (int k = 0; k < d1; ++k) {
        float w = weights_[p * d1 + k];
        const float* src = values.data() + static_cast<int64_t>(offsets_[p * d1 + k]) * vd;
        for (int c = 0; c < vd; ++c) acc[c] += w * src[c];
      }
      float* dst = out + p * vd;
      const float s = alpha * (out_scale ? out_scale[p] : 1.0f);
      if (accumulate) {
        for (int c = 0; c < vd; ++c) dst[c] += s * acc[c];
      } else {
        for (int c = 0; c < vd; ++c) dst[c] = s * acc[c];
      }
    }
  });
}

}  // namespace segtorch
