#include "base/cpu.h"

#include <ATen/Context.h>

#include <link.h>
#include <stdlib.h>

#include <fstream>
#include <memory>
#include <vector>

namespace segtorch {

bool CpuHasNativeBf16() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512bf16") || __builtin_cpu_supports("amx-bf16");
#else
  return false;
#endif
}

bool CpuHasAvx512() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f");
#else
  return false;
#endif
}

namespace {
// The value of a "name<TAB>: value" line of /proc/cpuinfo ("" when there is none).
std::string FieldValue(const std::string& line) {
  const size_t colon = line.find(':');
  if (colon == std::string::npos) return "";
  const size_t start = line.find_first_not_of(" \t", colon + 1);
  return start == std::string::npos ? "" : line.substr(start);
}
}  // namespace

CpuInfo Cpu() {
  CpuInfo c;
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  bool amx = false;
  while (std::getline(in, line)) {
    if (c.vendor.empty() && line.rfind("vendor_id", 0) == 0) c.vendor = FieldValue(line);
    if (c.model.empty() && line.rfind("model name", 0) == 0) c.model = FieldValue(line);
    if (line.rfind("flags", 0) == 0) {
      amx = line.find(" amx_bf16") != std::string::npos;
      break;
    }
  }
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (amx || __builtin_cpu_supports("amx-bf16")) c.isa = "AMX";
  else if (__builtin_cpu_supports("avx512bf16")) c.isa = "AVX512-BF16";
  else if (CpuHasAvx512()) c.isa = "AVX512";
  else if (__builtin_cpu_supports("avx2")) c.isa = "AVX2";
  else c.isa = "other";
#else
  c.isa = "other";
#endif
  return c;
}

namespace {
int CollectObject(struct dl_phdr_info* info, size_t, void* data) {
  if (info->dlpi_name && info->dlpi_name[0]) static_cast<std::vector<std::string>*>(data)->push_back(info->dlpi_name);
  return 0;
}
bool Contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }
}  // namespace

BlasInfo Blas() {
  if (at::hasMKL()) return {"mkl", ""};
  std::vector<std::string> objects;
  dl_iterate_phdr(CollectObject, &objects);
  for (const std::string& o : objects) {
    size_t slash = o.rfind('/');
    std::string base = slash == std::string::npos ? o : o.substr(slash + 1);
    if (base.rfind("libblas.so", 0) != 0 && base.rfind("libopenblas", 0) != 0 && base.rfind("libblis", 0) != 0) continue;
    std::unique_ptr<char, decltype(&free)> real(realpath(o.c_str(), nullptr), &free);
    std::string path = real ? real.get() : o;
    // Debian's alternatives: /usr/lib/<triplet>/{blas,openblas-pthread,openblas-openmp,blis-openmp,atlas}/libblas.so.3
    if (Contains(path, "openblas")) return {"openblas", path};
    if (Contains(path, "blis")) return {"blis", path};
    if (Contains(path, "atlas")) return {"atlas", path};
    if (Contains(path, "/blas/")) return {"reference", path};
    return {"other", path};
  }
  return {"none", ""};
}

}  // namespace segtorch
