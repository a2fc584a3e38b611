#include "data/augment.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "base/errors.h"

namespace segtorch {

namespace {

// splitmix64: tiny, fast and the same on every platform (std distributions are not).
struct Rng {
  uint64_t state;
  explicit Rng(uint64_t seed) : state(seed) {}
  uint64_t Next() {
    uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  double Uniform() { return static_cast<double>(Next() >> 11) * (1.0 / 9007199254740992.0); }  // [0, 1)
};

std::string Size(int64_t h, int64_t w) { return std::to_string(h) + "x" + std::to_string(w); }

// Where each output pixel of one sample comes from, and its photometric factors.
struct Plan {
  int64_t h = 0, w = 0;    // source size
  int64_t sh = 0, sw = 0;  // size after resize and scale
  int64_t oy = 0, ox = 0;  // crop offset in the scaled image
  int64_t out_h = 0, out_w = 0;
  bool flip = false;
  double brightness = 1, contrast = 1, saturation = 1, hue = 0;
};

Plan MakePlan(int64_t h, int64_t w, const AugmentOptions& o, Rng& rng) {
  // Every draw happens whatever the options, so enabling one transform never moves another.
  double u_scale = rng.Uniform(), u_y = rng.Uniform(), u_x = rng.Uniform(), u_flip = rng.Uniform();
  double u_b = rng.Uniform(), u_c = rng.Uniform(), u_s = rng.Uniform(), u_h = rng.Uniform();
  Plan p;
  p.h = h;
  p.w = w;
  int64_t bh = o.resize_h > 0 ? o.resize_h : h;
  int64_t bw = o.resize_w > 0 ? o.resize_w : w;
  double s = o.scale_min + u_scale * (o.scale_max - o.scale_min);
  p.sh = std::max<int64_t>(1, std::llround(static_cast<double>(bh) * s));
  p.sw = std::max<int64_t>(1, std::llround(static_cast<double>(bw) * s));
  if (o.crop_h > 0) {
    p.out_h = o.crop_h;
    p.out_w = o.crop_w;
    if (p.sh > o.crop_h) p.oy = std::min<int64_t>(p.sh - o.crop_h, static_cast<int64_t>(u_y * static_cast<double>(p.sh - o.crop_h + 1)));
    if (p.sw > o.crop_w) p.ox = std::min<int64_t>(p.sw - o.crop_w, static_cast<int64_t>(u_x * static_cast<double>(p.sw - o.crop_w + 1)));
  } else {
    p.out_h = std::max(p.sh, o.pad_h);
    p.out_w = std::max(p.sw, o.pad_w);
  }
  p.flip = o.flip && u_flip < 0.5;
  p.brightness = 1 + o.brightness * (2 * u_b - 1);
  p.contrast = 1 + o.contrast * (2 * u_c - 1);
  p.saturation = 1 + o.saturation * (2 * u_s - 1);
  p.hue = o.hue * (2 * u_h - 1);
  return p;
}

// Source coordinates of output rows (or columns): bilinear taps (half-pixel centres, as
// torch's align_corners=false) and the nearest source index (as torch's 'nearest-exact').
struct Axis {
  std::vector<int64_t> i0, i1, nearest;
  std::vector<float> weight;  // of i1
  int64_t valid = 0;          // outputs [0, valid) lie inside the image; the rest is padding
};

Axis MakeAxis(int64_t out, int64_t offset, int64_t scaled, int64_t src, bool flip) {
  Axis a;
  a.valid = std::clamp<int64_t>(scaled - offset, 0, out);
  a.i0.resize(a.valid);
  a.i1.resize(a.valid);
  a.nearest.resize(a.valid);
  a.weight.resize(a.valid);
  double f = static_cast<double>(src) / static_cast<double>(scaled);
  for (int64_t k = 0; k < a.valid; ++k) {
    int64_t t = offset + k;
    if (flip) t = scaled - 1 - t;
    double pos = std::max(0.0, (static_cast<double>(t) + 0.5) * f - 0.5);
    int64_t lo = std::min<int64_t>(static_cast<int64_t>(pos), src - 1);
    a.i0[k] = lo;
    a.i1[k] = std::min<int64_t>(lo + 1, src - 1);
    a.weight[k] = static_cast<float>(pos - static_cast<double>(lo));
    a.nearest[k] = std::min<int64_t>(static_cast<int64_t>((static_cast<double>(t) + 0.5) * f), src - 1);
  }
  return a;
}

inline float Clamp255(float v) { return v < 0.f ? 0.f : (v > 255.f ? 255.f : v); }

// Photometric jitter in place on the valid region of planar float pixels [C][H][W].
void Jitter(std::vector<float>& px, int64_t c, int64_t out_h, int64_t out_w, int64_t vh, int64_t vw, const Plan& p) {
  const int64_t plane = out_h * out_w;
  auto for_valid = [&](auto&& f) {
    for (int64_t y = 0; y < vh; ++y)
      for (int64_t x = 0; x < vw; ++x) f(y * out_w + x);
  };
  if (p.brightness != 1) {
    float b = static_cast<float>(p.brightness);
    for (int64_t ch = 0; ch < c; ++ch) for_valid([&](int64_t i) { px[ch * plane + i] = Clamp255(px[ch * plane + i] * b); });
  }
  auto grey = [&](int64_t i) {
    return c == 3 ? 0.299f * px[i] + 0.587f * px[plane + i] + 0.114f * px[2 * plane + i] : px[i];
  };
  if (p.contrast != 1 && vh > 0 && vw > 0) {
    double sum = 0;
    for_valid([&](int64_t i) {
      if (c == 3) {
        sum += grey(i);
      } else {
        for (int64_t ch = 0; ch < c; ++ch) sum += px[ch * plane + i];
      }
    });
    float m = static_cast<float>(sum / static_cast<double>(vh * vw * (c == 3 ? 1 : c)));
    float k = static_cast<float>(p.contrast);
    for (int64_t ch = 0; ch < c; ++ch) for_valid([&](int64_t i) { px[ch * plane + i] = Clamp255((px[ch * plane + i] - m) * k + m); });
  }
  if (c != 3) return;
  if (p.saturation != 1) {
    float k = static_cast<float>(p.saturation);
    for_valid([&](int64_t i) {
      float g = grey(i);
      for (int64_t ch = 0; ch < 3; ++ch) px[ch * plane + i] = Clamp255((px[ch * plane + i] - g) * k + g);
    });
  }
  if (p.hue != 0) {
    float shift = static_cast<float>(p.hue);
    for_valid([&](int64_t i) {
      float r = px[i] / 255.f, g = px[plane + i] / 255.f, b = px[2 * plane + i] / 255.f;
      float mx = std::max({r, g, b}), mn = std::min({r, g, b}), d = mx - mn;
      float h = 0;
      if (d > 0) {
        if (mx == r) h = std::fmod((g - b) / d + 6.f, 6.f);
        else if (mx == g) h = (b - r) / d + 2.f;
        else h = (r - g) / d + 4.f;
        h /= 6.f;
      }
      float s = mx > 0 ? d / mx : 0.f, v = mx;
      h += shift;
      h -= std::floor(h);
      float h6 = h * 6.f;
      int sector = static_cast<int>(h6) % 6;
      float f = h6 - std::floor(h6);
      float pp = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f));
      float rgb[6][3] = {{v, t, pp}, {q, v, pp}, {pp, v, t}, {pp, q, v}, {t, pp, v}, {v, pp, q}};
      px[i] = Clamp255(rgb[sector][0] * 255.f);
      px[plane + i] = Clamp255(rgb[sector][1] * 255.f);
      px[2 * plane + i] = Clamp255(rgb[sector][2] * 255.f);
    });
  }
}

void CheckSample(const AugmentSample& s, size_t i, int64_t channels, bool masks, bool depth) {
  const std::string where = "sample " + std::to_string(i);
  if (!s.image.defined() || s.image.dim() != 3 || s.image.scalar_type() != at::kByte) {
    ThrowType("Expected " + where + " image to be uint8 [H, W, C]");
  }
  int64_t h = s.image.size(0), w = s.image.size(1);
  if (h < 1 || w < 1) ThrowRange("Expected a non-empty image for " + where + " but received " + Size(h, w));
  if (s.image.size(2) != channels) {
    ThrowRange("Expected " + std::to_string(channels) + " channel(s) for " + where + " (as sample 0) but received " + std::to_string(s.image.size(2)));
  }
  if (s.mask.defined() != masks) ThrowType("Expected masks for every sample or for none (" + where + " differs)");
  if (s.depth.defined() != depth) ThrowType("Expected depth for every sample or for none (" + where + " differs)");
  if (masks && (s.mask.dim() != 2 || s.mask.scalar_type() != at::kByte || s.mask.size(0) != h || s.mask.size(1) != w)) {
    ThrowRange("Expected " + where + " mask of uint8 [" + std::to_string(h) + ", " + std::to_string(w) + "] (the image's size) but received " +
               (s.mask.dim() == 2 ? Size(s.mask.size(0), s.mask.size(1)) : std::to_string(s.mask.dim()) + " dimensions"));
  }
  if (depth && (s.depth.dim() != 2 || s.depth.scalar_type() != at::kFloat || s.depth.size(0) != h || s.depth.size(1) != w)) {
    ThrowRange("Expected " + where + " depth of float32 [" + std::to_string(h) + ", " + std::to_string(w) + "] (the image's size)");
  }
}

}  // namespace

AugmentResult AugmentBatch(const std::vector<AugmentSample>& samples, const AugmentOptions& o, uint64_t seed) {
  if (samples.empty()) ThrowRange("Expected at least one sample to transform");
  if (o.scale_min <= 0 || o.scale_max < o.scale_min) ThrowRange("Expected 0 < scale min <= scale max");
  if ((o.crop_h > 0) != (o.crop_w > 0)) ThrowRange("Expected both crop sizes or neither");
  const int64_t c = samples[0].image.defined() && samples[0].image.dim() == 3 ? samples[0].image.size(2) : 0;
  const bool has_masks = samples[0].mask.defined(), has_depth = samples[0].depth.defined();
  if ((o.saturation > 0 || o.hue > 0) && c != 3) ThrowRange("Expected 3-channel images for saturation or hue jitter but received " + std::to_string(c));
  const bool normalise = !o.mean.empty();
  if (normalise && (static_cast<int64_t>(o.mean.size()) != c || static_cast<int64_t>(o.std.size()) != c)) {
    ThrowRange("Expected " + std::to_string(c) + " values in mean and std (one per channel)");
  }
  if (o.ignore_index < 0 || o.ignore_index > 255) ThrowRange("Expected an ignore index between 0 and 255 for uint8 masks");

  const int64_t n = static_cast<int64_t>(samples.size());
  std::vector<Plan> plans;
  plans.reserve(samples.size());
  for (size_t i = 0; i < samples.size(); ++i) {
    CheckSample(samples[i], i, c, has_masks, has_depth);
    // Sample i's generator depends on (seed, i) only.
    Rng mix(seed ^ (0xD1B54A32D192ED03ULL * (i + 1)));
    Rng rng(mix.Next());
    plans.push_back(MakePlan(samples[i].image.size(0), samples[i].image.size(1), o, rng));
  }
  int64_t out_h = plans[0].out_h, out_w = plans[0].out_w;
  for (const Plan& p : plans) {
    if (o.pad_to_batch) {
      out_h = std::max(out_h, p.out_h);
      out_w = std::max(out_w, p.out_w);
    } else if (p.out_h != out_h || p.out_w != out_w) {
      ThrowRange("Expected samples of one size in a batch but received " + Size(out_h, out_w) + " and " + Size(p.out_h, p.out_w) +
                 " (H x W): give a crop, a resize or pad: 'batch'");
    }
  }

  AugmentResult r;
  r.images = at::empty({n, c, out_h, out_w}, at::TensorOptions().dtype(normalise ? at::kFloat : at::kByte));
  if (has_masks) r.masks = at::empty({n, out_h, out_w}, at::TensorOptions().dtype(at::kByte));
  if (has_depth) r.depth = at::empty({n, out_h, out_w}, at::TensorOptions().dtype(at::kFloat));
  const int64_t plane = out_h * out_w;
  std::vector<float> px(static_cast<size_t>(c * plane));
  std::vector<float> fill(c, 0.f);
  for (int64_t ch = 0; ch < c && ch < static_cast<int64_t>(o.fill.size()); ++ch) fill[ch] = static_cast<float>(o.fill[ch]);

  for (int64_t i = 0; i < n; ++i) {
    const Plan& p = plans[i];
    const AugmentSample& s = samples[i];
    // Read through strides (a [C, H, W] batch comes as [H, W, C] views): no copy, and no ATen
    // operation that could start a parallel region on this thread.
    const uint8_t* src = s.image.data_ptr<uint8_t>();
    const int64_t isy = s.image.stride(0), isx = s.image.stride(1), isc = s.image.stride(2);
    Axis ay = MakeAxis(out_h, p.oy, p.sh, p.h, false);
    Axis ax = MakeAxis(out_w, p.ox, p.sw, p.w, p.flip);
    const int64_t vh = ay.valid, vw = ax.valid;

    // Image: bilinear into float pixels; padding with the fill colour.
    for (int64_t ch = 0; ch < c; ++ch) {
      float* dst = px.data() + ch * plane;
      for (int64_t y = 0; y < out_h; ++y) {
        float* row = dst + y * out_w;
        if (y >= vh) {
          std::fill(row, row + out_w, fill[ch]);
          continue;
        }
        const uint8_t* r0 = src + ay.i0[y] * isy + ch * isc;
        const uint8_t* r1 = src + ay.i1[y] * isy + ch * isc;
        const float wy = ay.weight[y];
        for (int64_t x = 0; x < vw; ++x) {
          const int64_t x0 = ax.i0[x] * isx, x1 = ax.i1[x] * isx;
          const float wx = ax.weight[x];
          const float top = r0[x0] + (static_cast<float>(r0[x1]) - r0[x0]) * wx;
          const float bottom = r1[x0] + (static_cast<float>(r1[x1]) - r1[x0]) * wx;
          row[x] = top + (bottom - top) * wy;
        }
        std::fill(row + vw, row + out_w, fill[ch]);
      }
    }
    Jitter(px, c, out_h, out_w, vh, vw, p);
    if (normalise) {
      float* dst = r.images.data_ptr<float>() + i * c * plane;
      for (int64_t ch = 0; ch < c; ++ch) {
        const float m = static_cast<float>(o.mean[ch]), sd = static_cast<float>(o.std[ch]);
        for (int64_t k = 0; k < plane; ++k) dst[ch * plane + k] = (std::nearbyint(Clamp255(px[ch * plane + k])) / 255.f - m) / sd;
      }
    } else {
      uint8_t* dst = r.images.data_ptr<uint8_t>() + i * c * plane;
      for (int64_t k = 0; k < c * plane; ++k) dst[k] = static_cast<uint8_t>(std::nearbyint(Clamp255(px[k])));
    }

    // Mask and depth: nearest neighbour only, so no label value is ever invented.
    if (has_masks) {
      const uint8_t* m = s.mask.data_ptr<uint8_t>();
      const int64_t msy = s.mask.stride(0), msx = s.mask.stride(1);
      uint8_t* dst = r.masks.data_ptr<uint8_t>() + i * plane;
      const uint8_t ignore = static_cast<uint8_t>(o.ignore_index);
      for (int64_t y = 0; y < out_h; ++y) {
        uint8_t* row = dst + y * out_w;
        if (y >= vh) {
          std::fill(row, row + out_w, ignore);
          continue;
        }
        const uint8_t* sr = m + ay.nearest[y] * msy;
        for (int64_t x = 0; x < vw; ++x) row[x] = sr[ax.nearest[x] * msx];
        std::fill(row + vw, row + out_w, ignore);
      }
    }
    if (has_depth) {
      const float* d = s.depth.data_ptr<float>();
      const int64_t dsy = s.depth.stride(0), dsx = s.depth.stride(1);
      float* dst = r.depth.data_ptr<float>() + i * plane;
      for (int64_t y = 0; y < out_h; ++y) {
        float* row = dst + y * out_w;
        if (y >= vh) {
          std::fill(row, row + out_w, o.depth_fill);
          continue;
        }
        const float* sr = d + ay.nearest[y] * dsy;
        for (int64_t x = 0; x < vw; ++x) row[x] = sr[ax.nearest[x] * dsx];
        std::fill(row + vw, row + out_w, o.depth_fill);
      }
    }
  }
  return r;
}

}  // namespace segtorch
