#!/usr/bin/env bash
# The issue-8 benchmark, one command: native, wasm (node) and PyTorch side by
# side on the same random GPT-2-small-shaped checkpoint and the same tokens.
#
#   tests/bench/run.sh [--repeats N] [--tokens T] [--no-geometry] [--no-torch] [--no-torch-geometry]
#
# Builds what it needs in build/bench (native, Release) and build/bench-wasm
# (Emscripten: the core library, then bench_perf/bench_geometry linked for node
# with NODERAWFS), installs python3-torch and libopenblas0-pthread with apt if
# missing (without OpenBLAS Debian's torch runs the reference BLAS, 25x slower),
# writes the checkpoint to build/bench/gpt2-random once, and prints the table
# (paste it into tests/BENCHMARKS.md). All timings are CPU-time medians of one
# single-threaded process (the machine is shared: wall time measures the load).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
repeats=7
tokens=128
geometry=1
torch_geometry=1
torch_on=1
while [ $# -gt 0 ]; do
  case "$1" in
    --repeats) repeats=$2; shift 2 ;;
    --tokens) tokens=$2; shift 2 ;;
    --no-geometry) geometry=0; shift ;;
    --no-torch) torch_on=0; shift ;;
    --no-torch-geometry) torch_geometry=0; shift ;;
    *) echo "usage: $0 [--repeats N] [--tokens T] [--no-geometry] [--no-torch] [--no-torch-geometry]" >&2; exit 2 ;;
  esac
done
export NODE_PATH=/usr/share/nodejs OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
py=/usr/bin/python3
out=$root/build/bench
log=$out/results.txt
mkdir -p "$out"

# 1. Packages (apt only when missing).
if [ "$torch_on" = 1 ]; then
  missing=()
  for p in python3-torch libopenblas0-pthread; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]}"
    apt-get install -y "${missing[@]}"
  fi
fi

# 2. Builds.
cmake -S "$root" -B "$out" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$out" -j2 --target bench_perf bench_geometry bench_safetensors
wasm_out=$root/build/bench-wasm
emcmake cmake -S "$root" -B "$wasm_out" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$wasm_out" -j2 --target headscope_core headscope_kernels headscope_kernels_fma headscope_wasm_fma
wasm_flags=(-std=c++17 -O3 -msimd128 -I"$root/core" -isystem /usr/include/eigen3 -isystem "$wasm_out/host-include"
  -DFE_INVALID=0x01 -DFE_DIVBYZERO=0x04 -DFE_OVERFLOW=0x08 -DFE_UNDERFLOW=0x10 -DFE_INEXACT=0x20
  -sBINARYEN_EXTRA_PASSES=--one-caller-inline-max-function-size=0  # as the top CMakeLists.txt says
  -sALLOW_MEMORY_GROWTH=1 -sMAXIMUM_MEMORY=4GB -sENVIRONMENT=node -sNODERAWFS=1 -sEXIT_RUNTIME=1
  --js-library "$root/tests/bench/node_cpu_clock.js")
# Each benchmark twice, like the page's core (wasm/features.mjs): $b with the
# relaxed-SIMD kernels (rewritten by wasm/relaxed-simd.mjs; what Chromium
# runs) and $b-simd128 with SIMD128 only (what engines without relaxed SIMD run).
for b in bench_perf bench_geometry; do
  for variant in fma simd128; do
    name=$b; kernels=libheadscope_kernels_fma.a
    [ $variant = simd128 ] && name=$b-simd128 && kernels=libheadscope_kernels.a
    if [ ! -f "$wasm_out/$name.js" ] || [ "$wasm_out/core/libheadscope_core.a" -nt "$wasm_out/$name.js" ] ||
       [ "$wasm_out/core/$kernels" -nt "$wasm_out/$name.js" ] || [ "$root/tests/bench/$b.cpp" -nt "$wasm_out/$name.js" ] ||
       [ "$root/tests/bench/node_cpu_clock.js" -nt "$wasm_out/$name.js" ] || [ "$0" -nt "$wasm_out/$name.js" ]; then
      echo "em++ $name"
      em++ "${wasm_flags[@]}" "$root/tests/bench/$b.cpp" "$wasm_out/core/libheadscope_core.a" "$wasm_out/core/$kernels" \
        -o "$wasm_out/$name.js"
      if [ $variant = fma ] &&
         ! node --experimental-wasm-relaxed-simd "$root/wasm/relaxed-simd.mjs" "$wasm_out/$name.wasm" "$wasm_out/$name.wasm"; then
        rm -f "$wasm_out/$name.js"  # relink (and rewrite) next time
        exit 1
      fi
    fi
    # The repository's package.json says "type": "module"; Emscripten's node
    # output is CommonJS.
    cp "$wasm_out/$name.js" "$wasm_out/$name.cjs"
  done
done
# Emscripten 3.1.6 under node 20: without --no-experimental-fetch it
# fetch()es the .wasm by path; node 20 runs relaxed SIMD behind a flag.
node_run=(node --no-experimental-fetch --experimental-wasm-relaxed-simd)

# 3. Runs. Each prints `RESULT key value` lines into the log.
: > "$log"
ckpt=$out/gpt2-random
"$out/tests/bench/bench_perf" "$ckpt" --tokens "$tokens" --repeats "$repeats" | tee -a "$log"
"$out/tests/bench/bench_safetensors" | tee -a "$log"
"${node_run[@]}" "$wasm_out/bench_perf.cjs" "$ckpt" --tokens "$tokens" --repeats "$repeats" | tee -a "$log"
"${node_run[@]}" "$wasm_out/bench_perf-simd128.cjs" "$ckpt" --tokens "$tokens" --repeats "$repeats" --label wasm128 |
  tee -a "$log"
# Wasm memory after loading the checkpoint through the page's JS API.
node "$root/tests/bench/bench_memory.mjs" "$ckpt" --wasm-dir "$wasm_out/wasm" | tee -a "$log"
if [ "$torch_on" = 1 ]; then
  geo_flag=()
  [ "$geometry" = 1 ] && geo_flag=(--batched-geometry)
  [ "$geometry" = 1 ] && [ "$torch_geometry" = 1 ] && geo_flag=(--geometry)
  "$py" "$root/tests/bench/torch_reference.py" "$ckpt" --tokens "$tokens" --repeats "$repeats" "${geo_flag[@]}" 2>&1 |
    tee -a "$log"
fi
if [ "$geometry" = 1 ]; then
  for side in native wasm wasm128; do
    if [ $side = native ]; then cmd=("$out/tests/bench/bench_geometry" --repeat 3)
    elif [ $side = wasm ]; then cmd=("${node_run[@]}" "$wasm_out/bench_geometry.cjs" --repeat 3)
    else cmd=("${node_run[@]}" "$wasm_out/bench_geometry-simd128.cjs" --repeat 3); fi
    "${cmd[@]}" | tee /dev/stderr | awk -v s=$side '
      /^spectra: 144/ {print "RESULT " s ".geo_spectra_s " $(NF-1)/1000}
      /^write-subspace redundancy/ {print "RESULT " s ".geo_redundancy_s " $(NF-1)/1000}
      /^Q\/K\/V composition/ {print "RESULT " s ".geo_composition_s " $(NF-1)/1000}
      /^total/ {print "RESULT " s ".geo_total_s " $(NF-1)/1000}
      /^all three in one pass/ {print "RESULT " s ".geo_one_pass_s " $(NF-1)/1000}
      /^one pass, the first call/ {print "RESULT " s ".geo_one_pass_cold_s " $(NF-1)/1000}' >> "$log"
  done
fi

# 4. The table.
"$py" - "$log" <<'EOF'
import sys
r = {}
for line in open(sys.argv[1]):
    if line.startswith("RESULT "):
        _, k, v = line.split()
        r[k] = float(v)
def g(k):
    return r.get(k)
def fmt(v, unit):
    if v is None: return "—"
    if unit == "x": return f"{v:.3f}×"
    return f"{v:.1f} GFLOP/s" if unit == "gf" else f"{v * 1000:.0f} ms"
def ratio(a, b, unit):
    if a is None or b is None or unit == "x": return "—"
    return f"{b / a:.2f}×" if unit == "gf" else f"{a / b:.2f}×"
rows = [
    ("GEMM, forward shapes (all four)", "gemm_gflops", "gf", "wasm ≥ 30 GFLOP/s"),
    ("GEMM [T,768]x[768,2304] (QKV)", "gemm_qkv_gflops", "gf", ""),
    ("GEMM [T,768]x[768,768] (attn out)", "gemm_attn_out_gflops", "gf", ""),
    ("GEMM [T,768]x[768,3072] (MLP in)", "gemm_mlp_in_gflops", "gf", ""),
    ("GEMM [T,3072]x[3072,768] (MLP out)", "gemm_mlp_out_gflops", "gf", ""),
    ("forward, no LM head", "forward_s", "s", "wasm ≤ 2× torch, native ≤ torch"),
    ("forward + LM head + loss", "forward_head_s", "s", ""),
    ("geometry: 144 OV + 144 QK spectra", "geo_spectra_s", "s", ""),
    ("geometry: write redundancy 144×144", "geo_redundancy_s", "s", ""),
    ("geometry: Q/K/V composition, l1<l2", "geo_composition_s", "s", ""),
    ("geometry: the three, separately", "geo_total_s", "s", "PyTorch: TransformerLens's algorithm"),
    ("geometry: spectra, PyTorch batched", ("geo_spectra_s", "geo_batched_spectra_s"), "s", "PyTorch: a careful user's batching"),
    ("geometry: redundancy, PyTorch batched", ("geo_redundancy_s", "geo_batched_redundancy_s"), "s", ""),
    ("geometry: composition, PyTorch batched", ("geo_composition_s", "geo_batched_composition_s"), "s", ""),
    ("geometry: the three, PyTorch batched", ("geo_one_pass_s", "geo_batched_total_s"), "s", "ours: the one pass"),
    ("geometry: the three in one pass", "geo_one_pass_s", "s", "wasm ≤ 1.5 s"),
    ("geometry: one pass, first call in a fresh process", "geo_one_pass_cold_s", "s", "(what the page runs once per model)"),
    ("wasm memory after load / tensor bytes", "load_memory_ratio", "x", "wasm ≤ 1.1×"),
]
print()
print("| what | native | wasm (node, relaxed SIMD) | wasm (SIMD128 only) | PyTorch | native/torch | wasm/torch | note |")
print("|---|---|---|---|---|---|---|---|")
for name, key, unit, target in rows:
    ours, theirs = key if isinstance(key, tuple) else (key, key)
    n, w, w128, t = g("native." + ours), g("wasm." + ours), g("wasm128." + ours), g("torch." + theirs)
    print(f"| {name} | {fmt(n, unit)} | {fmt(w, unit)} | {fmt(w128, unit)} | {fmt(t, unit)} | {ratio(n, t, unit)} | {ratio(w, t, unit)} | {target} |")
print()
print("ratios: time / torch time (lower is better); for GFLOP/s, torch / ours (lower is better).")
for side in ("native", "wasm", "wasm128", "torch"):
    if g(side + ".loss") is not None:
        print(f"{side} loss (same weights and tokens): {g(side + '.loss'):.6f}")
EOF
