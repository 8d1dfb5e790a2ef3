// The quad kernels of the all-pairs product engine (pair_products.hpp):
// outer products and lane-wise inner products of "quads" (4 heads' same
// entry in one vector), and a head's factor written into one lane. See
// kernels.hpp for their contracts.
#include "kernels.hpp"

#include <algorithm>
#include <vector>

#include "kernels_simd.hpp"

namespace hs {

// c_ij (i < 4, j < 2: row i, columns 4j..4j+3) = sum over c < kc of
// a[c][i] * b[c][..], with b[c][0..3] at b0 and b[c][4..7] at b1, both
// advancing STEP floats per c; the kernels store the 8 accumulators.
#define HS_QUAD_OUTER_4X8(STEP)                                                                            \
  f32x4 c00 = splat4(0.f), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00;  \
  for (int c = 0; c < kc; ++c, a += 4, b0 += (STEP), b1 += (STEP)) {                                     \
    const f32x4 x = load4(b0), y = load4(b1);                                                            \
    f32x4 ai = splat4(a[0]);                                                                             \
    c00 = HS_MADD4(ai, x, c00);                                                                          \
    c01 = HS_MADD4(ai, y, c01);                                                                          \
    ai = splat4(a[1]);                                                                                   \
    c10 = HS_MADD4(ai, x, c10);                                                                          \
    c11 = HS_MADD4(ai, y, c11);                                                                          \
    ai = splat4(a[2]);                                                                                   \
    c20 = HS_MADD4(ai, x, c20);                                                                          \
    c21 = HS_MADD4(ai, y, c21);                                                                          \
    ai = splat4(a[3]);                                                                                   \
    c30 = HS_MADD4(ai, x, c30);                                                                          \
    c31 = HS_MADD4(ai, y, c31);                                                                          \
  }

HS_QUAD_KERNEL void quad_outer_4x8_add(int kc, const float* a, const float* b0, const float* b1, double w,
                                       double* acc, std::ptrdiff_t acc_row) {
  HS_QUAD_OUTER_4X8(4)
  const f64x2 w2 = {w, w};
  const f32x4 tile[8] = {c00, c01, c10, c11, c20, c21, c30, c31};
  for (int q = 0; q < 8; ++q) add_scaled4(acc + (q / 2) * acc_row + (q % 2) * 4, tile[q], w2);
}

namespace {
// factor_into_lane's 4 x 8 tiles: b[c] is the row c of a matrix [.., ld]
// (its first 8 columns at b0); row i of the tile goes to lane entries
// o[i * o_row + 4 c], as scalar stores straight from the accumulators.
HS_QUAD_KERNEL void quad_outer_4x8_into_lanes(int kc, const float* a, const float* b0, int ld, float* o,
                                              std::ptrdiff_t o_row) {
  const float* b1 = b0 + 4;
  HS_QUAD_OUTER_4X8(ld)
  const f32x4 acc[8] = {c00, c01, c10, c11, c20, c21, c30, c31};
  for (int q = 0; q < 8; ++q) {
    float* p = o + (q / 2) * o_row + (q % 2) * 16;
    p[0] = acc[q][0], p[4] = acc[q][1], p[8] = acc[q][2], p[12] = acc[q][3];
  }
}
}  // namespace
#undef HS_QUAD_OUTER_4X8

// c_ab += p[a][t] * q[b][t] over t, for the quad rows p[a] = p + a * ld and
// q[b] = q + b * ld (floats), a < 2, b < 4: one 2 x 4 tile, then the next
// two rows of p into the next two output rows, n times (one call per column
// of tiles: each call of the 64-step loop had ~10 % of overhead). (Measured
// in V8 on x86-64 with relaxed SIMD: 23 GMAC/s from L1, against 22 for
// quad_outer_4x8; 1 x 12 and 2 x 6 tiles, with more accumulators, ran at
// 10-20.)
#define HS_QUAD_DOT_2X4(LD)                                                                                 \
  for (int i = 0; i < n; ++i, p0 += 2 * (LD), out += 2 * out_row) {                                          \
    const float *p = p0, *q = q0;                                                                           \
    f32x4 c00 = splat4(0.f), c01 = c00, c02 = c00, c03 = c00, c10 = c00, c11 = c00, c12 = c00, c13 = c00; \
    for (int t = 0; t < k; ++t, p += 4, q += 4) {                                                           \
      const f32x4 x0 = load4(p), x1 = load4(p + (LD));                                                      \
      f32x4 y = load4(q);                                                                                   \
      c00 = HS_MADD4(x0, y, c00);                                                                           \
      c10 = HS_MADD4(x1, y, c10);                                                                           \
      y = load4(q + (LD));                                                                                  \
      c01 = HS_MADD4(x0, y, c01);                                                                           \
      c11 = HS_MADD4(x1, y, c11);                                                                           \
      y = load4(q + 2 * (LD));                                                                              \
      c02 = HS_MADD4(x0, y, c02);                                                                           \
      c12 = HS_MADD4(x1, y, c12);                                                                           \
      y = load4(q + 3 * (LD));                                                                              \
      c03 = HS_MADD4(x0, y, c03);                                                                           \
      c13 = HS_MADD4(x1, y, c13);                                                                           \
    }                                                                                                       \
    store4(out + 0, c00);                                                                                   \
    store4(out + 4, c01);                                                                                   \
    store4(out + 8, c02);                                                                                   \
    store4(out + 12, c03);                                                                                  \
    store4(out + out_row + 0, c10);                                                                         \
    store4(out + out_row + 4, c11);                                                                         \
    store4(out + out_row + 8, c12);                                                                         \
    store4(out + out_row + 12, c13);                                                                        \
  }

namespace {
// Head dimension 64 (GPT-2, Pythia, most small models): constant offsets.
HS_QUAD_KERNEL void quad_dot_2x4_k64(int k, int n, const float* p0, const float* q0, float* out,
                                     std::ptrdiff_t out_row) {
  HS_QUAD_DOT_2X4(256)
}
HS_QUAD_KERNEL void quad_dot_2x4_any(int k, int n, const float* p0, const float* q0, std::ptrdiff_t ld, float* out,
                                     std::ptrdiff_t out_row) {
  HS_QUAD_DOT_2X4(ld)
}
}  // namespace
#undef HS_QUAD_DOT_2X4

void quad_dot_2x4(int k, int n, const float* p, const float* q, std::ptrdiff_t ld, float* out, std::ptrdiff_t out_row) {
  if (k == 64 && ld == 256)
    quad_dot_2x4_k64(k, n, p, q, out, out_row);
  else
    quad_dot_2x4_any(k, n, p, q, ld, out, out_row);
}

HS_QUAD_KERNEL void quad_outer_4x4_add(int kc, const float* a, const float* b0, double w, double* acc,
                                       std::ptrdiff_t acc_row) {
  f32x4 c0 = splat4(0.f), c1 = c0, c2 = c0, c3 = c0;
  for (int c = 0; c < kc; ++c, a += 4, b0 += 4) {
    const f32x4 x = load4(b0);
    c0 = HS_MADD4(splat4(a[0]), x, c0);
    c1 = HS_MADD4(splat4(a[1]), x, c1);
    c2 = HS_MADD4(splat4(a[2]), x, c2);
    c3 = HS_MADD4(splat4(a[3]), x, c3);
  }
  const f64x2 w2 = {w, w};
  add_scaled4(acc, c0, w2);
  add_scaled4(acc + acc_row, c1, w2);
  add_scaled4(acc + 2 * acc_row, c2, w2);
  add_scaled4(acc + 3 * acc_row, c3, w2);
}

void factor_into_lane(int rows, int k, int k_out, const float* A, std::ptrdiff_t row_stride, std::ptrdiff_t col_stride,
                      const int* perm, const float* T, float* out) {
  // T padded to a multiple of 8 columns, zeros above the diagonal: the 8
  // columns from c0 are nonzero from row c0 down only. (Rows of T measured
  // twice as fast here as T repacked into quad_outer_4x8's two streams.)
  const int tld = (k + 7) / 8 * 8;
  std::vector<float> Tp(std::size_t(std::max(k, 1)) * tld + 8, 0.0f);
  for (int j = 0; j < k; ++j)
    for (int c = 0; c <= j; ++c) Tp[std::size_t(j) * tld + c] = T[std::size_t(j) * k + c];
  // The rows' permuted entries as quads (entry j of rows r0..r0+3), gathered
  // from the offsets of the permuted columns; 4 rows of a transposed view
  // (row stride 1) are one vector.
  std::vector<float> a(std::size_t(std::max(k, 1)) * 4, 0.0f);
  std::vector<std::ptrdiff_t> offset(std::max(k, 1));
  for (int j = 0; j < k; ++j) offset[j] = std::ptrdiff_t(perm[j]) * col_stride;
  const std::ptrdiff_t out_row = std::ptrdiff_t(k_out) * 4;
  for (int r0 = 0; r0 < rows; r0 += 4) {
    const int nr = std::min(4, rows - r0);
    const float* base = A + std::ptrdiff_t(r0) * row_stride;
    if (nr == 4 && row_stride == 1) {
      for (int j = 0; j < k; ++j) store4(a.data() + std::size_t(j) * 4, load4(base + offset[j]));
    } else if (nr == 4) {
      for (int j = 0; j < k; ++j) {
        const float* col = base + offset[j];
        float* aj = a.data() + std::size_t(j) * 4;
        aj[0] = col[0], aj[1] = col[row_stride], aj[2] = col[2 * row_stride], aj[3] = col[3 * row_stride];
      }
    } else {
      for (int j = 0; j < k; ++j) {
        float* aj = a.data() + std::size_t(j) * 4;
        for (int i = 0; i < 4; ++i) aj[i] = i < nr ? base[offset[j] + std::ptrdiff_t(i) * row_stride] : 0.0f;
      }
    }
    for (int c0 = 0; c0 < k; c0 += 8) {
      // Whole tiles straight into the lanes (columns k.. of a tile are
      // zeros, which is what they should be); the edges through a tile.
      float* o = out + r0 * out_row + c0 * 4;
      const float* a_c0 = a.data() + std::size_t(c0) * 4;
      const float* t_c0 = Tp.data() + std::size_t(c0) * tld + c0;
      if (nr == 4 && c0 + 8 <= k_out) {
        quad_outer_4x8_into_lanes(k - c0, a_c0, t_c0, tld, o, out_row);
        continue;
      }
      alignas(16) float t[4 * 32];  // laid out like lanes: row i at 32 i, column c at 4 c
      quad_outer_4x8_into_lanes(k - c0, a_c0, t_c0, tld, t, 32);
      for (int i = 0; i < nr; ++i)
        for (int c = 0; c < std::min(8, k_out - c0); ++c) o[i * out_row + c * 4] = t[i * 32 + c * 4];
    }
    for (int i = 0; i < nr; ++i) {
      float* o = out + (r0 + i) * out_row;
      for (int c = (k + 7) / 8 * 8; c < k_out; ++c) o[c * 4] = 0.0f;
    }
  }
}

}  // namespace hs
