// The forward pass's kernels: the matrix products (GEMM) and exp/GELU; see
// kernels.hpp for why they exist. (The geometry's kernels are the same
// library's kernels_quad.cpp and kernels_f64.cpp.) Blocking (BLIS loop order):
//   for jc in N step NC:            B block [KC, NC] packed once per (jc, pc)
//     for pc in K step KC:
//       pack B [pc:pc+KC, jc:jc+NC] into NR-column micro-panels
//       for ic in M step MC:        A block [MC, KC] (stays in L2)
//         pack A [ic:ic+MC, pc:pc+KC] into MR-row micro-panels
//         for jr, ir: MR x NR micro-kernel over KC (B micro-panel in L1)
// The first pc block writes C (with the bias), later ones accumulate.
// Tiles: 4x8 with wasm SIMD128; natively 6x16 with AVX2 FMA when the CPU has
// it (checked at run time), else Eigen. Natively, gemm runs another loop
// order (gemm_avx2, OpenBLAS's), which packs B one micro-panel at a time.
#include "kernels.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <vector>

#ifdef __wasm_simd128__
#include <wasm_simd128.h>
#elif defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

#include "kernels_simd.hpp"
#include "parallel.hpp"

namespace hs {

namespace {

constexpr int KC = 256, NC = 1024;

// A [mc, kc] (row stride lda) -> panels of MR rows: p[(i/MR) * MR*kc + k*MR + i%MR]; rows past mc are 0.
template <int MR, class T>
void pack_a(int mc, int kc, const T* A, int lda, float* p) {
  for (int i0 = 0; i0 < mc; i0 += MR) {
    const int m = std::min(MR, mc - i0);
    for (int k = 0; k < kc; ++k) {
      for (int i = 0; i < m; ++i) p[i] = widen(A[static_cast<std::ptrdiff_t>(i0 + i) * lda + k]);
      for (int i = m; i < MR; ++i) p[i] = 0.f;
      p += MR;
    }
  }
}

// The same layout as pack_a, read row by row: each source row is read
// contiguously and scattered into an L1-resident panel. For operands whose
// rows are long (a large K, so consecutive rows are far apart) reading
// across rows at each k, as pack_a does, misses the cache on every load.
// In wasm, full groups of 4 rows go through 4x4 SIMD transposes.
template <int R, class T>
void pack_rows(int mc, int kc, const T* A, int lda, float* p) {
  for (int i0 = 0; i0 < mc; i0 += R, p += static_cast<std::ptrdiff_t>(R) * kc) {
    const int m = std::min(R, mc - i0);
    int i = 0;
    if constexpr (std::is_same_v<T, float>) {
#ifdef __wasm_simd128__
    const int k4 = kc & ~3;
    for (; i + 4 <= m; i += 4) {
      const float* s0 = A + static_cast<std::ptrdiff_t>(i0 + i) * lda;
      const float *s1 = s0 + lda, *s2 = s1 + lda, *s3 = s2 + lda;
      float* dst = p + i;
      for (int k = 0; k < k4; k += 4, dst += 4 * R) {
        const v128_t r0 = wasm_v128_load(s0 + k), r1 = wasm_v128_load(s1 + k);
        const v128_t r2 = wasm_v128_load(s2 + k), r3 = wasm_v128_load(s3 + k);
        const v128_t t0 = wasm_i32x4_shuffle(r0, r1, 0, 4, 1, 5);  // a0 b0 a1 b1
        const v128_t t1 = wasm_i32x4_shuffle(r2, r3, 0, 4, 1, 5);  // c0 d0 c1 d1
        const v128_t t2 = wasm_i32x4_shuffle(r0, r1, 2, 6, 3, 7);  // a2 b2 a3 b3
        const v128_t t3 = wasm_i32x4_shuffle(r2, r3, 2, 6, 3, 7);  // c2 d2 c3 d3
        wasm_v128_store(dst, wasm_i32x4_shuffle(t0, t1, 0, 1, 4, 5));
        wasm_v128_store(dst + R, wasm_i32x4_shuffle(t0, t1, 2, 3, 6, 7));
        wasm_v128_store(dst + 2 * R, wasm_i32x4_shuffle(t2, t3, 0, 1, 4, 5));
        wasm_v128_store(dst + 3 * R, wasm_i32x4_shuffle(t2, t3, 2, 3, 6, 7));
      }
      for (int k = k4; k < kc; ++k) {  // kc % 4 leftovers
        p[k * R + i] = s0[k];
        p[k * R + i + 1] = s1[k];
        p[k * R + i + 2] = s2[k];
        p[k * R + i + 3] = s3[k];
      }
    }
#elif defined(__x86_64__) && defined(__GNUC__)
    const int k4 = kc & ~3;  // SSE (always there on x86-64)
    for (; i + 4 <= m; i += 4) {
      const float* s0 = A + static_cast<std::ptrdiff_t>(i0 + i) * lda;
      const float *s1 = s0 + lda, *s2 = s1 + lda, *s3 = s2 + lda;
      float* dst = p + i;
      for (int k = 0; k < k4; k += 4, dst += 4 * R) {
        __m128 r0 = _mm_loadu_ps(s0 + k), r1 = _mm_loadu_ps(s1 + k), r2 = _mm_loadu_ps(s2 + k), r3 = _mm_loadu_ps(s3 + k);
        _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
        _mm_storeu_ps(dst, r0);
        _mm_storeu_ps(dst + R, r1);
        _mm_storeu_ps(dst + 2 * R, r2);
        _mm_storeu_ps(dst + 3 * R, r3);
      }
      for (int k = k4; k < kc; ++k) {
        p[k * R + i] = s0[k];
        p[k * R + i + 1] = s1[k];
        p[k * R + i + 2] = s2[k];
        p[k * R + i + 3] = s3[k];
      }
    }
    for (; i + 2 <= m; i += 2) {  // a pair of rows (the AVX2 tile has 6)
      const float* s0 = A + static_cast<std::ptrdiff_t>(i0 + i) * lda;
      const float* s1 = s0 + lda;
      float* dst = p + i;
      for (int k = 0; k < k4; k += 4, dst += 4 * R) {
        const __m128 r0 = _mm_loadu_ps(s0 + k), r1 = _mm_loadu_ps(s1 + k);
        const __m128 lo = _mm_unpacklo_ps(r0, r1), hi = _mm_unpackhi_ps(r0, r1);  // a0 b0 a1 b1, a2 b2 a3 b3
        _mm_storel_pi(reinterpret_cast<__m64*>(dst), lo);
        _mm_storeh_pi(reinterpret_cast<__m64*>(dst + R), lo);
        _mm_storel_pi(reinterpret_cast<__m64*>(dst + 2 * R), hi);
        _mm_storeh_pi(reinterpret_cast<__m64*>(dst + 3 * R), hi);
      }
      for (int k = k4; k < kc; ++k) {
        p[k * R + i] = s0[k];
        p[k * R + i + 1] = s1[k];
      }
    }
#endif
    }
    for (; i < m; ++i) {
      const T* src = A + static_cast<std::ptrdiff_t>(i0 + i) * lda;
      float* dst = p + i;
      for (int k = 0; k < kc; ++k) dst[k * R] = widen(src[k]);
    }
    for (int z = m; z < R; ++z)
      for (int k = 0; k < kc; ++k) p[k * R + z] = 0.f;
  }
}

// B [kc, nc] (row stride ldb) -> panels of NR columns: p[(j/NR) * NR*kc + k*NR + j%NR]; columns past nc are 0.
template <int NR, class T>
void pack_b(int kc, int nc, const T* B, int ldb, float* p) {
  for (int j0 = 0; j0 < nc; j0 += NR) {
    const int n = std::min(NR, nc - j0);
    const T* src = B + j0;
    if (n == NR) {
      for (int k = 0; k < kc; ++k, p += NR, src += ldb) {
        if constexpr (std::is_same_v<T, float>) std::memcpy(p, src, NR * sizeof(float));
        else
          for (int j = 0; j < NR; ++j) p[j] = widen(src[j]);
      }
    } else {
      for (int k = 0; k < kc; ++k, p += NR, src += ldb) {
        for (int j = 0; j < n; ++j) p[j] = widen(src[j]);
        for (int j = n; j < NR; ++j) p[j] = 0.f;
      }
    }
  }
}

// Micro-kernels: the MR x NR tile over kc, t = a_panel [kc, MR]^T b_panel
// [kc, NR], written to t[MR * NR] row-major. Each is its own (non-inlined)
// function: V8 has no on-stack replacement for wasm, so the hot loop must
// live in a function that is entered many times to be tiered up.
using MicroKernel = void (*)(int kc, const float* a, const float* b, float* t);

#ifdef __wasm_simd128__
// acc + x * y. With relaxed SIMD (the build's second wasm module, compiled
// with -mrelaxed-simd) one f32x4.relaxed_madd: fused where the CPU has FMA,
// ~1.4x the kernels' throughput. Clang 14 only knows the proposal's prototype
// opcode (f32x4.fma 0xaf, computing its first operand + the product of the
// other two), which no engine accepts any more; wasm/relaxed-simd.mjs
// rewrites it after linking to the final relaxed_madd (0x105), which computes
// operand 1 * operand 2 + operand 3. The operands are therefore in the final
// order here, and the module is unusable unpatched (engines reject 0xaf).
inline v128_t madd(v128_t x, v128_t y, v128_t acc) {
#ifdef __wasm_relaxed_simd__
  typedef float f32x4_t __attribute__((vector_size(16)));
  return (v128_t)__builtin_wasm_fma_f32x4((f32x4_t)x, (f32x4_t)y, (f32x4_t)acc);
#else
  return wasm_f32x4_add(acc, wasm_f32x4_mul(x, y));
#endif
}

// 4 x 8: 8 f32x4 accumulators + 2 B vectors + 1 broadcast, within V8's ~15
// usable vector registers.
__attribute__((noinline)) void micro_kernel_4x8(int kc, const float* a, const float* b, float* t) {
  v128_t c00 = wasm_f32x4_splat(0.f), c01 = c00, c10 = c00, c11 = c00;
  v128_t c20 = c00, c21 = c00, c30 = c00, c31 = c00;
  for (int k = 0; k < kc; ++k, a += 4, b += 8) {
    const v128_t b0 = wasm_v128_load(b), b1 = wasm_v128_load(b + 4);
    v128_t ai = wasm_v128_load32_splat(a);
    c00 = madd(ai, b0, c00);
    c01 = madd(ai, b1, c01);
    ai = wasm_v128_load32_splat(a + 1);
    c10 = madd(ai, b0, c10);
    c11 = madd(ai, b1, c11);
    ai = wasm_v128_load32_splat(a + 2);
    c20 = madd(ai, b0, c20);
    c21 = madd(ai, b1, c21);
    ai = wasm_v128_load32_splat(a + 3);
    c30 = madd(ai, b0, c30);
    c31 = madd(ai, b1, c31);
  }
  wasm_v128_store(t + 0, c00);
  wasm_v128_store(t + 4, c01);
  wasm_v128_store(t + 8, c10);
  wasm_v128_store(t + 12, c11);
  wasm_v128_store(t + 16, c20);
  wasm_v128_store(t + 20, c21);
  wasm_v128_store(t + 24, c30);
  wasm_v128_store(t + 28, c31);
}
#else
// Portable 4 x 8 (tests the packed path natively).
void micro_kernel_4x8(int kc, const float* a, const float* b, float* t) {
  float acc[4 * 8] = {};
  for (int k = 0; k < kc; ++k, a += 4, b += 8)
    for (int i = 0; i < 4; ++i)
      for (int j = 0; j < 8; ++j) acc[i * 8 + j] += a[i] * b[j];
  std::memcpy(t, acc, sizeof acc);
}
#endif

#ifdef HS_KERNELS_AVX2
// 6 x 16 with AVX2 FMA: 12 ymm accumulators + 2 B vectors + 1 broadcast. The
// core is built without -march flags, so this is compiled for AVX2 by
// attribute and chosen at run time (cpu_has_avx2_fma).
#define HS_FMA_ROW(i)                                      \
  ai = _mm256_broadcast_ss(a + i);                         \
  c##i##0 = _mm256_fmadd_ps(ai, b0, c##i##0);              \
  c##i##1 = _mm256_fmadd_ps(ai, b1, c##i##1);
// The tile is stored into C (row stride ldc), plus bias [16] on every row when
// not null, or added to C (accumulate; then the bias must be null). The
// k loop is unrolled by 4: one step per iteration ran at ~77 GFLOP/s from L1,
// four at ~95 (the loop's own instructions compete with the FMAs for issue).
__attribute__((target("avx2,fma"), noinline)) void micro_kernel_6x16_avx2_c(int kc, const float* a, const float* b,
                                                                            float* c, int ldc, bool accumulate,
                                                                            const float* bias) {
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
  __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
  int k = 0;
  for (; k + 4 <= kc; k += 4) {
#pragma GCC unroll 4
    for (int u = 0; u < 4; ++u, a += 6, b += 16) {
      const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
      __m256 ai;
      HS_FMA_ROW(0) HS_FMA_ROW(1) HS_FMA_ROW(2) HS_FMA_ROW(3) HS_FMA_ROW(4) HS_FMA_ROW(5)
    }
  }
  for (; k < kc; ++k, a += 6, b += 16) {
    const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
    __m256 ai;
    HS_FMA_ROW(0) HS_FMA_ROW(1) HS_FMA_ROW(2) HS_FMA_ROW(3) HS_FMA_ROW(4) HS_FMA_ROW(5)
  }
  __m256 add0 = _mm256_setzero_ps(), add1 = add0;
  if (bias) add0 = _mm256_loadu_ps(bias), add1 = _mm256_loadu_ps(bias + 8);
#define HS_PUT_ROW(i)                                                     \
  if (accumulate) {                                                       \
    add0 = _mm256_loadu_ps(c + i * ldc);                                  \
    add1 = _mm256_loadu_ps(c + i * ldc + 8);                              \
  }                                                                       \
  c##i##0 = _mm256_add_ps(c##i##0, add0);                                 \
  c##i##1 = _mm256_add_ps(c##i##1, add1);                                 \
  _mm256_storeu_ps(c + i * ldc, c##i##0);                                 \
  _mm256_storeu_ps(c + i * ldc + 8, c##i##1);
  HS_PUT_ROW(0) HS_PUT_ROW(1) HS_PUT_ROW(2) HS_PUT_ROW(3) HS_PUT_ROW(4) HS_PUT_ROW(5)
#undef HS_PUT_ROW
}

// As a MicroKernel: the tile into t [6 * 16].
void micro_kernel_6x16_avx2(int kc, const float* a, const float* b, float* t) {
  micro_kernel_6x16_avx2_c(kc, a, b, t, 16, false, nullptr);
}
#undef HS_FMA_ROW

// HEADSCOPE_KERNELS=portable takes the path of a CPU without AVX2 + FMA
// (Eigen's products, scalar exp and GELU), so that the tests cover it on any
// machine (tests/CMakeLists.txt runs the core tests both ways).
bool cpu_has_avx2_fma() {
  static const bool yes = [] {
    const char* kernels = std::getenv("HEADSCOPE_KERNELS");
    if (kernels && std::strcmp(kernels, "portable") == 0) return false;
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  return yes;
}
#endif

// Row ti [n] of a micro-tile into row c of C: stored, plus bias [n] when not
// null, on the first KC slice (first); added to C on the later ones.
inline void put_tile_row(float* c, const float* ti, int n, bool first, const float* bias) {
  if (!first)
    for (int j = 0; j < n; ++j) c[j] += ti[j];
  else if (bias)
    for (int j = 0; j < n; ++j) c[j] = ti[j] + bias[j];
  else
    for (int j = 0; j < n; ++j) c[j] = ti[j];
}

// C [mc, nc] (+)= packed A block x packed B block; first: write (and add the bias), else accumulate.
template <int MR, int NR, MicroKernel kernel>
void macro_kernel(int mc, int nc, int kc, const float* pa, const float* pb, float* C, int ldc, const float* bias,
                  bool first) {
  alignas(32) float t[MR * NR];
  for (int j0 = 0; j0 < nc; j0 += NR) {
    const int n = std::min(NR, nc - j0);
    const float* b = pb + static_cast<std::ptrdiff_t>(j0 / NR) * NR * kc;
    for (int i0 = 0; i0 < mc; i0 += MR) {
      const int m = std::min(MR, mc - i0);
      kernel(kc, pa + static_cast<std::ptrdiff_t>(i0 / MR) * MR * kc, b, t);
      for (int i = 0; i < m; ++i) {
        float* c = C + static_cast<std::ptrdiff_t>(i0 + i) * ldc + j0;
        const float* ti = t + i * NR;
#ifdef __wasm_simd128__
        // Full rows of the tile without a bias: vector copies (a plain loop
        // becomes a memcpy call per row in wasm, ~10% of a short-K product).
        if (n == NR && NR % 4 == 0 && !(first && bias)) {
          for (int j = 0; j < NR; j += 4) {
            const v128_t v = wasm_v128_load(ti + j);
            wasm_v128_store(c + j, first ? v : wasm_f32x4_add(wasm_v128_load(c + j), v));
          }
          continue;
        }
#endif
        put_tile_row(c, ti, n, first, bias ? bias + j0 : nullptr);
      }
    }
  }
}

// C [M, N] = the bias on every row (or 0): a product with K = 0.
void fill_with_bias(int M, int N, float* C, int ldc, const float* bias) {
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) C[static_cast<std::ptrdiff_t>(i) * ldc + j] = bias ? bias[j] : 0.f;
}

// BT: B is given transposed, as B^T [N, K] row-major (ldb its row stride);
// only the packing differs (NR rows of B^T per micro-panel, like A's, and
// both operands packed row by row: gemm_nt's operands have long rows).
template <int MR, int NR, int MC, MicroKernel kernel, bool BT = false, class TA = float, class TB = float>
void gemm_packed(int M, int N, int K, const TA* A, int lda, const TB* B, int ldb, float* C, int ldc,
                 const float* bias) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) return fill_with_bias(M, N, C, ldc, bias);
  // Scratch reused across calls (the forward calls this ~50 times per run).
  thread_local std::vector<float> pa, pb;
  const int kc_max = std::min(K, KC);
  // (Grow only: a shrinking resize followed by a growing one would zero the
  // scratch on every call.)
  const std::size_t na = static_cast<std::size_t>((std::min(M, MC) + MR - 1) / MR * MR) * kc_max;
  const std::size_t nb = static_cast<std::size_t>((std::min(N, NC) + NR - 1) / NR * NR) * kc_max;
  if (pa.size() < na) pa.resize(na);
  if (pb.size() < nb) pb.resize(nb);
  for (int jc = 0; jc < N; jc += NC) {
    const int nc = std::min(NC, N - jc);
    for (int pc = 0; pc < K; pc += KC) {
      const int kc = std::min(KC, K - pc);
      if (BT)
        pack_rows<NR>(nc, kc, B + static_cast<std::ptrdiff_t>(jc) * ldb + pc, ldb, pb.data());
      else
        pack_b<NR>(kc, nc, B + static_cast<std::ptrdiff_t>(pc) * ldb + jc, ldb, pb.data());
      for (int ic = 0; ic < M; ic += MC) {
        const int mc = std::min(MC, M - ic);
        if (BT)
          pack_rows<MR>(mc, kc, A + static_cast<std::ptrdiff_t>(ic) * lda + pc, lda, pa.data());
        else
          pack_a<MR>(mc, kc, A + static_cast<std::ptrdiff_t>(ic) * lda + pc, lda, pa.data());
        macro_kernel<MR, NR, kernel>(mc, nc, kc, pa.data(), pb.data(), C + static_cast<std::ptrdiff_t>(ic) * ldc + jc,
                                     ldc, bias ? bias + jc : nullptr, pc == 0);
      }
    }
  }
}

#ifdef HS_KERNELS_AVX2
// The native AVX2 product, in OpenBLAS's order rather than the BLIS order of
// gemm_packed: a block of A's rows is packed once, whole (each KC slice of
// it stays in L2 while it is used; rows longer than K_WHOLE_AVX2 are packed
// slice by slice), then each 16-column micro-panel of B is packed just
// before the tiles that use it, into an L1-sized buffer, while the tiles
// prefetch the rows of the next micro-panel. B (the weights, read once per
// product and usually from memory) then streams in behind the arithmetic
// instead of in a separate pass: that pass took ~20 % of a GPT-2-small
// product. Column blocks of NC_AVX2 keep the C block being accumulated over
// the KC slices in L2. A is packed row by row (pack_rows: reading it down its
// columns was ~7 % of a forward). Full tiles go straight into C, with the
// bias; edge tiles through a scratch tile.
constexpr int MC_AVX2 = 132, NC_AVX2 = 768, K_WHOLE_AVX2 = 4 * KC;

template <class TA, class TB>
void gemm_avx2(int M, int N, int K, const TA* A, int lda, const TB* B, int ldb, float* C, int ldc,
               const float* bias) {
  constexpr int MR = 6, NR = 16;
  if (M <= 0 || N <= 0) return;
  if (K <= 0) return fill_with_bias(M, N, C, ldc, bias);
  thread_local std::vector<float> pa, pb;
  // Up to K_WHOLE_AVX2, a block of MC_AVX2 rows of A is packed whole, once:
  // its KC slices follow each other, slice pc at pc * (rows rounded up to MR).
  // Longer rows are packed a slice at a time, as each is used, so that the
  // scratch stays small (the unembedding's gradient has K = the vocabulary).
  const bool whole = K <= K_WHOLE_AVX2;
  const std::size_t na = static_cast<std::size_t>((std::min(M, MC_AVX2) + MR - 1) / MR * MR) * (whole ? K : std::min(K, KC));
  const std::size_t nb = static_cast<std::size_t>(NR) * std::min(K, KC);
  if (pa.size() < na) pa.resize(na);
  if (pb.size() < nb) pb.resize(nb);
  alignas(32) float t[MR * NR];
  const auto b_at = [&](int k, int j) { return B + static_cast<std::ptrdiff_t>(k) * ldb + j; };
  for (int ic = 0; ic < M; ic += MC_AVX2) {
    const int mc = std::min(MC_AVX2, M - ic), tiles = (mc + MR - 1) / MR;
    const auto pack_slice = [&](int pc, float* into) {
      pack_rows<MR>(mc, std::min(KC, K - pc), A + static_cast<std::ptrdiff_t>(ic) * lda + pc, lda, into);
    };
    if (whole)
      for (int pc = 0; pc < K; pc += KC) pack_slice(pc, pa.data() + static_cast<std::ptrdiff_t>(pc) * tiles * MR);
    for (int jc = 0; jc < N; jc += NC_AVX2) {
      const int jend = std::min(N, jc + NC_AVX2);
      for (int pc = 0; pc < K; pc += KC) {
        const int kc = std::min(KC, K - pc);
        const bool first = pc == 0;
        if (!whole) pack_slice(pc, pa.data());
        const float* pa_slice = whole ? pa.data() + static_cast<std::ptrdiff_t>(pc) * tiles * MR : pa.data();
        for (int j0 = jc; j0 < jend; j0 += NR) {
          const int n = std::min(NR, jend - j0);
          pack_b<NR>(kc, n, b_at(pc, j0), ldb, pb.data());
          // The micro-panel packed next: the next one in this slice, else the
          // first of the next KC slice, else the first of the next column
          // block, else the first of the product (for the next row block).
          const TB* next = nullptr;
          int next_k = 0, next_n = 0;
          if (j0 + NR < jend) next = b_at(pc, j0 + NR), next_k = kc, next_n = std::min(NR, jend - j0 - NR);
          else if (pc + KC < K) next = b_at(pc + KC, jc), next_k = std::min(KC, K - pc - KC), next_n = std::min(NR, jend - jc);
          else if (jend < N) next = b_at(0, jend), next_k = std::min(KC, K), next_n = std::min(NR, N - jend);
          else if (ic + MC_AVX2 < M) next = b_at(0, 0), next_k = std::min(KC, K), next_n = std::min(NR, N);
          for (int i0 = 0, tile = 0; i0 < mc; i0 += MR, ++tile) {
            // This tile's share of the next micro-panel's rows: its first and last column.
            for (int k = tile * next_k / tiles, k1 = (tile + 1) * next_k / tiles; k < k1; ++k) {
              const TB* r = next + static_cast<std::ptrdiff_t>(k) * ldb;
              __builtin_prefetch(r, 0, 3);
              __builtin_prefetch(r + next_n - 1, 0, 3);
            }
            const float* a = pa_slice + static_cast<std::ptrdiff_t>(tile) * MR * kc;
            float* c = C + static_cast<std::ptrdiff_t>(ic + i0) * ldc + j0;
            const int m = std::min(MR, mc - i0);
            if (m == MR && n == NR) {
              micro_kernel_6x16_avx2_c(kc, a, pb.data(), c, ldc, !first, first && bias ? bias + j0 : nullptr);
              continue;
            }
            micro_kernel_6x16_avx2_c(kc, a, pb.data(), t, NR, false, nullptr);
            for (int i = 0; i < m; ++i, c += ldc) put_tile_row(c, t + i * NR, n, first, first && bias ? bias + j0 : nullptr);
          }
        }
      }
    }
  }
}
#endif

}  // namespace

void gemm_blocked(int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc,
                  const float* bias) {
  gemm_packed<4, 8, 128, micro_kernel_4x8>(M, N, K, A, lda, B, ldb, C, ldc, bias);
}

const char* gemm_kernel_name() {
#ifdef __wasm_simd128__
  return "wasm simd128 4x8";
#else
#ifdef HS_KERNELS_AVX2
  if (cpu_has_avx2_fma()) return "avx2 6x16";
#endif
  return "eigen";
#endif
}

namespace {

// Natively without AVX2 (Eigen's products): a 16-bit operand [rows, cols]
// (row stride ld) widened whole into a scratch first.
template <class T>
const float* widened(const T* X, int rows, int cols, int& ld, std::vector<float>& scratch) {
  if constexpr (std::is_same_v<T, float>) {
    return X;
  } else {
    scratch.resize(static_cast<std::size_t>(rows) * cols);
    for (int r = 0; r < rows; ++r)
      for (int c = 0; c < cols; ++c) scratch[static_cast<std::size_t>(r) * cols + c] = widen(X[static_cast<std::ptrdiff_t>(r) * ld + c]);
    ld = cols;
    return scratch.data();
  }
}

// A product with at least this many multiply-adds is split over the thread
// pool (parallel.hpp): by output columns in blocks of 16, or by rows in
// blocks of 24 when it has more rows than columns; parts get at least
// kSplitMacs / 4 of the work. Blocks that are multiples of every tile's
// width and height keep the tiles where they were, and each output's sum
// runs over K in the same order, so the result has the same bits for any
// thread count. run(i0, m, j0, n) computes C's block [i0, i0 + m) x [j0, j0 + n).
constexpr double kSplitMacs = 1 << 20;

template <class Run>
void split_product(int M, int N, int K, const Run& run) {
  const double macs = double(M) * N * K;
  if (thread_count() == 1 || macs < kSplitMacs) return run(0, M, 0, N);
  const bool by_columns = N >= M;
  const int block = by_columns ? 16 : 24, extent = by_columns ? N : M;
  const std::ptrdiff_t blocks = (extent + block - 1) / block;
  const auto min_blocks = static_cast<std::ptrdiff_t>(std::ceil(kSplitMacs / 4 / (macs / double(blocks))));
  parallel_for(blocks, [&](std::ptrdiff_t b0, std::ptrdiff_t b1) {
    const int lo = static_cast<int>(b0) * block, hi = std::min(extent, static_cast<int>(b1) * block);
    if (by_columns) run(0, M, lo, hi - lo);
    else run(lo, hi - lo, 0, N);
  }, min_blocks);
}

template <class TA, class TB>
void gemm_any(int M, int N, int K, const TA* A, int lda, const TB* B, int ldb, float* C, int ldc, const float* bias) {
  const auto block = [&](auto product) {
    split_product(M, N, K, [&](int i0, int m, int j0, int n) {
      product(m, n, K, A + static_cast<std::ptrdiff_t>(i0) * lda, lda, B + j0, ldb,
              C + static_cast<std::ptrdiff_t>(i0) * ldc + j0, ldc, bias ? bias + j0 : nullptr);
    });
  };
#ifdef __wasm_simd128__
  block(gemm_packed<4, 8, 128, micro_kernel_4x8, false, TA, TB>);
#else
#ifdef HS_KERNELS_AVX2
  if (cpu_has_avx2_fma()) return block(gemm_avx2<TA, TB>);
#endif
  // (Eigen's own blocking depends on the shape: its products run unsplit.)
  if (M <= 0 || N <= 0) return;
  std::vector<float> wa, wb;
  const float* a_data = widened(A, M, K, lda, wa);
  const float* b_data = widened(B, K, N, ldb, wb);
  using Stride = Eigen::OuterStride<>;
  Eigen::Map<const MatrixRM, 0, Stride> a(a_data, M, K, Stride(lda));
  Eigen::Map<const MatrixRM, 0, Stride> b(b_data, K, N, Stride(ldb));
  Eigen::Map<MatrixRM, 0, Stride> c(C, M, N, Stride(ldc));
  c.noalias() = a * b;
  if (bias) c.rowwise() += Eigen::Map<const RowVectorF>(bias, N);
#endif
}

template <class TB>
void gemm_nt_any(int M, int N, int K, const float* A, int lda, const TB* B, int ldb, float* C, int ldc) {
  const auto block = [&](auto product) {
    split_product(M, N, K, [&](int i0, int m, int j0, int n) {
      product(m, n, K, A + static_cast<std::ptrdiff_t>(i0) * lda, lda, B + static_cast<std::ptrdiff_t>(j0) * ldb, ldb,
              C + static_cast<std::ptrdiff_t>(i0) * ldc + j0, ldc, nullptr);
    });
  };
#ifdef __wasm_simd128__
  block(gemm_packed<4, 8, 128, micro_kernel_4x8, true, float, TB>);
#else
#ifdef HS_KERNELS_AVX2
  if (cpu_has_avx2_fma()) return block(gemm_packed<6, 16, 120, micro_kernel_6x16_avx2, true, float, TB>);
#endif
  // (Eigen's own blocking depends on the shape: its products run unsplit.)
  if (M <= 0 || N <= 0) return;
  std::vector<float> wb;
  const float* b_data = widened(B, N, K, ldb, wb);
  using Stride = Eigen::OuterStride<>;
  Eigen::Map<const MatrixRM, 0, Stride> a(A, M, K, Stride(lda));
  Eigen::Map<const MatrixRM, 0, Stride> b(b_data, N, K, Stride(ldb));
  Eigen::Map<MatrixRM, 0, Stride> c(C, M, N, Stride(ldc));
  if (K <= 0) c.setZero();
  else c.noalias() = a * b.transpose();
#endif
}

}  // namespace

void gemm(int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc, const float* bias) {
  gemm_any(M, N, K, A, lda, B, ldb, C, ldc, bias);
}
void gemm(int M, int N, int K, const float* A, int lda, const bf16* B, int ldb, float* C, int ldc, const float* bias) {
  gemm_any(M, N, K, A, lda, B, ldb, C, ldc, bias);
}
void gemm(int M, int N, int K, const float* A, int lda, const f16* B, int ldb, float* C, int ldc, const float* bias) {
  gemm_any(M, N, K, A, lda, B, ldb, C, ldc, bias);
}
void gemm(int M, int N, int K, const bf16* A, int lda, const float* B, int ldb, float* C, int ldc, const float* bias) {
  gemm_any(M, N, K, A, lda, B, ldb, C, ldc, bias);
}
void gemm(int M, int N, int K, const f16* A, int lda, const float* B, int ldb, float* C, int ldc, const float* bias) {
  gemm_any(M, N, K, A, lda, B, ldb, C, ldc, bias);
}

void gemm_nt(int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc) {
  gemm_nt_any(M, N, K, A, lda, B, ldb, C, ldc);
}
void gemm_nt(int M, int N, int K, const float* A, int lda, const bf16* B, int ldb, float* C, int ldc) {
  gemm_nt_any(M, N, K, A, lda, B, ldb, C, ldc);
}
void gemm_nt(int M, int N, int K, const float* A, int lda, const f16* B, int ldb, float* C, int ldc) {
  gemm_nt_any(M, N, K, A, lda, B, ldb, C, ldc);
}

void gemm_nt_blocked(int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc) {
  gemm_packed<4, 8, 128, micro_kernel_4x8, true>(M, N, K, A, lda, B, ldb, C, ldc, nullptr);
}

void matmul(MatrixRM& C, const MatrixRM& A, const MatrixRM& B, const RowVectorF* bias) {
  C.resize(A.rows(), B.cols());
  const float* b = (bias && bias->size() == B.cols()) ? bias->data() : nullptr;
  gemm(static_cast<int>(A.rows()), static_cast<int>(B.cols()), static_cast<int>(A.cols()), A.data(),
       static_cast<int>(A.cols()), B.data(), static_cast<int>(B.cols()), C.data(), static_cast<int>(C.cols()), b);
}

// ---- exp and GELU -------------------------------------------------------

namespace {

constexpr float exp_lo = -87.f, exp_hi = 88.f;
constexpr float log2e = 1.44269504088896341f;
constexpr float ln2_hi = 0.693359375f, ln2_lo = -2.12194440e-4f;  // ln2 = hi + lo, hi exact in 9 bits
// Cephes expf: e^r = 1 + r + r^2 P(r) on |r| <= ln2/2.
constexpr float p0 = 1.9875691500e-4f, p1 = 1.3981999507e-3f, p2 = 8.3334519073e-3f, p3 = 4.1665795894e-2f,
                p4 = 1.6666665459e-1f, p5 = 5.0000001201e-1f;
constexpr float gelu_k2 = -2.f * kGeluTanhScale;

}  // namespace

float exp_fast(float x) {
  if (!(x == x)) return x;  // NaN: the integer conversion below would be undefined
  x = std::min(std::max(x, exp_lo), exp_hi);
  const float fn = x * log2e;
  const int n = static_cast<int>(fn + (fn >= 0.f ? 0.5f : -0.5f));  // round half away from zero
  const float nf = static_cast<float>(n);
  const float r = (x - nf * ln2_hi) - nf * ln2_lo;
  float p = p0;
  p = p * r + p1;
  p = p * r + p2;
  p = p * r + p3;
  p = p * r + p4;
  p = p * r + p5;
  const float e = p * r * r + r + 1.f;
  const std::uint32_t bits = static_cast<std::uint32_t>(n + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return e * scale;
}

float gelu_tanh(float x) { return x / (1.f + exp_fast(gelu_k2 * (x + kGeluTanhCubic * x * x * x))); }

#ifdef __wasm_simd128__
namespace {

inline v128_t exp_f32x4(v128_t x) {
  x = wasm_f32x4_min(wasm_f32x4_max(x, wasm_f32x4_splat(exp_lo)), wasm_f32x4_splat(exp_hi));
  const v128_t nf = wasm_f32x4_nearest(wasm_f32x4_mul(x, wasm_f32x4_splat(log2e)));
  const v128_t r = wasm_f32x4_sub(wasm_f32x4_sub(x, wasm_f32x4_mul(nf, wasm_f32x4_splat(ln2_hi))),
                                  wasm_f32x4_mul(nf, wasm_f32x4_splat(ln2_lo)));
  v128_t p = wasm_f32x4_splat(p0);
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(p1));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(p2));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(p3));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(p4));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(p5));
  const v128_t e = wasm_f32x4_add(wasm_f32x4_add(wasm_f32x4_mul(wasm_f32x4_mul(p, r), r), r), wasm_f32x4_splat(1.f));
  const v128_t n = wasm_i32x4_trunc_sat_f32x4(nf);  // nf is integral already
  const v128_t scale = wasm_i32x4_shl(wasm_i32x4_add(n, wasm_i32x4_splat(127)), 23);
  return wasm_f32x4_mul(e, scale);
}

}  // namespace
#endif

#ifdef HS_KERNELS_AVX2
namespace {

// exp_f32x4 natively, 8 lanes (AVX2 + FMA, chosen at run time). max(lo, x)
// and min(hi, x) return x when it is NaN, so NaN stays NaN.
__attribute__((target("avx2,fma"))) inline __m256 exp_f32x8(__m256 x) {
  x = _mm256_min_ps(_mm256_set1_ps(exp_hi), _mm256_max_ps(_mm256_set1_ps(exp_lo), x));
  const __m256 nf = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(log2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m256 r = _mm256_fnmadd_ps(nf, _mm256_set1_ps(ln2_lo), _mm256_fnmadd_ps(nf, _mm256_set1_ps(ln2_hi), x));
  __m256 p = _mm256_set1_ps(p0);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(p1));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(p2));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(p3));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(p4));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(p5));
  const __m256 e = _mm256_add_ps(_mm256_fmadd_ps(_mm256_mul_ps(p, r), r, r), _mm256_set1_ps(1.f));
  const __m256i n = _mm256_cvtps_epi32(nf);  // nf is integral already
  const __m256 scale = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n, _mm256_set1_epi32(127)), 23));
  return _mm256_mul_ps(e, scale);
}

__attribute__((target("avx2,fma"))) std::size_t exp_inplace_avx2(float* x, std::size_t n) {
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, exp_f32x8(_mm256_loadu_ps(x + i)));
  return i;
}

__attribute__((target("avx2,fma"))) std::size_t gelu_tanh_inplace_avx2(float* x, std::size_t n) {
  const __m256 k2 = _mm256_set1_ps(gelu_k2), c = _mm256_set1_ps(kGeluTanhCubic), one = _mm256_set1_ps(1.f);
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    const __m256 y = _mm256_mul_ps(k2, _mm256_fmadd_ps(c, _mm256_mul_ps(v, _mm256_mul_ps(v, v)), v));
    _mm256_storeu_ps(x + i, _mm256_div_ps(v, _mm256_add_ps(one, exp_f32x8(y))));
  }
  return i;
}

}  // namespace
#endif

void exp_inplace(float* x, std::size_t n) {
  std::size_t i = 0;
#ifdef __wasm_simd128__
  for (; i + 4 <= n; i += 4) wasm_v128_store(x + i, exp_f32x4(wasm_v128_load(x + i)));
#elif defined(HS_KERNELS_AVX2)
  if (cpu_has_avx2_fma()) i = exp_inplace_avx2(x, n);
#endif
  for (; i < n; ++i) x[i] = exp_fast(x[i]);
}

void gelu_tanh_inplace(float* x, std::size_t n) {
  std::size_t i = 0;
#ifdef HS_KERNELS_AVX2
  if (cpu_has_avx2_fma()) i = gelu_tanh_inplace_avx2(x, n);
#endif
#ifdef __wasm_simd128__
  const v128_t k2 = wasm_f32x4_splat(gelu_k2), c = wasm_f32x4_splat(kGeluTanhCubic), one = wasm_f32x4_splat(1.f);
  for (; i + 4 <= n; i += 4) {
    const v128_t v = wasm_v128_load(x + i);
    const v128_t y = wasm_f32x4_mul(k2, wasm_f32x4_add(v, wasm_f32x4_mul(c, wasm_f32x4_mul(v, wasm_f32x4_mul(v, v)))));
    wasm_v128_store(x + i, wasm_f32x4_div(v, wasm_f32x4_add(one, exp_f32x4(y))));
  }
#endif
  for (; i < n; ++i) x[i] = gelu_tanh(x[i]);
}

}  // namespace hs
