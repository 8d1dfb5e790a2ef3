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

// Each build also comes with threads (wasm/CMakeLists.txt), with its own glue
// (headscope_core_threads.mjs): the worker runs it where SharedArrayBuffer
// is there to share (threadsSupported).
export const CORE_WASM = 'headscope_core.wasm';
export const CORE_WASM_FMA = 'headscope_core_fma.wasm';

// The file name of the build to load here (relaxed: whether to take the
// relaxed-SIMD build; by default where the engine runs it).
export function coreWasmFile({ threaded = false, relaxed = relaxedSimdSupported() } = {}) {
  return `headscope_core${threaded ? '_threads' : ''}${relaxed ? '_fma' : ''}.wasm`;
}

// The Emscripten glue of the build.
export function coreScript(threaded = false) {
  return threaded ? 'headscope_core_threads.mjs' : 'headscope_core.mjs';
}

// The most threads the page and the CLI start by default (the cores beyond
// share little work on today's small models).
export const MAX_THREADS = 8;

// Whether this context can run the threaded build: shared memory (a page
// must be cross-origin isolated for it; node always is) and more than one core.
export function threadsSupported() {
  const isolated = typeof crossOriginIsolated === 'boolean' ? crossOriginIsolated : typeof process === 'object';
  const cores = typeof navigator === 'object' && navigator.hardwareConcurrency ? navigator.hardwareConcurrency : 1;
  return isolated && typeof SharedArrayBuffer === 'function' && cores > 1;
}
