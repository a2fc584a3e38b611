#!/usr/bin/env bash
# Builds the addon with AddressSanitizer + UndefinedBehaviorSanitizer into build-asan/ (never build/
# or prebuilds/, which the normal tests use) and runs the boundary, file and data tests under it; without
# arguments first the native kernel checks (test/native/*.cc, CMake targets from the same objects).
# Exits 0 only if every test passed and no sanitizer report was written, by this process or by any
# child process the tests spawn (they inherit LD_PRELOAD, SEGTORCH_ADDON and the sanitizer options).
#
#   scripts/sanitize.sh               build (incremental) + run the default test list
#   scripts/sanitize.sh test/x.test.ts ...   build + run only these files
#   SANITIZE_SKIP_BUILD=1 scripts/sanitize.sh   run against the existing build-asan/
#   SANITIZE_JOBS=N                   parallel compile jobs (default: number of cores)
#   SANITIZE_OUT=DIR                  the build folder (default build-asan/): with LIBTORCH=... (and the other
#                                     variables scripts/check-libtorch2.sh sets) a build against PyPI's libtorch
#                                     2.x, whose prepacked oneDNN paths Debian's 1.13 lacks, e.g.
#                                     SANITIZE_OUT=build-asan-lt2 LIBTORCH=$VENV/lib/python3.11/site-packages/torch
#                                     LIBTORCH_CPU_ONLY=1 LIBTORCH_CXX11_ABI=1 SEGTORCH_CXX_STANDARD=20 scripts/sanitize.sh test/perf.test.ts
#   SANITIZE_ASAN_OPTIONS=..., SANITIZE_UBSAN_OPTIONS=...   appended to the options below (e.g.
#                                     protect_shadow_gap=0, which a CUDA libtorch may need; the CPU
#                                     libtorch-dev runs without it)
#
# Slow (on 2 cores: a first build ~17 min, the tests ~11 min, 5,000 fuzz mutants included): not part
# of `npm test`. libtorch itself is not sanitized (Debian's libtorch-dev 1.13): we check our own code,
# and libtorch only where our code hands it bad memory. Node is not built with ASan, so the ASan
# runtime is preloaded into node. UBSan's vptr check is off (-fno-sanitize=vptr): its type
# descriptors for c10's type-cast templates (Type::cast<TensorType>() in export.cc and the TorchScript
# code) name typeinfo for c10::DynamicType, which Debian's libtorch 1.13 does not export, so the
# sanitized addon did not load ("undefined symbol: _ZTIN3c1011DynamicTypeE"); ASan and the rest of
# UBSan stay on.
set -uo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
out="${SANITIZE_OUT:-$root/build-asan}"
case "$out" in /*) ;; *) out="$root/$out" ;; esac
logs="$out/logs"

# -O1 -g -fno-omit-frame-pointer: usable stacks at a bearable speed. -DNDEBUG as in the release build
# (libtorch headers are compiled against it). -D_GLIBCXX_ASSERTIONS: bounds-checked operator[] etc. in
# libstdc++ containers (no ABI change). float-cast-overflow is not in gcc's -fsanitize=undefined.
san="-fsanitize=address,undefined,float-cast-overflow -fno-sanitize=vptr -fno-sanitize-recover=all"
cxxflags="-O1 -g -DNDEBUG -D_GLIBCXX_ASSERTIONS -fno-omit-frame-pointer $san"
ldflags="$san"
# The cache entries, once: cmake-js sets CMAKE_CXX_FLAGS itself (after --CD options), so the flags go
# in the Release ones.
defs=("CMAKE_CXX_FLAGS_RELEASE=$cxxflags" "CMAKE_SHARED_LINKER_FLAGS_RELEASE=$ldflags" "CMAKE_EXE_LINKER_FLAGS_RELEASE=$ldflags")

build () {
  local jobs="${SANITIZE_JOBS:-$(nproc)}"
  echo "sanitize: building $out ($jobs jobs; log: $logs/build.log)"
  mkdir -p "$logs"
  local t0=$SECONDS
  # cmake-js compile passes --CD options only when it configures a new folder: an existing build-asan/
  # made with other flags is reconfigured here (every object is then rebuilt with the new flags).
  if [ -f "$out/CMakeCache.txt" ] && ! grep -qxF "CMAKE_CXX_FLAGS_RELEASE:STRING=$cxxflags" "$out/CMakeCache.txt"; then
    echo "sanitize: the flags changed: reconfiguring $out"
    cmake "$out" "${defs[@]/#/-D}" >"$logs/configure.log" 2>&1 || { tail -n 20 "$logs/configure.log"; exit 2; }
  fi
  if ! node "$root/node_modules/cmake-js/bin/cmake-js" compile --out "$out" --parallel "$jobs" \
      "${defs[@]/#/--CD}" >"$logs/build.log" 2>&1; then
    tail -n 40 "$logs/build.log"
    echo "sanitize: FAILED: the sanitized build did not complete (see $logs/build.log)"
    exit 2
  fi
  echo "sanitize: build took $((SECONDS - t0)) s"
}

if [ "${SANITIZE_SKIP_BUILD:-0}" != "1" ]; then build; fi
if [ "${SANITIZE_BUILD_ONLY:-0}" = "1" ]; then exit 0; fi

# ---------------------------------------------------------------------------------------------------
# Tests: the boundary (tensors, models, TorchScript, dispose/exit while busy), file (model files, state
# dicts, checkpoints, TorchScript files, mask PNGs, fuzzing) and data tests.
# ---------------------------------------------------------------------------------------------------
addon="$out/Release/segtorch.node"
[ -f "$addon" ] || { echo "sanitize: FAILED: $addon is missing (build first)"; exit 2; }

# A native check (test/native/NAME.cc, a CMake target linked with the addon's own sanitized objects, so
# that its sources cannot drift from the addon's: a hand-kept list had stopped linking unseen), built in
# $out and run: exits on failure.
native_check () {
  local name="$1"
  echo "sanitize: test/native/$name.cc (log: $logs/$name.log)"
  if ! { cmake --build "$out" --target "$name" -j "${SANITIZE_JOBS:-$(nproc)}" &&
         ASAN_OPTIONS=detect_leaks=0 "$out/$name"; } >"$logs/$name.log" 2>&1; then
    tail -n 30 "$logs/$name.log"
    echo "sanitize: FAILED: test/native/$name.cc"
    exit 1
  fi
}

if [ "$#" -eq 0 ]; then
  # bf16 Winograd's transforms (native/blocks/winograd_kernel.cc; they run in predict only on libtorch
  # 2.x) against at::conv2d; the fused training batch norm's loops against float64; the fused softmax
  # cross-entropy against F::cross_entropy in float64 (NaN / inf scores, labels out of range); predict's
  # bf16 ReLU against ATen's on every bf16 bit pattern. All parallel (OpenMP), sanitized.
  for check in test/native/*.cc; do
    native_check "$(basename "$check" .cc)"
  done
fi

if [ "$#" -gt 0 ]; then
  tests=("$@")
else
  tests=()
  for f in test/tensor.test.ts test/model.test.ts test/statedict.test.ts test/torchscript.test.ts \
           test/hardening-ts.test.ts test/png.test.ts test/data.test.ts test/augment.test.ts \
           test/boundary*.test.ts test/hostile*.test.ts test/fuzz*.test.ts test/batchnorm.test.ts test/layout.test.ts; do
    [ -f "$f" ] && tests+=("$f")
  done
fi

reports="$logs/reports"
rm -rf "$reports"; mkdir -p "$reports"
asan_rt="$(gcc -print-file-name=libasan.so)"
ubsan_rt="$(gcc -print-file-name=libubsan.so)"
for rt in "$asan_rt" "$ubsan_rt"; do
  [ -f "$rt" ] || { echo "sanitize: FAILED: sanitizer runtime $rt not found"; exit 2; }
done

# Preflight, so that a clean result means something:
# 1. the addon is instrumented (it calls into both runtimes);
for sym in __asan_report_load __ubsan_handle_; do
  nm -D --undefined-only "$addon" | grep -c "$sym" >/dev/null || { echo "sanitize: FAILED: $addon has no $sym* calls: not a sanitized build"; exit 2; }
done
# 2. (below) a deliberate heap overflow and a signed overflow, each in a grandchild process (a node
#    child spawned by node, as the tests do), are caught and written where the final check looks;
# 3. (below) the tests' node loads this addon (SEGTORCH_ADDON, lib/binding.ts), not build/ or prebuilds/.
helpers="$out/helpers"; mkdir -p "$helpers"
cat >"$helpers/canary.c" <<'C'
#include <stdlib.h>
static volatile int n = 8, big = 2147483647;
__attribute__((constructor)) static void canary (void) {
  const char *ub = getenv("SANITIZE_CANARY_UB");
  if (ub && *ub == '1') { volatile int x = big + n; (void)x; }
  char *p = malloc(n); volatile char c = p[n]; (void)c; free(p);
}
C
# UBSan (libubsan, initialised lazily when its first report comes from a dlopen'ed library such as
# the addon) ignores UBSAN_OPTIONS=log_path and writes to stderr, which the tests' child processes
# capture or discard. This preloaded helper sets libubsan's report path itself.
cat >"$helpers/ubsan_log_path.c" <<'C'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
__attribute__((constructor)) static void set_ubsan_log_path (void) {
  const char *path = getenv("SANITIZE_UBSAN_LOG_PATH");
  void *ubsan = dlopen("libubsan.so.1", RTLD_NOW | RTLD_NOLOAD);
  if (!path || !ubsan) return;
  void (*set)(const char *) = (void (*)(const char *))dlsym(ubsan, "__sanitizer_set_report_path");
  if (set) set(path);
}
C
gcc -shared -fPIC -g -fsanitize=address,undefined -fno-sanitize-recover=all -o "$helpers/canary.so" "$helpers/canary.c" &&
  gcc -shared -fPIC -O1 -o "$helpers/ubsan_log_path.so" "$helpers/ubsan_log_path.c" -ldl ||
  { echo "sanitize: FAILED: could not build the helpers in $helpers"; exit 2; }

# Every process started from here (node, the node and python3 children the tests spawn) gets the ASan
# runtime preloaded (node is not built with it) and writes its reports to $reports/<kind>.<pid>.
#   detect_leaks=0: libtorch's and V8's process-lifetime allocations (thread pools, registries, the
#     heap) make LeakSanitizer's report at exit all noise; leaks are covered by the RSS tests instead.
#   detect_odr_violation=0: libtorch and its dependencies define the same globals in several DSOs.
#   alloc_dealloc_mismatch=0: libtorch (unsanitized) frees with free() memory from operator new[] in
#     places ASan cannot see as a pair.
#   abort_on_error / halt_on_error / -fno-sanitize-recover: the first error ends the process.
export LD_PRELOAD="$asan_rt $ubsan_rt $helpers/ubsan_log_path.so${LD_PRELOAD:+ $LD_PRELOAD}"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1:detect_odr_violation=0:alloc_dealloc_mismatch=0:log_path=$reports/asan${SANITIZE_ASAN_OPTIONS:+:$SANITIZE_ASAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$reports/ubsan${SANITIZE_UBSAN_OPTIONS:+:$SANITIZE_UBSAN_OPTIONS}"
export SANITIZE_UBSAN_LOG_PATH="$reports/ubsan"
export SEGTORCH_ADDON="$addon"
# test/fuzz.test.ts bounds each worker's peak RSS at 1 GiB; under ASan they reach 1.0-1.25 GiB.
export SEGTORCH_FUZZ_MAX_RSS_MIB="${SEGTORCH_FUZZ_MAX_RSS_MIB:-2048}"

for kind in asan:heap-buffer-overflow ubsan:'signed integer overflow'; do
  rm -f "$reports"/*
  SANITIZE_CANARY_UB=$([ "${kind%%:*}" = ubsan ] && echo 1 || echo 0) node -e "require('child_process').spawnSync(process.execPath,
    ['-e', 'process.dlopen({ exports: {} }, process.argv[1])', '$helpers/canary.so'], { stdio: 'ignore' })"
  if ! grep -qs "${kind#*:}" "$reports/${kind%%:*}".* ; then
    echo "sanitize: FAILED: the ${kind%%:*} canary in a child process left no report in $reports: reports would be missed"; exit 2
  fi
done
rm -f "$reports"/*
node -r ts-node/register/transpile-only -e "require('./lib/binding');
  const maps = require('fs').readFileSync('/proc/self/maps', 'utf8');
  if (!maps.includes(process.env.SEGTORCH_ADDON) || /(build\/Release|prebuilds)\/.*segtorch\.node/.test(maps.split(process.env.SEGTORCH_ADDON).join(''))) process.exit(1)" ||
  { echo "sanitize: FAILED: lib/binding.ts did not load $addon"; exit 2; }
echo "sanitize: preflight ok (instrumented addon loaded, ASan and UBSan reports from child processes are caught)"

echo "sanitize: addon $addon"
echo "sanitize: ${#tests[@]} test files: ${tests[*]}"
t0=$SECONDS
node "$root/node_modules/mocha/bin/mocha.js" --no-config -r ts-node/register/transpile-only --extension ts \
  -t 600000 --slow 60000 --reporter spec "${tests[@]}" 2>&1 | tee "$logs/mocha.log"
mocha_rc=${PIPESTATUS[0]}
elapsed=$((SECONDS - t0))
unset LD_PRELOAD ASAN_OPTIONS UBSAN_OPTIONS SANITIZE_UBSAN_LOG_PATH SEGTORCH_ADDON SEGTORCH_FUZZ_MAX_RSS_MIB

# Summary ------------------------------------------------------------------------------------------
count () { grep -Eo "^ +[0-9]+ $1" "$logs/mocha.log" | tail -n 1 | tr -dc 0-9; }
passing=$(count passing); failing=$(count failing); pending=$(count pending)
errors=(); warnings=()
for f in "$reports"/*; do
  [ -e "$f" ] || continue
  if grep -Eq 'ERROR: (Address|Leak)Sanitizer|runtime error:|SUMMARY: (Address|UndefinedBehavior)Sanitizer' "$f"; then
    errors+=("$f")
  else
    warnings+=("$f")
  fi
done

echo
echo "================ sanitize summary ================"
echo "build:    $out (ASan + UBSan: $cxxflags)"
echo "tests:    ${passing:-0} passing, ${failing:-0} failing, ${pending:-0} pending, mocha exit $mocha_rc, ${elapsed} s"
echo "reports:  ${#errors[@]} sanitizer error report(s)"
for f in "${errors[@]}"; do
  echo "  --- $f"
  grep -E 'ERROR:|runtime error:|SUMMARY:' "$f" | head -n 3 | sed 's/^/    /'
  grep -E '^ +#[0-9]+ ' "$f" | head -n 12 | sed 's/^/    /'
done
# A report that reached stderr instead of a file (the main process's stderr is in the test log).
if grep -Eq 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$logs/mocha.log"; then
  errors+=("$logs/mocha.log")
fi
if [ "${#warnings[@]}" -gt 0 ]; then
  echo "warnings: ${#warnings[@]} file(s) with sanitizer warnings only (not errors):"
  for f in "${warnings[@]}"; do echo "  --- $f"; head -n 3 "$f" | sed 's/^/    /'; done
fi
if [ "${#errors[@]}" -eq 0 ] && [ "$mocha_rc" -eq 0 ]; then
  echo "result:   CLEAN"
  exit 0
fi
echo "result:   NOT CLEAN (full reports in $reports, test log $logs/mocha.log)"
exit 1
