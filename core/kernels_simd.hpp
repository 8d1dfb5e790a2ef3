// Vector helpers shared by the files of the kernels library (kernels.cpp,
// kernels_quad.cpp, kernels_f64.cpp) and private to it: f32x4 and f64x2
// through the compilers' vector extensions, the multiply-add that the
// relaxed-SIMD build fuses, and the attribute of the kernels that V8 must
// tier up. Both wasm variants of the library compile these files alike; only
// __wasm_relaxed_simd__ differs (core/CMakeLists.txt).
#pragma once

#include <cstddef>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__wasm__)
// Natively on x86-64, the AVX2 + FMA paths: compiled by attribute, chosen at
// run time (the core is built without -march flags).
#define HS_KERNELS_AVX2 1
#endif

namespace hs {
namespace {

// f32x4 through the compilers' vector extensions: clang lowers them to wasm
// SIMD128, GCC to SSE. Unaligned, aliasing-safe loads and stores.
typedef float f32x4 __attribute__((vector_size(16)));
typedef float f32x4_u __attribute__((vector_size(16), aligned(4), may_alias));
inline f32x4 load4(const float* p) { return *reinterpret_cast<const f32x4_u*>(p); }
inline void store4(float* p, f32x4 v) { *reinterpret_cast<f32x4_u*>(p) = v; }
inline f32x4 splat4(float x) { return f32x4{x, x, x, x}; }
typedef double f64x2 __attribute__((vector_size(16)));
typedef double f64x2_u __attribute__((vector_size(16), aligned(8), may_alias));
inline f64x2 load2(const double* p) { return *reinterpret_cast<const f64x2_u*>(p); }
inline void store2(double* p, f64x2 v) { *reinterpret_cast<f64x2_u*>(p) = v; }
// acc[0..3] += w * v, v widened to double.
inline void add_scaled4(double* acc, f32x4 v, f64x2 w) {
  const f64x2 lo = __builtin_convertvector(__builtin_shufflevector(v, v, 0, 1), f64x2);
  const f64x2 hi = __builtin_convertvector(__builtin_shufflevector(v, v, 2, 3), f64x2);
  store2(acc, load2(acc) + w * lo);
  store2(acc + 2, load2(acc + 2) + w * hi);
}

}  // namespace
}  // namespace hs

// acc + x * y: relaxed SIMD's relaxed_madd in the wasm build that has it (see
// madd in kernels.cpp); elsewhere mul + add, which the native FMA clones below
// contract to FMA. (A macro: GCC may not inline a helper into a function
// with other optimize attributes.)
#ifdef __wasm_relaxed_simd__
#define HS_MADD4(x, y, acc) __builtin_wasm_fma_f32x4((x), (y), (acc))
#else
#define HS_MADD4(x, y, acc) ((acc) + (x) * (y))
#endif

// Noinline, like the GEMM micro-kernels: V8 tiers up functions, not loops.
// Natively (GCC on x86-64), a clone for CPUs with FMA is chosen at load time,
// with a * b + c contracted to it (the core is built without -march).
#if defined(HS_KERNELS_AVX2) && !defined(__clang__)
#define HS_QUAD_KERNEL __attribute__((noinline, target_clones("fma", "default"), optimize("fp-contract=fast")))
#else
#define HS_QUAD_KERNEL __attribute__((noinline))
#endif

// acc + x * y in f64x2, as HS_MADD4 (fused with relaxed SIMD).
#ifdef __wasm_relaxed_simd__
#define HS_MADD2(x, y, acc) __builtin_wasm_fma_f64x2((x), (y), (acc))
#else
#define HS_MADD2(x, y, acc) ((acc) + (x) * (y))
#endif
