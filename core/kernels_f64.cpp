// The double-precision kernels of the dense linear algebra
// (decompositions.hpp, factored_matrix.hpp): Grams A^T A, cross products
// A^T B, and the Householder tridiagonalization of a symmetric matrix, in
// f64x2. See kernels.hpp for their contracts.
#include "kernels.hpp"

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "kernels_simd.hpp"

namespace hs {

namespace {

// t[a * 4 + b] += sum_r A[r][a] B[r][b] over the rows: a 4 x 4 tile of A^T B
// (of A^T A with B = A shifted to the tile's columns), in 8 f64x2
// accumulators loaded from and stored back to t, so that the rows can go in
// chunks without a pass of scalar adds per tile and chunk (that had cost
// ~12 % of the Gram).
HS_QUAD_KERNEL void cross_tile_4x4(int rows, const double* A, int lda, const double* B, int ldb, double* t) {
  f64x2 c00 = load2(t), c01 = load2(t + 2), c10 = load2(t + 4), c11 = load2(t + 6), c20 = load2(t + 8),
        c21 = load2(t + 10), c30 = load2(t + 12), c31 = load2(t + 14);
  for (int r = 0; r < rows; ++r, A += lda, B += ldb) {
    const f64x2 x0 = load2(B), x1 = load2(B + 2);
    f64x2 s = {A[0], A[0]};
    c00 = HS_MADD2(s, x0, c00);
    c01 = HS_MADD2(s, x1, c01);
    s = f64x2{A[1], A[1]};
    c10 = HS_MADD2(s, x0, c10);
    c11 = HS_MADD2(s, x1, c11);
    s = f64x2{A[2], A[2]};
    c20 = HS_MADD2(s, x0, c20);
    c21 = HS_MADD2(s, x1, c21);
    s = f64x2{A[3], A[3]};
    c30 = HS_MADD2(s, x0, c30);
    c31 = HS_MADD2(s, x1, c31);
  }
  store2(t, c00);
  store2(t + 2, c01);
  store2(t + 4, c10);
  store2(t + 6, c11);
  store2(t + 8, c20);
  store2(t + 10, c21);
  store2(t + 12, c30);
  store2(t + 14, c31);
}

// The same for a tile of ni x nj (at most 4 x 4; at the edges of A^T B, by
// a scalar loop).
void cross_tile(int rows, const double* A, int lda, const double* B, int ldb, int ni, int nj, double* t) {
  if (ni == 4 && nj == 4) {
    cross_tile_4x4(rows, A, lda, B, ldb, t);
    return;
  }
  for (int a = 0; a < ni; ++a)
    for (int b = 0; b < nj; ++b) {
      double s = t[a * 4 + b];
      for (int r = 0; r < rows; ++r) s += A[std::ptrdiff_t(r) * lda + a] * B[std::ptrdiff_t(r) * ldb + b];
      t[a * 4 + b] = s;
    }
}

}  // namespace

namespace {

// G = A^T A through 4 x 4 tiles on and above the diagonal (those that reach
// it also compute a few entries below: the same sums, in the same order, so
// G comes out exactly symmetric); a scalar loop at the edges of k. The rows go
// in chunks of ~24 KB, each chunk through every tile, so that they are read
// from L1: a whole 768 x 64 factor (393 KB) read once per tile came from L2
// every time. Each tile's sum stays in the tile's own 16 doubles between
// chunks. Float rows are converted to double a chunk at a time (exact), so
// that both overloads give the same G for the same values.
template <class T>
void gram_f64_rows(int rows, int k, const T* A, std::ptrdiff_t lda, std::ptrdiff_t ldc, double* G) {
  constexpr int TS = 4;
  constexpr bool convert = !std::is_same<T, double>::value;
  const int chunk = std::max(1, 24 * 1024 / std::max<int>(1, k * static_cast<int>(sizeof(double))));
  const int tiles = (k + TS - 1) / TS;
  // The sums of the tiles on and above the diagonal, tile by tile
  // (t[a * TS + b] for tile (ti, tj) at ((ti * tiles + tj) * TS * TS)).
  std::vector<double> sum(std::size_t(tiles) * tiles * TS * TS, 0.0);
  std::vector<double> rows_d(convert ? std::size_t(chunk) * k : 0);
  for (int r0 = 0; r0 < rows; r0 += chunk) {
    const int nr = std::min(chunk, rows - r0);
    const double* Ar;
    int ld = static_cast<int>(lda);
    if constexpr (convert) {
      if (ldc == 1) {
        for (int r = 0; r < nr; ++r) {
          const T* src = A + std::ptrdiff_t(r0 + r) * lda;
          double* dst = rows_d.data() + std::size_t(r) * k;
          for (int c = 0; c < k; ++c) dst[c] = src[c];
        }
      } else {  // a transposed view: read down its columns
        for (int c = 0; c < k; ++c) {
          const T* src = A + std::ptrdiff_t(c) * ldc + std::ptrdiff_t(r0) * lda;
          for (int r = 0; r < nr; ++r) rows_d[std::size_t(r) * k + c] = src[std::ptrdiff_t(r) * lda];
        }
      }
      Ar = rows_d.data();
      ld = k;
    } else {
      Ar = A + std::ptrdiff_t(r0) * lda;
    }
    for (int i0 = 0; i0 < k; i0 += TS) {
      for (int j0 = i0; j0 < k; j0 += TS) {
        double* t = sum.data() + (std::size_t(i0 / TS) * tiles + j0 / TS) * TS * TS;
        cross_tile(nr, Ar + i0, ld, Ar + j0, ld, std::min(TS, k - i0), std::min(TS, k - j0), t);
      }
    }
  }
  for (int i0 = 0; i0 < k; i0 += TS) {
    for (int j0 = i0; j0 < k; j0 += TS) {
      const double* t = sum.data() + (std::size_t(i0 / TS) * tiles + j0 / TS) * TS * TS;
      for (int a = 0; a < std::min(TS, k - i0); ++a)
        for (int b = 0; b < std::min(TS, k - j0); ++b)
          G[std::ptrdiff_t(i0 + a) * k + j0 + b] = G[std::ptrdiff_t(j0 + b) * k + i0 + a] = t[a * TS + b];
    }
  }
}

}  // namespace

void cross_f64(int rows, int ka, int kb, const double* A, int lda, const double* B, int ldb, double* M) {
  constexpr int TS = 4;
  alignas(16) double t[TS * TS];
  for (int i0 = 0; i0 < ka; i0 += TS) {
    for (int j0 = 0; j0 < kb; j0 += TS) {
      const int ni = std::min(TS, ka - i0), nj = std::min(TS, kb - j0);
      std::fill(t, t + TS * TS, 0.0);
      cross_tile(rows, A + i0, lda, B + j0, ldb, ni, nj, t);
      for (int a = 0; a < ni; ++a)
        for (int b = 0; b < nj; ++b) M[std::ptrdiff_t(i0 + a) * kb + j0 + b] = t[a * TS + b];
    }
  }
}

void tridiagonalize_f64(int n, double* A, double* d, double* e) {
  // LAPACK's dsytd2 (lower): Householder reflections H = I - tau v v^T,
  // v[0] = 1, applied from both sides to the trailing block A22 through its
  // lower triangle, row by row (rows are contiguous): p = tau A22 v (each
  // row's part left of the diagonal gives a dot product for p[r] and an
  // axpy into p[..r)), w = p - (tau / 2)(p.v) v, A22 -= v w^T + w v^T.
  std::vector<double> v(std::max(n, 1)), p(std::max(n, 1)), w(std::max(n, 1));
  auto row = [&](int r) { return A + std::ptrdiff_t(r) * n; };
  for (int i = 0; i + 2 < n; ++i) {
    const int m = n - i - 1, c0 = i + 1;  // the trailing block [c0, n)^2
    const double alpha = row(c0)[i];
    double xnorm2 = 0;
    for (int r = c0 + 1; r < n; ++r) xnorm2 += row(r)[i] * row(r)[i];
    d[i] = row(i)[i];
    if (xnorm2 == 0) {  // already tridiagonal in this column
      e[i] = alpha;
      continue;
    }
    const double beta = -std::copysign(std::sqrt(alpha * alpha + xnorm2), alpha);
    const double tau = (beta - alpha) / beta, scale = 1.0 / (alpha - beta);
    e[i] = beta;
    v[0] = 1.0;
    for (int r = 1; r < m; ++r) v[r] = row(c0 + r)[i] * scale;
    std::fill(p.begin(), p.begin() + m, 0.0);
    for (int r = 0; r < m; ++r) {  // row r of A22 left of the diagonal: a[0..r)
      const double* a = row(c0 + r) + c0;
      const f64x2 vr = {v[r], v[r]};
      f64x2 dot = {0, 0};
      int t = 0;
      for (; t + 2 <= r; t += 2) {
        const f64x2 at = load2(a + t);
        dot = HS_MADD2(at, load2(v.data() + t), dot);
        store2(p.data() + t, HS_MADD2(vr, at, load2(p.data() + t)));
      }
      double sum = dot[0] + dot[1];
      for (; t < r; ++t) {
        sum += a[t] * v[t];
        p[t] += v[r] * a[t];
      }
      p[r] += sum + a[r] * v[r];
    }
    double pv = 0;
    for (int t = 0; t < m; ++t) {
      p[t] *= tau;
      pv += p[t] * v[t];
    }
    const double h = 0.5 * tau * pv;
    for (int t = 0; t < m; ++t) w[t] = p[t] - h * v[t];
    for (int r = 0; r < m; ++r) {  // A22[r, ..r] -= v[r] w + w[r] v
      double* a = row(c0 + r) + c0;
      const f64x2 fv = {-v[r], -v[r]}, fw = {-w[r], -w[r]};
      int t = 0;
      for (; t + 2 <= r + 1; t += 2)
        store2(a + t, HS_MADD2(fw, load2(v.data() + t), HS_MADD2(fv, load2(w.data() + t), load2(a + t))));
      for (; t <= r; ++t) a[t] -= v[r] * w[t] + w[r] * v[t];
    }
  }
  if (n >= 2) {
    d[n - 2] = row(n - 2)[n - 2];
    e[n - 2] = row(n - 1)[n - 2];
  }
  if (n >= 1) d[n - 1] = row(n - 1)[n - 1];
}

void gram_f64(int rows, int k, const double* A, int lda, double* G) { gram_f64_rows(rows, k, A, lda, 1, G); }
void gram_f64(int rows, int k, const float* A, int lda, double* G) { gram_f64_rows(rows, k, A, lda, 1, G); }
void gram_f64(int rows, int k, const float* A, std::ptrdiff_t row_stride, std::ptrdiff_t col_stride, double* G) {
  gram_f64_rows(rows, k, A, row_stride, col_stride, G);
}

}  // namespace hs
