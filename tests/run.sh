#!/usr/bin/env bash
# The test command: sets up what is missing, builds everything, and runs every
# test layer (core Catch2 tests, node tests of the wasm API, browser tests)
# through one ctest run.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/tests/setup.sh"
bash "$root/tests/build.sh"
ctest --preset native-release
