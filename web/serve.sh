#!/usr/bin/env bash
# Sets up what is missing, builds the core natively and to wasm, bundles the
# page, and serves public/ on http://127.0.0.1:8000 (PORT to change it),
# cross-origin isolated so that the core runs on every core (web/serve.py).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/tests/setup.sh"
bash "$root/tests/build.sh"
port="${PORT:-8000}"
echo "headscope: serving public/ on http://127.0.0.1:${port}/"
exec python3 "$root/web/serve.py" "$port" "$root/public"
