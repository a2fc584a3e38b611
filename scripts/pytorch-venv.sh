#!/usr/bin/env bash
# pytorch-venv.sh: creates (or reuses) a Python virtual environment with the newest PyTorch 2.x,
# torchvision, numpy and pillow from PyPI -- "what a PyTorch user runs" -- for the benchmarks that
# compare segtorch with current PyTorch (bench/camvid.js's torchvision:mbv3 run, bench/camvid_torchvision.py).
#
# What it does:
#   1. Creates the venv with `python3 -m venv` at $SEGTORCH_PY_VENV (default ~/.cache/segtorch-pytorch),
#      outside the repository. The interpreter is $SEGTORCH_PY_PYTHON, else the first `python3` on PATH
#      that is not Debian's /usr/bin/python3 (that one carries Debian's torch 1.13 and is not used).
#   2. Installs torch, torchvision, numpy, pillow and onnx (for torch.onnx.export; newest, or the pip requirements in
#      $SEGTORCH_PY_TORCH / $SEGTORCH_PY_TORCHVISION).
#   3. Checks the result: imports torch and torchvision, trains a small conv net for 20 AdamW steps on CPU
#      and (unless SEGTORCH_PY_SKIP_COMPILE=1) one torch.compile'd (inductor) forward+backward on CPU.
#   4. Prints the versions and, on its last line, PYTHON=<venv>/bin/python.
#
# Size: PyPI's Linux x86_64 torch wheel is CUDA-enabled and pulls the nvidia-*/cuda-* runtime wheels
# (cuBLAS, cuDNN, NCCL, ... plus triton): 5.4 GB installed in all (torch 1.2 GB, nvidia/ 3.0 GB, triton
# 1.0 GB, with torch 2.15.0); the install takes about a minute on a fast link.
# A smaller install does not work: `pip install --no-deps torch` plus the pure-Python deps fails at
# `import torch` (torch/__init__.py preloads libcublasLt and the other CUDA libraries that libtorch_cuda
# links against), and PyPI has no CPU-only torch wheel for x86_64 Linux (PyTorch's own CPU index is not
# reachable here). The GPU is never used: everything runs on the CPU.
#
# torch.compile on CPU (inductor's C++ backend) needs a C++ compiler at run time: g++ on PATH (Debian's
# g++ 12 works; set CXX to pick another). It needed no extra Python package: triton (pulled by the torch
# wheel) is for GPU kernels only; sympy, jinja2, filelock, setuptools come with torch. Inductor caches its
# compiled kernels under /tmp/torchinductor_$USER.
#
# Idempotent: an existing venv whose python can `import torch, torchvision` is reused as is (nothing
# downloaded); SEGTORCH_PY_VENV_REFRESH=1 deletes it and installs anew.
#
# Usage: scripts/pytorch-venv.sh
#        PY=$(scripts/pytorch-venv.sh | tail -1 | cut -d= -f2-)   # the venv's python
# Environment:
#   SEGTORCH_PY_VENV          the venv's folder                           (default: $HOME/.cache/segtorch-pytorch)
#   SEGTORCH_PY_VENV_REFRESH  1: delete the venv and reinstall              (default: 0)
#   SEGTORCH_PY_PYTHON        the interpreter that creates the venv         (default: python3 on PATH, not /usr/bin/python3)
#   SEGTORCH_PY_TORCH         pip requirement for torch, e.g. torch==2.9.1  (default: torch)
#   SEGTORCH_PY_TORCHVISION   pip requirement for torchvision               (default: torchvision, a version matching torch)
#   SEGTORCH_PY_SKIP_COMPILE  1: skip the torch.compile check               (default: 0)
set -euo pipefail

VENV=${SEGTORCH_PY_VENV:-$HOME/.cache/segtorch-pytorch}
REFRESH=${SEGTORCH_PY_VENV_REFRESH:-0}
TORCH_REQ=${SEGTORCH_PY_TORCH:-torch}
TV_REQ=${SEGTORCH_PY_TORCHVISION:-torchvision}
log() { echo "[pytorch-venv] $*" >&2; }

pick_python() {
  if [[ -n ${SEGTORCH_PY_PYTHON:-} ]]; then echo "$SEGTORCH_PY_PYTHON"; return; fi
  local p real
  while IFS= read -r p; do
    real=$(readlink -f "$p")
    case $real in /usr/bin/*) continue ;; esac
    # pyenv's shim resolves to itself: ask the interpreter where it lives.
    real=$("$p" -c 'import sys; print(sys.executable)' 2>/dev/null) || continue
    case $(readlink -f "$real") in /usr/bin/*) continue ;; esac
    echo "$real"; return
  done < <(type -ap python3)
  echo "pytorch-venv.sh: no python3 on PATH other than Debian's /usr/bin/python3; set SEGTORCH_PY_PYTHON" >&2
  return 1
}

works() { [[ -x $VENV/bin/python ]] && "$VENV/bin/python" -c 'import torch, torchvision' >/dev/null 2>&1; }

if [[ $REFRESH == 1 && -e $VENV ]]; then
  log "SEGTORCH_PY_VENV_REFRESH=1: removing $VENV"
  rm -rf "$VENV"
fi

if works; then
  log "reusing $VENV"
else
  PY=$(pick_python)
  log "creating $VENV with $PY ($("$PY" --version 2>&1))"
  rm -rf "$VENV"
  mkdir -p "$(dirname "$VENV")"
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  log "installing $TORCH_REQ $TV_REQ numpy pillow onnx from PyPI (about 5 GB with the CUDA runtime wheels)"
  "$VENV/bin/python" -m pip install --quiet --no-cache-dir "$TORCH_REQ" "$TV_REQ" numpy pillow onnx
  works || { echo "pytorch-venv.sh: import torch, torchvision fails in $VENV" >&2; exit 1; }
fi
# torch.onnx.export (bench/suite.js exports each twin for onnxruntime) needs the onnx package; a venv
# made before it was in the list above gets it here (about 20 MB).
if ! "$VENV/bin/python" -c 'import onnx' >/dev/null 2>&1; then
  log "installing onnx (torch.onnx.export needs it)"
  "$VENV/bin/python" -m pip install --quiet --no-cache-dir onnx
fi

# A CPU training check (and a torch.compile one): catches a broken install, not only a failed import.
SEGTORCH_PY_SKIP_COMPILE=${SEGTORCH_PY_SKIP_COMPILE:-0} "$VENV/bin/python" - <<'EOF'
import os, sys, time
import numpy, PIL, torch, torchvision
import torch.nn as nn
torch.manual_seed(0)
net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, 4, 1))
x = torch.randn(4, 3, 32, 32); y = torch.randint(0, 4, (4, 32, 32))
opt = torch.optim.AdamW(net.parameters(), lr=1e-2)
first = None
for _ in range(20):
    loss = nn.functional.cross_entropy(net(x), y)
    opt.zero_grad(); loss.backward(); opt.step()
    first = first if first is not None else loss.item()
if not loss.item() < first:
    sys.exit(f'pytorch-venv.sh: CPU training check failed: loss {first} -> {loss.item()}')
print(f'[pytorch-venv] CPU training check: loss {first:.3f} -> {loss.item():.3f}', file=sys.stderr)
if os.environ.get('SEGTORCH_PY_SKIP_COMPILE') != '1':
    t = time.time()
    cnet = torch.compile(net)
    out = cnet(x)
    ref = net(x)
    nn.functional.cross_entropy(out, y).backward()
    diff = (out - ref).abs().max().item()
    if diff > 1e-3:
        sys.exit(f'pytorch-venv.sh: torch.compile check failed: max |diff| {diff}')
    print(f'[pytorch-venv] torch.compile (inductor, CPU) check: forward+backward ok, max |diff| {diff:.1e}, {time.time() - t:.0f} s', file=sys.stderr)
import onnx
print(f'torch {torch.__version__}, torchvision {torchvision.__version__}, numpy {numpy.__version__}, pillow {PIL.__version__}, onnx {onnx.__version__}, python {sys.version.split()[0]}')
EOF
echo "PYTHON=$VENV/bin/python"
