#!/usr/bin/env bash
# check-cuda.sh: builds segtorch against the CUDA torch of a Python and runs the CUDA tests on a GPU.
#
# On a machine with an NVIDIA GPU, a CUDA build of PyTorch (pip's torch), cmake, a C++17/20 compiler,
# zlib's header, node and the npm dev dependencies (npm ci):
#   1. reads what CMake needs from that torch (scripts/torch-detect.js: ABI, C++ standard, toolkit);
#      without a CUDA toolkit it links the wheel's CUDA libraries directly (LIBTORCH_CUDA_LIBS=1; no NCCL);
#   2. builds the addon into build-cuda/ (./build is never touched);
#   3. prints backend() and runs test/cuda.test.ts against that build (SEGTORCH_ADDON), which fails
#      unless CUDA is really there (every case would be pending otherwise);
#   4. with SEGTORCH_CUDA_BENCH=1, runs bench/cuda.js (segtorch against that PyTorch on the GPU).
# Nothing is downloaded. Not part of CI (no GPU there).
#
# Environment: PYTHON (default python3), SEGTORCH_CUDA_BUILD (build-cuda), SEGTORCH_CUDA_JOBS (nproc),
#   SEGTORCH_CUDA_MOCHA_ARGS (extra mocha arguments), SEGTORCH_CUDA_BENCH (0), SEGTORCH_CUDA_BENCH_ARGS.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
BUILD="${SEGTORCH_CUDA_BUILD:-build-cuda}"
JOBS="${SEGTORCH_CUDA_JOBS:-$(nproc)}"
step() { echo "== check-cuda: $* ($(date -u +%H:%M:%S))"; }

step "the GPU and the torch"
nvidia-smi -L || echo "(no nvidia-smi)"
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available(), "devices", torch.cuda.device_count())'
export LIBTORCH_USE_PYTORCH=1 PYTHON="$PY"
plan="$(node -e '
  const { torchBuildPlan } = require("./scripts/torch-detect")
  const p = torchBuildPlan(process.env)
  console.error("segtorch: " + p.description)
  for (const [k, v] of Object.entries(p.env)) console.log(`export ${k}=${JSON.stringify(String(v))}`)
')"
eval "$plan"
if [ "${LIBTORCH_CPU_ONLY:-0}" = 1 ]; then
  echo "no CUDA toolkit found: linking the wheel's CUDA libraries directly (LIBTORCH_CUDA_LIBS=1, no NCCL)"
  export LIBTORCH_CUDA_LIBS=1
fi
extra=()
if [ ! -e /usr/include/zlib.h ] && [ -n "${ZLIB_INCLUDE_DIR:-}" ]; then
  extra+=("--CDZLIB_INCLUDE_DIR=$ZLIB_INCLUDE_DIR" "--CDZLIB_LIBRARY=${ZLIB_LIBRARY:?set ZLIB_LIBRARY with ZLIB_INCLUDE_DIR}")
fi

step "build ($BUILD, $JOBS jobs)"
if ! node node_modules/cmake-js/bin/cmake-js build --out "$BUILD" --parallel "$JOBS" "${extra[@]}"; then
  [ "${LIBTORCH_CUDA_LIBS:-0}" = 1 ] && exit 1
  # TorchConfig.cmake with the toolkit failed (see above): link the wheel's CUDA libraries directly.
  echo "check-cuda: the build with the CUDA toolkit failed; again linking torch's CUDA libraries directly (LIBTORCH_CUDA_LIBS=1, no NCCL)"
  export LIBTORCH_CPU_ONLY=1 LIBTORCH_CUDA_LIBS=1
  BUILD="$BUILD-direct"
  node node_modules/cmake-js/bin/cmake-js build --out "$BUILD" --parallel "$JOBS" "${extra[@]}"
fi
ADDON="$ROOT/$BUILD/Release/segtorch.node"
[ -f dist/index.js ] || node node_modules/typescript/bin/tsc -p tsconfig.json

step "backend()"
SEGTORCH_ADDON="$ADDON" node -r ts-node/register/transpile-only -e '
  const st = require("./lib")
  const b = st.backend()
  console.log(JSON.stringify({ libtorch: b.libtorch, cuda: b.cuda, cudaDevices: b.cudaDevices, dist: st.distributed.available() }))
  if (!b.cuda) { console.error("check-cuda: this build sees no CUDA"); process.exit(1) }
'

step "test/cuda.test.ts"
# shellcheck disable=SC2086
SEGTORCH_ADDON="$ADDON" node node_modules/mocha/bin/mocha.js --no-config -r ts-node/register/transpile-only --extension ts \
  -t 600000 --reporter spec --forbid-pending test/cuda.test.ts ${SEGTORCH_CUDA_MOCHA_ARGS:-}

if [ "${SEGTORCH_CUDA_BENCH:-0}" = 1 ]; then
  step "bench/cuda.js"
  # shellcheck disable=SC2086
  node bench/cuda.js --python "$PY" --addon "$BUILD/Release/segtorch.node" ${SEGTORCH_CUDA_BENCH_ARGS:-}
fi
step "PASS"
