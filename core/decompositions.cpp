// Dense linear algebra in double; see decompositions.hpp.
#include "decompositions.hpp"

#include "kernels.hpp"

// GCC 12 reports -Wmaybe-uninitialized inside Eigen 3.4's triangular and
// selfadjoint matrix-vector kernels (a known false positive); keep the
// build's warnings meaningful.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>

namespace hs {

// ---------------------------------------------------------------------------
// Grams and square-root factors

namespace {

// G = A^T A for a whole row-major A, double or float (gram_f64's overloads).
template <class Mat>
MatrixRMd gram_of_matrix(const Mat& A) {
  MatrixRMd G(A.cols(), A.cols());
  gram_f64(static_cast<int>(A.rows()), static_cast<int>(A.cols()), A.data(), static_cast<int>(A.cols()), G.data());
  return G;
}

}  // namespace

MatrixRMd gram_cols(const MatrixRMd& A) { return gram_of_matrix(A); }
MatrixRMd gram_cols(const MatrixRM& A) { return gram_of_matrix(A); }

MatrixRMd gram_cols(const BlockView& A) {
  MatrixRMd G(A.cols, A.cols);
  gram_f64(A.rows, A.cols, A.data, A.row_stride, A.col_stride, G.data());
  return G;
}

MatrixRMd gram_rows(const MatrixRMd& B) { return gram_cols(MatrixRMd(B.transpose())); }

namespace {

// Pivoted Cholesky of a symmetric PSD G [k, k] (LAPACK's dpstrf, unblocked):
// G[p, p] ~= L L^T with L [k, r] lower trapezoidal, stopping once the
// largest remaining diagonal is <= tol. Returns r; L and p are outputs. The
// column updates are plain loops over contiguous columns, which the
// compilers vectorize (Eigen's matrix-vector product runs scalar in wasm).
int pivoted_cholesky(const MatrixRMd& G, double tol, MatrixCd& L, std::vector<int>& p) {
  const int k = static_cast<int>(G.rows());
  MatrixCd a = G;  // lower columns [0, j) become L as they are computed
  Eigen::VectorXd diag = G.diagonal();
  p.resize(k);
  std::iota(p.begin(), p.end(), 0);
  int r = 0;
  for (int j = 0; j < k; ++j, ++r) {
    Eigen::Index m;
    const double dmax = diag.tail(k - j).maxCoeff(&m);
    m += j;
    if (!(dmax > tol)) break;
    if (m != j) {
      a.row(j).swap(a.row(m));
      a.col(j).swap(a.col(m));
      std::swap(diag[j], diag[m]);
      std::swap(p[j], p[m]);
    }
    const double ljj = std::sqrt(dmax);
    a(j, j) = ljj;
    const int rest = k - j - 1;
    if (rest == 0) continue;
    double* col = a.data() + std::ptrdiff_t(j) * k + j + 1;  // a(j+1.., j)
    for (int c = 0; c < j; ++c) {
      const double f = a(j, c);
      const double* lc = a.data() + std::ptrdiff_t(c) * k + j + 1;
      for (int i = 0; i < rest; ++i) col[i] -= f * lc[i];
    }
    const double inv = 1.0 / ljj;
    for (int i = 0; i < rest; ++i) {
      col[i] *= inv;
      diag[j + 1 + i] -= col[i] * col[i];
    }
  }
  L = a.leftCols(r).triangularView<Eigen::Lower>();
  return r;
}

}  // namespace

MatrixRMd psd_sqrt_factor(const MatrixRMd& G, std::vector<int>* perm) {
  const Eigen::Index k = G.rows();
  if (k == 0) return MatrixRMd(0, 0);
  const double tol = double(k) * std::numeric_limits<double>::epsilon() * std::max(0.0, G.diagonal().maxCoeff());
  MatrixCd L;
  std::vector<int> p;
  const int r = pivoted_cholesky(G, tol, L, p);
  MatrixRMd S = MatrixRMd::Zero(k, k);
  for (int j = 0; j < k; ++j)
    for (int c = 0; c < r && c <= j; ++c) S(p[j], c) = L(j, c);
  if (perm) *perm = std::move(p);
  return S;
}

// ---------------------------------------------------------------------------
// Symmetric eigenvalues

Eigen::VectorXd sqrt_eigenvalues_desc(const MatrixRMd& C) {
  const Eigen::Index k = C.rows();
  const double scale = k > 0 ? C.cwiseAbs().maxCoeff() : 0.0;
  if (!(scale > 0)) return Eigen::VectorXd::Zero(k);
  MatrixRMd A = C / scale;
  std::vector<double> d(k), e(std::max<Eigen::Index>(k - 1, 0));
  tridiagonalize_f64(static_cast<int>(k), A.data(), d.data(), e.data());
  Eigen::VectorXd s(k);
  if (tridiagonal_eigenvalues(d, e)) {
    for (Eigen::Index i = 0; i < k; ++i) s[i] = d[static_cast<std::size_t>(i)];  // ascending
  } else {
    s = Eigen::SelfAdjointEigenSolver<MatrixCd>(MatrixCd(C / scale), Eigen::EigenvaluesOnly).eigenvalues();
  }
  return (s * scale).cwiseMax(0.0).cwiseSqrt().reverse();
}

namespace {

// Eigenvalues of [[a, b], [b, c]], rt1 the one of larger absolute value
// (LAPACK's dlae2).
void eig2(double a, double b, double c, double& rt1, double& rt2) {
  const double sm = a + c, df = a - c, adf = std::fabs(df), tb = b + b, ab = std::fabs(tb);
  const double acmx = std::fabs(a) > std::fabs(c) ? a : c, acmn = std::fabs(a) > std::fabs(c) ? c : a;
  double rt;
  if (adf > ab) rt = adf * std::sqrt(1.0 + (ab / adf) * (ab / adf));
  else if (adf < ab) rt = ab * std::sqrt(1.0 + (adf / ab) * (adf / ab));
  else rt = ab * std::sqrt(2.0);
  if (sm < 0) {
    rt1 = 0.5 * (sm - rt);
    rt2 = (acmx / rt1) * acmn - (b / rt1) * b;
  } else if (sm > 0) {
    rt1 = 0.5 * (sm + rt);
    rt2 = (acmx / rt1) * acmn - (b / rt1) * b;
  } else {
    rt1 = 0.5 * rt;
    rt2 = -0.5 * rt;
  }
}

}  // namespace

bool tridiagonal_eigenvalues(std::vector<double>& dv, std::vector<double>& ev) {
  const int n = static_cast<int>(dv.size());
  if (n <= 1) return true;
  // 1-based, as in LAPACK: d(1..n), e(1..n-1) (e(i) couples d(i), d(i+1)).
  auto d = [&dv](int i) -> double& { return dv[static_cast<std::size_t>(i - 1)]; };
  auto e = [&ev](int i) -> double& { return ev[static_cast<std::size_t>(i - 1)]; };
  const double eps = std::numeric_limits<double>::epsilon() / 2, eps2 = eps * eps;
  const double safmin = std::numeric_limits<double>::min(), safmax = 1.0 / safmin;
  const double ssfmax = std::sqrt(safmax) / 3.0, ssfmin = std::sqrt(safmin) / eps2;
  const int nmaxit = n * 30;
  int jtot = 0;
  int l1 = 1;
  const int nm1 = n - 1;
  while (l1 <= n) {
    if (l1 > 1) e(l1 - 1) = 0.0;
    int m = l1;
    for (; m <= nm1; ++m) {
      const double tst = std::fabs(e(m));
      if (tst == 0.0) break;
      if (tst <= std::sqrt(std::fabs(d(m))) * std::sqrt(std::fabs(d(m + 1))) * eps) {
        e(m) = 0.0;
        break;
      }
    }
    if (m > nm1) m = n;
    int l = l1;
    const int lsv = l;
    int lend = m;
    const int lendsv = lend;
    l1 = m + 1;
    if (lend == l) continue;
    // Scale the block [l, lend] if its norm is near over- or underflow.
    double anorm = 0;
    for (int i = l; i <= lend; ++i) anorm = std::max(anorm, std::fabs(d(i)));
    for (int i = l; i < lend; ++i) anorm = std::max(anorm, std::fabs(e(i)));
    double scale = 1.0;
    if (anorm > ssfmax) scale = ssfmax / anorm;
    else if (anorm < ssfmin && anorm > 0) scale = ssfmin / anorm;
    if (scale != 1.0) {
      for (int i = l; i <= lend; ++i) d(i) *= scale;
      for (int i = l; i < lend; ++i) e(i) *= scale;
    }
    for (int i = l; i < lend; ++i) e(i) *= e(i);
    // QL or QR, whichever end of the block has the smaller diagonal.
    if (std::fabs(d(lend)) < std::fabs(d(l))) {
      lend = lsv;
      l = lendsv;
    }
    if (lend >= l) {  // QL
      while (true) {
        int mm = l;
        if (l != lend) {
          for (mm = l; mm <= lend - 1; ++mm)
            if (std::fabs(e(mm)) <= eps2 * std::fabs(d(mm) * d(mm + 1))) break;
        }
        if (l == lend || mm > lend - 1) mm = lend;
        if (mm < lend) e(mm) = 0.0;
        double p = d(l);
        if (mm == l) {  // d(l) is an eigenvalue
          if (++l <= lend) continue;
          break;
        }
        if (mm == l + 1) {  // a 2 x 2 block
          double rt1, rt2;
          eig2(d(l), std::sqrt(e(l)), d(l + 1), rt1, rt2);
          d(l) = rt1;
          d(l + 1) = rt2;
          e(l) = 0.0;
          l += 2;
          if (l <= lend) continue;
          break;
        }
        if (jtot == nmaxit) break;
        ++jtot;
        const double rte = std::sqrt(e(l));
        double sigma = (d(l + 1) - p) / (rte * 2.0);
        const double r0 = std::hypot(sigma, 1.0);
        sigma = p - rte / (sigma + std::copysign(r0, sigma));
        double c = 1.0, s = 0.0, gamma = d(mm) - sigma;
        p = gamma * gamma;
        for (int i = mm - 1; i >= l; --i) {
          const double bb = e(i), r = p + bb;
          if (i != mm - 1) e(i + 1) = s * r;
          const double oldc = c;
          c = p / r;
          s = bb / r;
          const double oldgam = gamma, alpha = d(i);
          gamma = c * (alpha - sigma) - s * oldgam;
          d(i + 1) = oldgam + (alpha - gamma);
          p = c != 0.0 ? gamma * gamma / c : oldc * bb;
        }
        e(l) = s * p;
        d(l) = sigma + gamma;
      }
    } else {  // QR
      while (true) {
        int mm = l;
        if (l != lend) {
          for (mm = l; mm >= lend + 1; --mm)
            if (std::fabs(e(mm - 1)) <= eps2 * std::fabs(d(mm) * d(mm - 1))) break;
        }
        if (l == lend || mm < lend + 1) mm = lend;
        if (mm > lend) e(mm - 1) = 0.0;
        double p = d(l);
        if (mm == l) {  // d(l) is an eigenvalue
          if (--l >= lend) continue;
          break;
        }
        if (mm == l - 1) {
          double rt1, rt2;
          eig2(d(l), std::sqrt(e(l - 1)), d(l - 1), rt1, rt2);
          d(l) = rt1;
          d(l - 1) = rt2;
          e(l - 1) = 0.0;
          l -= 2;
          if (l >= lend) continue;
          break;
        }
        if (jtot == nmaxit) break;
        ++jtot;
        const double rte = std::sqrt(e(l - 1));
        double sigma = (d(l - 1) - p) / (rte * 2.0);
        const double r0 = std::hypot(sigma, 1.0);
        sigma = p - rte / (sigma + std::copysign(r0, sigma));
        double c = 1.0, s = 0.0, gamma = d(mm) - sigma;
        p = gamma * gamma;
        for (int i = mm; i <= l - 1; ++i) {
          const double bb = e(i), r = p + bb;
          if (i != mm) e(i - 1) = s * r;
          const double oldc = c;
          c = p / r;
          s = bb / r;
          const double oldgam = gamma, alpha = d(i + 1);
          gamma = c * (alpha - sigma) - s * oldgam;
          d(i) = oldgam + (alpha - gamma);
          p = c != 0.0 ? gamma * gamma / c : oldc * bb;
        }
        e(l - 1) = s * p;
        d(l) = sigma + gamma;
      }
    }
    if (scale != 1.0)
      for (int i = lsv; i <= lendsv; ++i) d(i) /= scale;
    if (jtot == nmaxit) return false;
  }
  std::sort(dv.begin(), dv.end());
  return true;
}

// ---------------------------------------------------------------------------
// QR, orthonormal bases and principal angles

void thin_qr(const MatrixCd& A, MatrixCd& Q, MatrixCd& R) {
  const Eigen::Index l = A.rows(), m = A.cols(), n = std::min(l, m);
  Eigen::HouseholderQR<MatrixCd> qr(A);
  Q = qr.householderQ() * MatrixCd::Identity(l, n);
  R = qr.matrixQR().topRows(n).triangularView<Eigen::Upper>();
}

double default_rank_rcond(Eigen::Index rows, Eigen::Index cols) {
  return static_cast<double>(std::numeric_limits<float>::epsilon()) * static_cast<double>(std::max(rows, cols));
}

MatrixRMd orthonormal_basis(const Eigen::Ref<const MatrixRMd>& A, double rcond) {
  const Eigen::Index d = A.rows(), k = A.cols();
  if (rcond < 0) rcond = default_rank_rcond(d, k);
  if (d == 0 || k == 0) return MatrixRMd(d, 0);
  // Householder QR then an SVD of the small R: as accurate as an SVD of A
  // (backward stable), at the cost of a QR.
  MatrixCd Q, R;
  thin_qr(MatrixCd(A), Q, R);
  Eigen::BDCSVD<MatrixCd> svd(R, Eigen::ComputeThinU);
  const Eigen::VectorXd& s = svd.singularValues();
  if (s.size() == 0 || !(s[0] > 0)) return MatrixRMd(d, 0);
  const double tol = s[0] * rcond;
  Eigen::Index r = 0;
  while (r < s.size() && s[r] > tol) ++r;
  return MatrixRMd(Q * svd.matrixU().leftCols(r));
}

namespace {

double clamp_unit(double x) { return std::min(1.0, std::max(-1.0, x)); }

}  // namespace

Result<PrincipalAngles> principal_angles(const Eigen::Ref<const MatrixRMd>& A, const Eigen::Ref<const MatrixRMd>& B,
                                         double rcond) {
  if (A.rows() != B.rows()) {
    return make_error("principal_angles: A has " + std::to_string(A.rows()) + " rows but B has " +
                      std::to_string(B.rows()));
  }
  if (!A.allFinite() || !B.allFinite()) return make_error("principal_angles: input contains NaN or Inf");
  const MatrixRMd QA = orthonormal_basis(A, rcond), QB = orthonormal_basis(B, rcond);
  PrincipalAngles out;
  out.rank_a = static_cast<int>(QA.cols());
  out.rank_b = static_cast<int>(QB.cols());
  const int k = std::min(out.rank_a, out.rank_b);
  if (k == 0) return out;
  const MatrixCd C = QA.transpose() * QB;  // [ra, rb]
  out.sum_cos2 = C.squaredNorm();
  const Eigen::VectorXd cos = Eigen::BDCSVD<MatrixCd>(C).singularValues();  // descending, k values
  // The sines of the same angles: the component of the smaller basis outside
  // the larger subspace.
  const MatrixCd Bp = out.rank_a >= out.rank_b ? MatrixCd(QB - QA * C) : MatrixCd(QA - QB * C.transpose());
  const Eigen::VectorXd sin = Eigen::BDCSVD<MatrixCd>(Bp).singularValues();  // descending
  out.theta.resize(k);
  for (int i = 0; i < k; ++i) {  // i-th smallest angle: i-th largest cosine, i-th smallest sine
    const double c = cos[i];
    const double s = k - 1 - i < sin.size() ? sin[k - 1 - i] : 0.0;
    out.theta[i] = c * c >= 0.5 ? std::asin(clamp_unit(s)) : std::acos(clamp_unit(c));
  }
  std::sort(out.theta.begin(), out.theta.end());
  return out;
}

}  // namespace hs
