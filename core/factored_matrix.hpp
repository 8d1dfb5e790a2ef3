// Factored matrices: M = A B (A [l, m], B [m, r], m small) handled through
// its factors, never formed, as TransformerLens's FactoredMatrix does: its
// SVD from thin QRs of the factors, and its singular values alone from the
// factors' Gram matrices. A head's OV and QK circuits are such products
// (head_circuits.hpp); so are the composition products of two heads.
#pragma once

#include "linalg.hpp"
#include "result.hpp"

namespace hs {

// M = U diag(S) V^T for M = A B, never forming M. U [l, k] and V [r, k] have
// orthonormal columns, S [k] is descending, k = min(l, m, r). (V is V, not
// V^T: TL's deprecated `Vh` returned V.)
struct FactoredSvd {
  MatrixRMd U;        // [l, k]
  Eigen::VectorXd S;  // [k]
  MatrixRMd V;        // [r, k]
};

// A [l, m], B [m, r]. Thin Householder QR of A and of B^T, then an SVD
// (Eigen's BDCSVD) of the m x m core R_A R_B^T: O((l + r) m^2), backward
// stable, U and V orthonormal even when A or B is rank-deficient. Error on a
// shape mismatch or non-finite input.
Result<FactoredSvd> factored_svd(const Eigen::Ref<const MatrixRMd>& A, const Eigen::Ref<const MatrixRMd>& B);

// Singular values only, from the Gram matrices G_A = A^T A and G_B = B B^T
// (both m x m): sigma(M) for M = S_A^T S_B with S S^T = G (pivoted Cholesky
// square roots, psd_sqrt_factor), through the eigenvalues of M^T M. Cheap
// when the Grams are already there; absolute error ~1e-16 * sigma_max^2 / sigma, so
// values below sqrt(4 m eps) sigma_max (~1e-7 for m = 64) are returned as 0.
Eigen::VectorXd factored_singular_values(const MatrixRMd& gram_a, const MatrixRMd& gram_b);

// The same from square-root factors already computed, S_a S_a^T = A^T A and
// S_b S_b^T = B B^T: A = Q_a S_a^T and B = S_b Q_b^T with orthonormal Q_a,
// Q_b, so A B = Q_a (S_a^T S_b) Q_b^T and sigma^2 = eig(M^T M), M = S_a^T S_b.
// The eigenvalues carry an absolute error ~ eps * sigma_max^2, so sigma below
// ~sqrt(k eps) sigma_max is rounding noise: a rank-deficient factor would
// otherwise show ~1e-8 "singular values" and a slightly inflated effective
// rank. Those are zeroed, as an SVD of the explicit product would show.
Eigen::VectorXd singular_values_from_factors(const MatrixRMd& S_a, const MatrixRMd& S_b);

}  // namespace hs
