#!/usr/bin/env bash
# A longer fuzz campaign than the suite's (test/fuzz.test.ts): COUNT mutants (default 10,000) of each
# kind of file (model, checkpoint, statedict, torchscript, png), a random or given seed, two worker
# processes at a time. Prints one line per kind and exits non-zero on any crash, hang, corrupt weight
# record that loaded, C++ backtrace in a message, or refusal with a bare Error (not a named error class);
# crashing / hanging mutants are kept.
#   scripts/fuzz.sh [COUNT] [SEED] [KINDS]      e.g. scripts/fuzz.sh 20000 7 model,png
set -euo pipefail
cd "$(dirname "$0")/.."
[ -e build/Release/segtorch.node ] || [ -e prebuilds/linux-x64/segtorch.node ] || node scripts/build.js
exec node -r ts-node/register/transpile-only test/fuzz/run.ts "${1:-10000}" "${2:-$RANDOM}" "${3:-model,checkpoint,statedict,torchscript,png}"
