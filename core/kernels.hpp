// The hot kernels: the loops whose speed depends on SIMD, in one library of
// their own so that the wasm build can link it in two variants (SIMD128, and
// relaxed SIMD's fused multiply-add; core/CMakeLists.txt). By file:
//   kernels.cpp       the forward pass's: the matrix products (GEMM) and the
//                     transcendental functions applied element-wise to them;
//   kernels_quad.cpp  the all-pairs product engine's (pair_products.hpp):
//                     products of "quads", 4 heads' entries in one vector;
//   kernels_f64.cpp   the dense linear algebra's (decompositions.hpp): Grams,
//                     cross products and the Householder tridiagonalization,
//                     in double.
//
// Eigen has no WebAssembly SIMD backend (it only autovectorizes there, at
// about 13 GFLOP/s on GPT-2 shapes), so in wasm the products run a BLIS-style
// kernel written with <wasm_simd128.h>: A and B are packed into micro-panels
// (4 rows of A, 8 columns of B, KC deep) so the 4x8 register tile (8 f32x4
// accumulators, within V8's ~15 usable vector registers) streams contiguous
// memory. Natively the same packing feeds a 6x16 AVX2 FMA tile when the CPU
// has AVX2 (checked at run time: the build sets no -march), else Eigen. The
// 4x8 packed path also compiles natively with a scalar micro-kernel, so its
// packing and edge logic is covered by the native tests (gemm_blocked).
//
// exp and GELU: libm's expf/tanhf cost ~150 ms per GPT-2-small forward in
// wasm. exp_fast is a Cephes-style range reduction (x = n ln2 + r) with a
// degree-7 polynomial for e^r, relative error < 2e-7 over its range;
// gelu_tanh uses 0.5 (1 + tanh y) = 1 / (1 + e^{-2y}), so it needs one exp
// and one division. Both have SIMD array forms: wasm SIMD128, and natively
// 8 lanes of AVX2 + FMA when the CPU has them.
#pragma once

#include <cstddef>

#include "half.hpp"
#include "linalg.hpp"

namespace hs {

// ---------------------------------------------------------------------------
// Matrix products (kernels.cpp)

// C [M, N] = A [M, K] B [K, N] (+ bias [N] on every row, when not null).
// Row-major with leading dimensions lda, ldb, ldc; C must not alias A or B.
// One operand may be 16-bit: it is widened to float32 as it is packed (exact;
// natively without AVX2 it is widened whole first).
void gemm(int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc,
          const float* bias = nullptr);
void gemm(int M, int N, int K, const float* A, int lda, const bf16* B, int ldb, float* C, int ldc,
          const float* bias = nullptr);
void gemm(int M, int N, int K, const float* A, int lda, const f16* B, int ldb, float* C, int ldc,
          const float* bias = nullptr);
void gemm(int M, int N, int K, const bf16* A, int lda, const float* B, int ldb, float* C, int ldc,
          const float* bias = nullptr);
void gemm(int M, int N, int K, const f16* A, int lda, const float* B, int ldb, float* C, int ldc,
          const float* bias = nullptr);

// Which product gemm runs here: "wasm simd128 4x8", "avx2 6x16" or "eigen"
// (natively without AVX2 + FMA). For test and benchmark logs.
const char* gemm_kernel_name();

// The packed (BLIS-style) path, whatever the platform: the wasm SIMD kernel
// in wasm, a scalar micro-kernel natively (for tests of packing and edges).
void gemm_blocked(int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc,
                  const float* bias = nullptr);

// C [M, N] = A [M, K] B^T for B [N, K] (row-major, row stride ldb): the
// same packed kernels, B packed from its rows. For products of two "wide"
// matrices (long K, e.g. inner products of many long vectors), where
// transposing B for gemm would cost a pass over it.
void gemm_nt(int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc);
void gemm_nt(int M, int N, int K, const float* A, int lda, const bf16* B, int ldb, float* C, int ldc);
void gemm_nt(int M, int N, int K, const float* A, int lda, const f16* B, int ldb, float* C, int ldc);
// Its packed path whatever the platform (tests).
void gemm_nt_blocked(int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc);

// C [M, N] = A [M, K] B [K, N] (+ bias [N]); C is resized.
void matmul(MatrixRM& C, const MatrixRM& A, const MatrixRM& B, const RowVectorF* bias = nullptr);

// ---------------------------------------------------------------------------
// Quads: the all-pairs product engine (kernels_quad.cpp)

// "Quads": float data [n][4] whose 4 lanes belong to 4 different matrices
// (or rows), so that one SIMD vector holds the same entry of all four. The
// weight-geometry projector products keep their operands in this layout and
// need no packing; the kernels are plain f32x4 arithmetic (vector extensions:
// wasm SIMD128 under Emscripten, SSE natively).
//
// Outer-product tile over quad streams, added to double sums:
//   acc[i * acc_row + j] += w * sum_c a[c][i] * b[c][j]
// for i in 0..3, j in 0..7, with b[c][0..3] = b0[c] and b[c][4..7] = b1[c]
// (the sum over c in float); quad_outer_4x4_add is the same with j in 0..3.
// (The pair products: 4 left slots against 8 right slots, kc coordinates at
// a time, into the pairs' double sums.)
void quad_outer_4x8_add(int kc, const float* a, const float* b0, const float* b1, double w, double* acc,
                        std::ptrdiff_t acc_row);
void quad_outer_4x4_add(int kc, const float* a, const float* b0, double w, double* acc, std::ptrdiff_t acc_row);

// Lane-wise inner products of quad rows: out[a * out_row + 4 b + l] =
// sum_t p[a * ld + 4 t + l] * q[b * ld + 4 t + l] for a < 2 n, b < 4, t < k
// (n tiles of 2 x 4 down the rows of p). With the lanes holding 4 heads'
// factors, a column of 2 x 4 tiles of the 4 heads' projectors F F^T, already
// in quads.
void quad_dot_2x4(int k, int n, const float* p, const float* q, std::ptrdiff_t ld, float* out,
                  std::ptrdiff_t out_row);

// One lane of quads (out points at lane l of quad 0; entry (r, c) is
// out[4 (r k_out + c)]): the [rows, k_out] factor
//   F[r][c] = sum_{j >= c} A(r, perm[j]) T[j][c]  for c < k, 0 for k <= c < k_out,
// with A(r, i) = A[r row_stride + i col_stride] (a block read in place, or
// transposed) and T [k, k] row-major lower triangular (entries above the
// diagonal are not read). A square-root factor from a pivoted Cholesky
// (psd_sqrt_factor) is a permuted triangle, so the product costs about half a
// GEMM's multiply-adds, and it is written straight into the projector panels.
void factor_into_lane(int rows, int k, int k_out, const float* A, std::ptrdiff_t row_stride, std::ptrdiff_t col_stride,
                      const int* perm, const float* T, float* out);

// ---------------------------------------------------------------------------
// Doubles: the dense linear algebra (kernels_f64.cpp)

// G [k, k] = A^T A for A [rows, k] (row stride lda), in double: the Grams
// of the per-head factors behind the singular values. Row-major G, both
// triangles written. (Eigen's double GEMM runs scalar in wasm.) Float A is
// converted exactly: both give the same G for the same values.
void gram_f64(int rows, int k, const double* A, int lda, double* G);
void gram_f64(int rows, int k, const float* A, int lda, double* G);
// The same for A(r, c) = A[r * row_stride + c * col_stride]: a block read in
// place, or transposed (row_stride 1).
void gram_f64(int rows, int k, const float* A, std::ptrdiff_t row_stride, std::ptrdiff_t col_stride, double* G);

// M [ka, kb] = A^T B for A [rows, ka], B [rows, kb] (row strides lda, ldb),
// in double, row-major M; the rows are read once per 4 x 4 tile of M (for
// few rows: the square-root factors' products behind the singular values).
void cross_f64(int rows, int ka, int kb, const double* A, int lda, const double* B, int ldb, double* M);

// Householder reduction of the symmetric A [n, n] (row-major; the lower
// triangle is read, and destroyed) to tridiagonal form with the same
// eigenvalues: diagonal d [n], off-diagonal e [n - 1]. The reflections are
// not kept (for eigenvalues only); the trailing updates run in f64x2
// (Eigen's run scalar in wasm).
void tridiagonalize_f64(int n, double* A, double* d, double* e);

// ---------------------------------------------------------------------------
// exp and GELU (kernels.cpp)

// e^x for float x, relative error < 3e-7 (tested) for x in [-87, 88]; x is
// clamped to that range first, so e^-inf is 1.6e-38 (not 0) and there is no
// +inf; NaN stays NaN.
float exp_fast(float x);

// x[i] = e^{x[i]} in place.
void exp_inplace(float* x, std::size_t n);

// GELU, tanh approximation (GPT-2's gelu_new), with u = kGeluTanhScale (x + kGeluTanhCubic x^3):
//   0.5 x (1 + tanh(u)) = x / (1 + e^{-2u}).
// Its constants, for the derivative (layers.cpp) as well:
inline constexpr float kGeluTanhScale = 0.7978845608028654f;  // sqrt(2/pi)
inline constexpr float kGeluTanhCubic = 0.044715f;
float gelu_tanh(float x);

// x[i] = gelu_tanh(x[i]) in place.
void gelu_tanh_inplace(float* x, std::size_t n);

}  // namespace hs
