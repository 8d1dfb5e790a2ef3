// Which of the two wasm builds of the core this engine runs. Both come from
// the same sources and share one Emscripten glue (headscope_core.mjs):
//   headscope_core_fma.wasm  the kernels with relaxed SIMD's fused
//                            multiply-add (f32x4.relaxed_madd): ~1.4x faster
//                            products (Chromium 114+, node with
//                            --experimental-wasm-relaxed-simd);
//   headscope_core.wasm      SIMD128 only, for every other engine.

// (module (func (param v128 v128 v128) (result v128)
//   local.get 0 local.get 1 local.get 2 f32x4.relaxed_madd))
const RELAXED_SIMD_PROBE = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 8, 1, 96, 3, 123, 123, 123, 1, 123, 3, 2, 1,
  0, 10, 13, 1, 11, 0, 32, 0, 32, 1, 32, 2, 0xfd, 0x85, 0x02, 11]);

export function relaxedSimdSupported() {
  try {
    return WebAssembly.validate(RELAXED_SIMD_PROBE);
  } catch {
    return false;
  }
}

export const CORE_WASM = 'headscope_core.wasm';
export const CORE_WASM_FMA = 'headscope_core_fma.wasm';

// The file name of the build to load here.
export function coreWasmFile() {
  return relaxedSimdSupported() ? CORE_WASM_FMA : CORE_WASM;
}
