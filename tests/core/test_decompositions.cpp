// Dense linear algebra (core/decompositions.*): tridiagonal eigenvalues
// against Eigen's solver, and principal angles against scipy's
// subspace_angles (tests/reference/geometry_reference.py), small and nearly
// parallel angles and rank-deficient bases included. Each comparison prints
// its worst mismatch.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "../reference/geometry_reference.hpp"
#include "decompositions.hpp"

using hs::MatrixRMd;
using hs_test::count_of;
using hs_test::ref_path;
using hs_test::Worst;

TEST_CASE("decompositions: tridiagonal eigenvalues match Eigen's solver, split, repeated and extreme scales included",
          "[decompositions]") {
  std::mt19937 rng(11);
  std::normal_distribution<double> nd;
  double worst = 0;
  int cases = 0;
  for (int n : {1, 2, 3, 5, 17, 64, 70}) {
    for (int kind = 0; kind < 5; ++kind) {
      std::vector<double> d(n), e(std::max(n - 1, 0));
      for (auto& x : d) x = nd(rng);
      for (auto& x : e) x = nd(rng);
      if (kind == 1)  // split into blocks
        for (std::size_t i = 0; i < e.size(); i += 3) e[i] = 0;
      if (kind == 2) {  // repeated: a multiple of the identity
        std::fill(d.begin(), d.end(), 2.5);
        std::fill(e.begin(), e.end(), 0.0);
      }
      const double f = kind == 3 ? 1e-200 : kind == 4 ? 1e200 : 1.0;  // near under- and overflow
      for (auto& x : d) x *= f;
      for (auto& x : e) x *= f;
      Eigen::MatrixXd T = Eigen::MatrixXd::Zero(n, n);
      for (int i = 0; i < n; ++i) T(i, i) = d[i] / f;
      for (int i = 0; i + 1 < n; ++i) T(i, i + 1) = T(i + 1, i) = e[i] / f;
      const Eigen::VectorXd want = Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd>(T, Eigen::EigenvaluesOnly).eigenvalues();
      REQUIRE(hs::tridiagonal_eigenvalues(d, e));
      REQUIRE(std::is_sorted(d.begin(), d.end()));
      const double scale = std::max(1e-300, want.cwiseAbs().maxCoeff());
      for (int i = 0; i < n; ++i) worst = std::max(worst, std::fabs(d[i] / f - want[i]) / scale);
      ++cases;
    }
  }
  INFO(cases << " matrices: worst |lambda - Eigen's| / max |lambda| " << worst);
  CHECK(worst < 1e-13);
}

TEST_CASE("decompositions: principal angles match scipy subspace_angles, small angles included", "[decompositions]") {
  hs_test::require_geometry_reference();
  const int n = count_of("angles");
  const auto names = hs_test::read_lines(ref_path("angles/names.txt"));
  REQUIRE(static_cast<int>(names.size()) == n);
  // Two references: scipy.linalg.subspace_angles itself, and the same
  // algorithm with each angle's arcsin/arccos choice made by its own cosine
  // (geometry_reference.py knyazev_argentati). scipy indexes that choice in
  // reverse, so where small and large angles mix it takes arccos of some
  // cosines ~1 and quantises those angles to multiples of sqrt(eps) ~ 1.5e-8,
  // by an amount that depends on the BLAS's rounding. So scipy is held to what
  // its method can deliver, angle by angle, derived from the inputs'
  // conditioning (scipy_angle_bounds); the tight check is the 1e-11 one.
  Worst theta("principal angles vs Knyazev-Argentati in numpy (absolute, radians)", 1e-11);
  Worst theta_scipy("principal angles vs scipy subspace_angles (in units of scipy's own error bound)", 1.0);
  Worst parallel("nearly parallel (1e-6 rad) angles (relative)", 1e-5);
  Worst cos2("sum cos^2", 1e-12);
  for (int i = 0; i < n; ++i) {
    const std::string d = "angles/" + std::to_string(i) + "/";
    const MatrixRMd A = hs_test::load_matrix(ref_path(d + "A.npy")), B = hs_test::load_matrix(ref_path(d + "B.npy"));
    const auto t_ref = hs_test::load_npy(ref_path(d + "theta.npy"));
    const auto t_scipy = hs_test::load_npy(ref_path(d + "theta_scipy.npy"));
    const auto t_scipy_bound = hs_test::load_npy(ref_path(d + "theta_scipy_bound.npy"));
    const auto ranks = hs_test::load_npy(ref_path(d + "ranks.npy")).as_int64();
    auto r = hs::principal_angles(A, B);
    REQUIRE(r.ok());
    INFO(names[i]);
    CHECK(r->rank_a == ranks[0]);
    CHECK(r->rank_b == ranks[1]);
    REQUIRE(static_cast<std::int64_t>(r->theta.size()) == t_ref.size());
    for (std::size_t j = 0; j < r->theta.size(); ++j) {
      theta.add(r->theta[j], t_ref.data[j], names[i] + " angle " + std::to_string(j));
      theta_scipy.add(r->theta[j], t_scipy.data[j], names[i] + " angle " + std::to_string(j), t_scipy_bound.data[j]);
      if (names[i] == "parallel_1e-6") {
        parallel.add(r->theta[j], t_ref.data[j], names[i] + " angle " + std::to_string(j), t_ref.data[j]);
      }
    }
    cos2.add(r->sum_cos2, hs_test::load_npy(ref_path(d + "sum_cos2.npy")).data[0], names[i]);
  }
  theta.check();
  theta_scipy.check();
  parallel.check();
  cos2.check();
}
