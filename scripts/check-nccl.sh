#!/usr/bin/env bash
# check-nccl.sh: compiles native/dist/process_group.cc with its NCCL path on (ProcessGroupNCCL) against
# a CUDA build of PyPI's torch, on a machine without a GPU or a CUDA toolkit, and checks that every
# c10d symbol the object needs is exported by that torch's libraries (libtorch_cuda, libtorch_cpu,
# libc10, libc10_cuda). It proves that the NCCL path compiles and would link; it does not run it (no
# GPU here). The CUDA and NCCL headers come from the nvidia-* wheels that PyPI's torch installs
# (nvidia/cu13/include, nvidia/nccl/include) and triton's copy of crt/.
#
# Usage: scripts/check-nccl.sh [SITE_PACKAGES]
#   SITE_PACKAGES  a site-packages with CUDA torch and its nvidia wheels
#                  (default: the venv of scripts/pytorch-venv.sh, ~/.cache/segtorch-pytorch)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SP="${1:-$(ls -d "$HOME"/.cache/segtorch-pytorch/lib/python3*/site-packages 2>/dev/null | head -1)}"
if [ -z "$SP" ] || [ ! -d "$SP/torch/include" ]; then
  echo "check-nccl: no torch in '${SP:-?}': run scripts/pytorch-venv.sh first, or pass a site-packages" >&2
  exit 2
fi
if [ ! -f "$SP/torch/lib/libtorch_cuda.so" ]; then
  echo "check-nccl: $SP/torch is a CPU-only torch (no libtorch_cuda.so): nothing to check" >&2
  exit 2
fi
inc() { local f; f="$(find "$SP/nvidia" "$SP/triton" -path "*$1" 2>/dev/null | head -1)"; [ -n "$f" ] && dirname "$(dirname "$f")"; }
NCCL_INC="$(dirname "$(find "$SP/nvidia" -name nccl.h | head -1)")"
CUDA_INC="$(dirname "$(find "$SP/nvidia" -name cuda_runtime_api.h | head -1)")"
CRT_INC="$(inc /crt/host_config.h || true)"
[ -f "$NCCL_INC/nccl.h" ] || { echo "check-nccl: no nccl.h under $SP/nvidia" >&2; exit 2; }
[ -f "$CUDA_INC/cuda_runtime_api.h" ] || { echo "check-nccl: no cuda_runtime_api.h under $SP/nvidia" >&2; exit 2; }
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
cat > "$TMP/dist_config.h" <<'EOF'
#pragma once
#define SEGTORCH_HAVE_C10D 1
#define SEGTORCH_HAVE_GLOO 1
#define SEGTORCH_HAVE_NCCL 1
#define SEGTORCH_C10D_WHY ""
#define USE_C10D_GLOO
#define USE_C10D_NCCL
EOF
ABI="$("$(dirname "$SP")/../../bin/python" -c 'import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))' 2>/dev/null || echo 1)"
echo "check-nccl: torch $(cat "$SP"/torch/version.py 2>/dev/null | sed -n "s/^__version__ = '\(.*\)'/\1/p"), nccl.h $NCCL_INC, CUDA headers $CUDA_INC"
c++ -I"$TMP" -I"$SP/torch/include" -I"$SP/torch/include/torch/csrc/api/include" -I"$CUDA_INC" ${CRT_INC:+-I"$CRT_INC"} -I"$NCCL_INC" \
  -I"$ROOT/native" -DUSE_CUDA -D_GLIBCXX_USE_CXX11_ABI="$ABI" -std=gnu++20 -O0 -fPIC -Wall -Wno-unused-parameter -Wno-interference-size \
  -c "$ROOT/native/dist/process_group.cc" -o "$TMP/process_group.o"
echo "check-nccl: native/dist/process_group.cc compiled with ProcessGroupNCCL"
nm --undefined-only "$TMP/process_group.o" | awk '{print $2}' | grep -E 'c10d|c10|at' | sort -u > "$TMP/need"
for l in libtorch_cuda libtorch_cpu libc10 libc10_cuda; do nm -D --defined-only "$SP/torch/lib/$l.so" | awk '{print $3}'; done | sort -u > "$TMP/have"
MISSING="$(comm -23 "$TMP/need" "$TMP/have" | c++filt | grep -E '^(c10d|c10|at)::' || true)"
NCCL_SYMS="$(grep -c ProcessGroupNCCL "$TMP/need" || true)"
if [ -n "$MISSING" ]; then
  echo "check-nccl: FAIL: symbols torch does not export:" >&2
  echo "$MISSING" >&2
  exit 1
fi
echo "check-nccl: PASS: $(wc -l < "$TMP/need") torch symbols needed (ProcessGroupNCCL: $NCCL_SYMS), all exported by torch's libraries"
