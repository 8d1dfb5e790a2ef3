#!/usr/bin/env bash
# Installs everything headscope needs on a fresh Debian 12 machine, as root:
# Debian packages (compilers, Emscripten, header-only libraries, Catch2,
# Chromium for the browser tests, numpy/scipy/torch for reference values) and the
# npm packages of package.json. Idempotent: installs only what is missing.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

packages=(
  cmake ninja-build g++ clang libclang-rt-14-dev
  emscripten libeigen3-dev xtl-dev nlohmann-json3-dev catch2
  chromium python3 python3-numpy python3-scipy python3-torch
)
command -v node >/dev/null && command -v npm >/dev/null || packages+=(nodejs npm)

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

cd "$root"
if [[ ! -d node_modules || package-lock.json -nt node_modules/.package-lock.json ]]; then
  echo "setup: installing npm packages"
  npm ci --no-audit --no-fund --loglevel=error
fi
