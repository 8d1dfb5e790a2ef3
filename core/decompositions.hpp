// Dense linear algebra in double on the small matrices of the weight
// geometry (a head's d x dh blocks, their dh x dh Grams): Gram matrices,
// square-root factors of positive semidefinite matrices by pivoted Cholesky,
// eigenvalues of symmetric matrices (Householder tridiagonalization, then a
// root-free QL/QR iteration), thin QR, orthonormal bases with a rank cut, and
// principal angles between subspaces. Each follows a LAPACK or scipy routine,
// named where it is declared. Nothing here knows about models or heads.
//
// The loops that run in SIMD (the Grams and the tridiagonal reduction) are
// kernels (kernels.hpp, kernels_f64.cpp): the wasm build compiles them with
// and without fused multiply-add.
#pragma once

#include <vector>

#include "linalg.hpp"
#include "result.hpp"

namespace hs {

// ---------------------------------------------------------------------------
// Grams and square-root factors

// G = A^T A [k, k] for A [d, k] (float A is widened exactly: the same G for
// the same values), in double: kernels.hpp's gram_f64.
MatrixRMd gram_cols(const MatrixRMd& A);
MatrixRMd gram_cols(const MatrixRM& A);
MatrixRMd gram_cols(const BlockView& A);  // read in place (or transposed)
// G = B B^T for B [k, d].
MatrixRMd gram_rows(const MatrixRMd& B);

// S [k, k] with S S^T = G for a symmetric positive semidefinite G [k, k],
// from the pivoted Cholesky of LAPACK's dpstrf (unblocked): G[p, p] ~= L L^T
// with L [k, r] lower trapezoidal, pivoting on the largest diagonal of the
// remaining Schur complement and stopping at LAPACK's default tolerance
// k eps max(diag G), so that r is the numerical rank and what remains is
// rounding noise. (Eigen's LDLT pivots on the original diagonal and does not
// reveal rank.) S = P^T L, padded with zero columns past the rank: a lower
// triangle with its rows permuted, row perm[j] of S being row j of L
// (factor_into_lane multiplies by it at half a GEMM's cost), and its pivots
// S(perm[j], j)^2 decrease from the largest diagonal of G (the redundancy's
// bases cut the rank on them: gram_basis_into_lane, geometry.cpp).
MatrixRMd psd_sqrt_factor(const MatrixRMd& G, std::vector<int>* perm = nullptr);

// ---------------------------------------------------------------------------
// Symmetric eigenvalues

// The square roots of the eigenvalues of the symmetric PSD matrix C [k, k],
// descending (negative rounding noise clamped to 0): singular values from a
// Gram-like core. Householder tridiagonalization (tridiagonalize_f64) of C
// scaled to its largest entry like Eigen's solver, then
// tridiagonal_eigenvalues; Eigen's solver if that ever fails to converge.
Eigen::VectorXd sqrt_eigenvalues_desc(const MatrixRMd& C);

// All eigenvalues of the symmetric tridiagonal matrix with diagonal d [n] and
// off-diagonal e [n - 1], ascending, into d; e is overwritten. The
// Pal-Walker-Kahan root-free QL/QR iteration of LAPACK's dsterf (each step
// without square roots, QL or QR by which end of a block is smaller, blocks
// near over- or underflow scaled): about twice as fast in wasm as Eigen's
// Givens-based iteration, whose square roots and divisions make one
// dependent chain. Returns false if some eigenvalue did not converge in
// 30 n iterations (d is then unsorted).
bool tridiagonal_eigenvalues(std::vector<double>& d, std::vector<double>& e);

// ---------------------------------------------------------------------------
// QR, orthonormal bases and principal angles

// Thin Householder QR of A [l, m]: A = Q R, Q [l, min(l,m)], R [min(l,m), m].
void thin_qr(const MatrixCd& A, MatrixCd& Q, MatrixCd& R);

// The rank tolerance used throughout: singular values at or below
// sigma_max * rcond count as zero, with rcond = eps * max(rows, cols) as in
// scipy.linalg.orth, taking eps of float32 because weights are float32 (what
// scipy's orth would use on the weights themselves).
double default_rank_rcond(Eigen::Index rows, Eigen::Index cols);

// An orthonormal basis [d, r] of the column space of A [d, k]: Householder QR,
// then an SVD of R; r = the number of singular values above sigma_max * rcond
// (rcond < 0: default_rank_rcond).
MatrixRMd orthonormal_basis(const Eigen::Ref<const MatrixRMd>& A, double rcond = -1);

// Principal angles between the column spaces of A [d, ka] and B [d, kb]
// (Bjorck & Golub 1973), accurate for small angles as in
// scipy.linalg.subspace_angles (Knyazev & Argentati 2002): each angle with
// cos^2 >= 1/2 comes from arcsin of a singular value of Q_B - Q_A Q_A^T Q_B,
// the others from arccos. Angles are ascending (scipy returns them reversed),
// k = min(rank_A, rank_B) of them.
struct PrincipalAngles {
  std::vector<double> theta;  // radians, ascending
  int rank_a = 0, rank_b = 0;
  double sum_cos2 = 0;  // sum cos^2 theta = ||Q_A^T Q_B||_F^2
};
Result<PrincipalAngles> principal_angles(const Eigen::Ref<const MatrixRMd>& A, const Eigen::Ref<const MatrixRMd>& B,
                                         double rcond = -1);

}  // namespace hs
