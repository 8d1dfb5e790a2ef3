#!/usr/bin/env bash
# Builds the libFuzzer targets in their own clang build directory and runs
# each for SECONDS (default 30) from a seed corpus made from the fixtures.
#   usage: tests/fuzz/run.sh [SECONDS] [TARGET...]
# Environment: HEADSCOPE_FUZZ_BUILD (build dir, default build/fuzz),
# HEADSCOPE_FIXTURES (default ../shared/fixtures beside the repository).
# The growing corpus is kept in $build/corpus/<target> between runs; crash
# inputs go to $build/artifacts/. Exits non-zero if any target found a crash.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
seconds="${1:-30}"
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(fuzz_safetensors fuzz_config)
build="${HEADSCOPE_FUZZ_BUILD:-$root/build/fuzz}"
fixtures="${HEADSCOPE_FIXTURES:-$root/../shared/fixtures}"
python="$(command -v /usr/bin/python3 || command -v python3)"

CC=clang CXX=clang++ cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DHEADSCOPE_FUZZ=ON -DHEADSCOPE_FIXTURES="$fixtures" >/dev/null
cmake --build "$build" -j2 --target "${targets[@]}"

"$python" "$root/tests/fuzz/make_seeds.py" "$fixtures" "$build/seeds"
mkdir -p "$build/artifacts"

status=0
for target in "${targets[@]}"; do
  case "$target" in
    fuzz_safetensors) seeds="$build/seeds/safetensors"; dict="$root/tests/fuzz/safetensors.dict" ;;
    fuzz_config) seeds="$build/seeds/config"; dict="$root/tests/fuzz/config.dict" ;;
    *) echo "unknown target $target" >&2; exit 2 ;;
  esac
  corpus="$build/corpus/$target"
  mkdir -p "$corpus"
  echo "== $target: ${seconds}s"
  # -rss_limit_mb: a reader must not allocate in proportion to sizes it only
  # read from the header; 1 GiB is far above anything a 64 KiB input needs.
  if ! "$build/tests/fuzz/$target" "$corpus" "$seeds" -dict="$dict" -max_total_time="$seconds" \
      -max_len=65536 -rss_limit_mb=1024 -timeout=10 -print_final_stats=1 \
      -artifact_prefix="$build/artifacts/$target-" 2>"$build/$target.log"; then
    status=1
    echo "!! $target found a problem; see $build/$target.log and $build/artifacts/" >&2
  fi
  grep -E '^stat::(number_of_executed_units|peak_rss_mb|new_units_added)' "$build/$target.log" || true
  grep -E 'cov:' "$build/$target.log" | tail -1 || true
done
exit "$status"
