// Factored matrices (core/factored_matrix.*) against numpy: the SVD of A B
// from its factors and its singular values from the Grams, compared with
// numpy's SVD of the explicit product on random factors of several shapes
// (rank-deficient ones included, tests/reference/geometry_reference.py);
// the FactoredMatrix invariants TL tests (reconstruction, orthonormal U and
// V, norm from S); and error handling.
#include <catch2/catch.hpp>

#include <cmath>
#include <string>

#include "../reference/geometry_reference.hpp"
#include "factored_matrix.hpp"
#include "geometry.hpp"

using hs::MatrixRMd;
using hs_test::count_of;
using hs_test::ref_path;
using hs_test::Worst;

TEST_CASE("factored matrix: factored SVD matches numpy's SVD of the explicit product", "[factored_matrix]") {
  hs_test::require_geometry_reference();
  const int n = count_of("factored");
  Worst s_qr("factored_svd S (relative to sigma_max)", 1e-12);
  Worst s_gram("factored_singular_values S from Grams (relative to sigma_max)", 1e-7);
  Worst metrics("frobenius/erank/top1/top4 shares", 1e-9);
  Worst recon("reconstruction ||U S V^T - AB|| / ||AB||", 1e-12);
  Worst ortho("orthonormality ||U^T U - I||, ||V^T V - I||", 1e-12);
  Worst norm("sqrt(sum S^2) vs ||AB||_F (relative)", 1e-12);
  for (int i = 0; i < n; ++i) {
    const std::string d = "factored/" + std::to_string(i) + "/";
    const MatrixRMd A = hs_test::load_matrix(ref_path(d + "A.npy")), B = hs_test::load_matrix(ref_path(d + "B.npy"));
    const auto S_ref = hs_test::load_npy(ref_path(d + "S.npy"));
    const auto m_ref = hs_test::load_npy(ref_path(d + "metrics.npy"));
    auto f = hs::factored_svd(A, B);
    REQUIRE(f.ok());
    REQUIRE(f->S.size() == S_ref.size());
    REQUIRE(f->U.rows() == A.rows());
    REQUIRE(f->V.rows() == B.cols());
    const double smax = S_ref.data[0];
    MatrixRMd GA = A.transpose() * A, GB = B * B.transpose();
    const Eigen::VectorXd S_gram = hs::factored_singular_values(GA, GB);
    for (int j = 0; j < f->S.size(); ++j) {
      s_qr.add(f->S[j], S_ref.data[j], "case " + std::to_string(i) + " sigma " + std::to_string(j), smax);
      s_gram.add(S_gram[j], S_ref.data[j], "case " + std::to_string(i) + " sigma " + std::to_string(j), smax);
    }
    const double got_m[4] = {f->S.norm(), hs::effective_rank(f->S), hs::top_k_energy_share(f->S, 1),
                             hs::top_k_energy_share(f->S, 4)};
    for (int j = 0; j < 4; ++j) metrics.add(got_m[j], m_ref.data[j], "case " + std::to_string(i) + " metric " + std::to_string(j));
    // TL FactoredMatrix invariants.
    const MatrixRMd M = A * B;
    const MatrixRMd R = f->U * f->S.asDiagonal() * f->V.transpose();
    recon.add((R - M).norm() / M.norm(), 0, "case " + std::to_string(i));
    const Eigen::Index k = f->S.size();
    ortho.add((f->U.transpose() * f->U - MatrixRMd::Identity(k, k)).norm(), 0, "U case " + std::to_string(i));
    ortho.add((f->V.transpose() * f->V - MatrixRMd::Identity(k, k)).norm(), 0, "V case " + std::to_string(i));
    norm.add(f->S.norm(), M.norm(), "case " + std::to_string(i), M.norm());
    for (int j = 1; j < k; ++j) CHECK(f->S[j] <= f->S[j - 1]);
  }
  for (auto* w : {&s_qr, &s_gram, &metrics, &recon, &ortho, &norm}) w->check();
}

TEST_CASE("factored matrix: factored SVD rejects mismatched and non-finite factors", "[factored_matrix]") {
  MatrixRMd A = MatrixRMd::Random(10, 3), B = MatrixRMd::Random(4, 8);
  auto r = hs::factored_svd(A, B);
  REQUIRE_FALSE(r.ok());
  CHECK_THAT(r.error().message, Catch::Contains("[10, 3]"));
  MatrixRMd B2 = MatrixRMd::Random(3, 8);
  B2(1, 1) = NAN;
  auto r2 = hs::factored_svd(A, B2);
  REQUIRE_FALSE(r2.ok());
  CHECK_THAT(r2.error().message, Catch::Contains("NaN"));
}
