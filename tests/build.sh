#!/usr/bin/env bash
# Builds headscope: the native core and tests (build/native), the wasm module
# (build/wasm), and the page bundle (public/dist). Assumes tests/setup.sh ran.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# Debian's Emscripten needs node to find its acorn module (TOOLCHAIN.md).
export NODE_PATH=/usr/share/nodejs

cmake --preset native-release >/dev/null
cmake --build --preset native-release
cmake --preset wasm-release >/dev/null
cmake --build --preset wasm-release
node web/build.mjs --wasm-dir build/wasm/wasm
