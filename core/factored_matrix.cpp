// Factored matrices; see factored_matrix.hpp.
#include "factored_matrix.hpp"

#include "decompositions.hpp"
#include "kernels.hpp"

// GCC 12 reports -Wmaybe-uninitialized inside Eigen 3.4's triangular and
// selfadjoint matrix-vector kernels (a known false positive); keep the
// build's warnings meaningful.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <limits>
#include <string>

namespace hs {

Result<FactoredSvd> factored_svd(const Eigen::Ref<const MatrixRMd>& A, const Eigen::Ref<const MatrixRMd>& B) {
  if (A.cols() != B.rows()) {
    return make_error("factored_svd: A is [" + std::to_string(A.rows()) + ", " + std::to_string(A.cols()) +
                      "] but B is [" + std::to_string(B.rows()) + ", " + std::to_string(B.cols()) + "]");
  }
  if (!A.allFinite() || !B.allFinite()) return make_error("factored_svd: a factor contains NaN or Inf");
  FactoredSvd out;
  if (A.size() == 0 || B.size() == 0) {
    out.U = MatrixRMd::Zero(A.rows(), 0);
    out.V = MatrixRMd::Zero(B.cols(), 0);
    return out;
  }
  // M = Qa Ra (Qb Rb)^T = Qa (Ra Rb^T) Qb^T, and Ra Rb^T is small.
  MatrixCd Qa, Ra, Qb, Rb;
  thin_qr(MatrixCd(A), Qa, Ra);
  thin_qr(MatrixCd(B.transpose()), Qb, Rb);
  MatrixCd core = Ra * Rb.transpose();  // [ka, kb]
  Eigen::BDCSVD<MatrixCd> svd(core, Eigen::ComputeThinU | Eigen::ComputeThinV);
  out.S = svd.singularValues();
  out.U = Qa * svd.matrixU();
  out.V = Qb * svd.matrixV();
  return out;
}

Eigen::VectorXd factored_singular_values(const MatrixRMd& gram_a, const MatrixRMd& gram_b) {
  return singular_values_from_factors(psd_sqrt_factor(gram_a), psd_sqrt_factor(gram_b));
}

Eigen::VectorXd singular_values_from_factors(const MatrixRMd& S_a, const MatrixRMd& S_b) {
  MatrixRMd M(S_a.cols(), S_b.cols());
  cross_f64(static_cast<int>(S_a.rows()), static_cast<int>(S_a.cols()), static_cast<int>(S_b.cols()), S_a.data(),
            static_cast<int>(S_a.cols()), S_b.data(), static_cast<int>(S_b.cols()), M.data());
  Eigen::VectorXd sigma = sqrt_eigenvalues_desc(gram_cols(M));
  if (sigma.size() > 0) {
    const double floor2 = 4.0 * sigma.size() * std::numeric_limits<double>::epsilon() * sigma[0] * sigma[0];
    for (Eigen::Index i = 0; i < sigma.size(); ++i) {
      if (sigma[i] * sigma[i] <= floor2) sigma[i] = 0;
    }
  }
  return sigma;
}

}  // namespace hs
