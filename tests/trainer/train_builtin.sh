#!/bin/sh
# Trains headscope's built-in model from scratch and writes it, with its model
# card, to public/models/headscope-tiny/. One command, from a fresh clone
# (after `npm install`, for the tokenizer check):
#
#   tests/trainer/train_builtin.sh
#
# Steps: build train_builtin (Release, plain -O2: no -march; the core's
# kernels choose AVX2 + FMA at run time, so the same compiler gives the same
# bits on every x86-64 that takes the same kernel), generate the corpus and the
# tokenizer (node tests/trainer/build_corpus.mjs), train on one thread,
# measure every head with the core's forward pass and detectors, write the
# files. Extra arguments go to train_builtin (e.g. --steps 200 for a quick
# try; --out DIR to write elsewhere).
#
# Environment: BUILD_DIR (default build/trainer), OUT (default
# public/models/headscope-tiny).
set -eu

root=$(cd "$(dirname "$0")/../.." && pwd)
build=${BUILD_DIR:-$root/build/trainer}
out=${OUT:-$root/public/models/headscope-tiny}

start=$(date +%s)
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" --target train_builtin -j2
node "$root/tests/trainer/build_corpus.mjs" --out "$build/corpus"
mkdir -p "$out"
# One thread: Eigen is not built with OpenMP here, and the machine is shared.
OMP_NUM_THREADS=1 "$build/tests/trainer/train_builtin" --data "$build/corpus" --out "$out" "$@"
echo "train_builtin.sh: done in $(( $(date +%s) - start )) s; wrote $out"
