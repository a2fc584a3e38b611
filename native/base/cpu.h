// What the machine gives the kernels: the CPU's model and widest matrix instructions, and the BLAS
// libtorch ended up with (Debian's libtorch links whatever libblas.so.3 the alternatives system
// points at; PyPI's torch carries MKL inside). Plain C++ (no Napi): node/addon.cc reports it in
// backend(), the benchmarks print it in every table.
#pragma once

#include <string>

namespace segtorch {

// AVX512-BF16 or AMX-BF16: bf16 matrix products at native speed.
bool CpuHasNativeBf16();
// AVX-512 (avx512f): kernels whose speed against ATen's depends on the vector width ask this.
bool CpuHasAvx512();

struct CpuInfo {
  std::string model;  // /proc/cpuinfo's "model name" ("" when unknown)
  std::string isa;    // "AMX" | "AVX512-BF16" | "AVX512" | "AVX2" | "other"
  std::string vendor;  // /proc/cpuinfo's "vendor_id" ("GenuineIntel", "AuthenticAMD"; "" when unknown)
};
CpuInfo Cpu();

struct BlasInfo {
  // "mkl" (linked into libtorch), "openblas", "reference" (Netlib's, Debian's default), "blis",
  // "atlas", "other" (a libblas this does not know) or "none" (no BLAS loaded).
  std::string name;
  std::string path;  // the shared object loaded for libblas.so.3 (real path), "" for mkl / none
};
BlasInfo Blas();

}  // namespace segtorch
