// Weight geometry (core/geometry.*) against numpy/scipy: every quantity is
// compared with what tests/reference/geometry_reference.py computes the
// explicit way (d x d products, numpy.linalg.svd/eigvals, scipy
// subspace_angles pair by pair), on random factors of several shapes
// (rank-deficient and nearly parallel ones included), on random models
// (LayerNorm, GQA + RMSNorm, degenerate heads) and on the hf-oracle fixture
// weights, in both weight variants. Each comparison prints its worst
// mismatch. Plus the FactoredMatrix invariants TL tests (reconstruction,
// orthonormal U and V, norm from S) and error handling.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>

#include "../reference/geometry_reference.hpp"
#include "geometry.hpp"
#include "processing.hpp"

using hs::MatrixRMd;
using hs_test::Worst;

namespace {

std::string ref_path(const std::string& rel) { return hs_test::geometry_ref_dir() + "/" + rel; }

int count_of(const std::string& dir) { return static_cast<int>(hs_test::load_npy(ref_path(dir + "/count.npy")).data[0]); }

std::string at(int a, int b) { return "[" + std::to_string(a) + "," + std::to_string(b) + "]"; }

}  // namespace

TEST_CASE("geometry: factored SVD matches numpy's SVD of the explicit product", "[geometry]") {
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

TEST_CASE("geometry: factored SVD rejects mismatched and non-finite factors", "[geometry]") {
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

TEST_CASE("geometry: spectral summaries follow Roy-Vetterli and sigma^2 shares", "[geometry]") {
  Eigen::VectorXd flat = Eigen::VectorXd::Constant(8, 3.0);
  CHECK(hs::effective_rank(flat) == Approx(8.0).epsilon(1e-14));
  Eigen::VectorXd one = Eigen::VectorXd::Zero(5);
  one[0] = 2;
  CHECK(hs::effective_rank(one) == Approx(1.0));
  CHECK(hs::effective_rank(Eigen::VectorXd::Zero(4)) == 0.0);
  Eigen::VectorXd s(3);
  s << 3, 4, 0;  // sigma^2 shares: 16/25 for the top value
  CHECK(hs::top_k_energy_share(s, 1) == Approx(16.0 / 25.0));
  CHECK(hs::top_k_energy_share(s, 2) == Approx(1.0));
}

TEST_CASE("geometry: tridiagonal eigenvalues match Eigen's solver, split, repeated and extreme scales included",
          "[geometry]") {
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
      REQUIRE(hs::detail::tridiagonal_eigenvalues(d, e));
      REQUIRE(std::is_sorted(d.begin(), d.end()));
      const double scale = std::max(1e-300, want.cwiseAbs().maxCoeff());
      for (int i = 0; i < n; ++i) worst = std::max(worst, std::fabs(d[i] / f - want[i]) / scale);
      ++cases;
    }
  }
  INFO(cases << " matrices: worst |lambda - Eigen's| / max |lambda| " << worst);
  CHECK(worst < 1e-13);
}

TEST_CASE("geometry: principal angles match scipy subspace_angles, small angles included", "[geometry]") {
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

TEST_CASE("geometry: composition score identity matches the explicit formula", "[geometry]") {
  hs_test::require_geometry_reference();
  const int n = count_of("composition");
  Worst w("composition_score (relative)", 1e-12);
  for (int i = 0; i < n; ++i) {
    const std::string d = "composition/" + std::to_string(i) + "/";
    const double want = hs_test::load_npy(ref_path(d + "score.npy")).data[0];
    const double got = hs::composition_score(hs_test::load_matrix(ref_path(d + "A1.npy")), hs_test::load_matrix(ref_path(d + "B1.npy")),
                                             hs_test::load_matrix(ref_path(d + "A2.npy")), hs_test::load_matrix(ref_path(d + "B2.npy")));
    w.add(got, want, "case " + std::to_string(i), want);
  }
  w.check();
}

TEST_CASE("geometry: random composition baseline agrees with a numpy Monte Carlo", "[geometry]") {
  hs_test::require_geometry_reference();
  const auto shape = hs_test::load_npy(ref_path("baseline/shape.npy")).as_int64();
  const auto scores = hs_test::load_npy(ref_path("baseline/scores.npy"));
  double mean = 0, var = 0;
  for (double s : scores.data) mean += s;
  mean /= scores.size();
  for (double s : scores.data) var += (s - mean) * (s - mean);
  var /= scores.size() - 1;
  const int n = 1000;
  auto b = hs::composition_baseline(static_cast<int>(shape[0]), static_cast<int>(shape[1]), n, 7);
  REQUIRE(b.ok());
  const double se = std::sqrt(var / scores.size() + var / n);
  INFO("C++ mean " << b->mean << " std " << b->std << "; numpy mean " << mean << " std " << std::sqrt(var)
                   << "; 5 standard errors " << 5 * se);
  CHECK(std::abs(b->mean - mean) <= 5 * se);
  CHECK(std::abs(b->std - std::sqrt(var)) <= 0.15 * std::sqrt(var));
  auto again = hs::composition_baseline(static_cast<int>(shape[0]), static_cast<int>(shape[1]), n, 7);
  REQUIRE(again.ok());
  CHECK(again->mean == b->mean);  // deterministic for a seed
  auto other = hs::composition_baseline(static_cast<int>(shape[0]), static_cast<int>(shape[1]), n, 8);
  REQUIRE(other.ok());
  CHECK(other->mean != b->mean);
}

namespace {

// Every model-level analysis against the numpy reference of one variant.
void check_model(const std::string& name, hs::WeightVariant variant) {
  const hs::Model model = hs_test::model_from_reference(name);
  const auto& c = model.config;
  const int L = c.n_layer, H = c.n_head, dh = c.d_head, N = L * H;
  const std::string rd = "models/" + name + "/ref_" + hs::weight_variant_name(variant) + "/";
  auto R = [&](const std::string& key) { return hs_test::load_npy(ref_path(rd + key + ".npy")); };
  const std::string tag = name + " " + hs::weight_variant_name(variant) + " ";
  std::cout << tag << "\n";

  // Spectra.
  auto spectra = hs::head_spectra(model, variant, 4);
  REQUIRE(spectra.ok());
  CHECK(spectra->variant == variant);
  CHECK(spectra->qk_ignores_rotary == (c.rotary_dim > 0));
  for (const char* circ : {"ov", "qk"}) {
    const hs::CircuitSpectra& s = std::string(circ) == "ov" ? spectra->ov : spectra->qk;
    const auto sig = R(std::string(circ) + "_sigma"), met = R(std::string(circ) + "_metrics");
    double smax = 0;
    for (double x : sig.data) smax = std::max(smax, x);
    Worst ws(tag + circ + " singular values (relative to the largest)", 1e-7);
    Worst wm(tag + circ + " frobenius (rel), erank, top-1/top-4 shares", 1e-6);
    for (int i = 0; i < N; ++i) {
      for (int j = 0; j < dh; ++j) ws.add(s.sigma[i * dh + j], sig.data[i * dh + j], "head " + std::to_string(i) + " sigma " + std::to_string(j), smax);
      const double want_f = met.data[i * 4 + 0];
      wm.add(s.frobenius[i], want_f, "head " + std::to_string(i) + " frobenius", std::max(want_f, 1e-9));
      wm.add(s.effective_rank[i], met.data[i * 4 + 1], "head " + std::to_string(i) + " erank");
      wm.add(s.top1_share[i], met.data[i * 4 + 2], "head " + std::to_string(i) + " top1");
      wm.add(s.topk_share[i], met.data[i * 4 + 3], "head " + std::to_string(i) + " top4");
    }
    ws.check();
    wm.check();
  }

  // Redundancy matrices, every subspace kind.
  std::vector<double> write_overlap;
  for (auto kind : {hs::HeadSubspace::query_read, hs::HeadSubspace::key_read, hs::HeadSubspace::value_read,
                    hs::HeadSubspace::output_write}) {
    auto red = hs::subspace_redundancy(model, variant, kind);
    REQUIRE(red.ok());
    CHECK(red->variant == variant);
    const auto want = R(std::string("red_") + hs::head_subspace_name(kind));
    Worst w(tag + "redundancy " + hs::head_subspace_name(kind), 2e-6);
    for (int i = 0; i < N; ++i) {
      for (int j = 0; j < N; ++j) w.add(red->overlap[i * N + j], want.data[i * N + j], at(i, j));
    }
    w.check();
    if (kind == hs::HeadSubspace::output_write) write_overlap = red->overlap;
  }

  // Composition scores.
  auto comp = hs::composition_scores(model, variant);
  REQUIRE(comp.ok());
  CHECK(comp->variant == variant);
  for (const char* k : {"q", "k", "v"}) {
    const auto want = R(std::string("comp_") + k);
    const std::vector<double>& got = *k == 'q' ? comp->q : *k == 'k' ? comp->k : comp->v;
    Worst w(tag + "composition " + k, 2e-6);
    for (int i = 0; i < N * N; ++i) w.add(got[i], want.data[i], "pair " + at(i / N, i % N));
    w.check();
  }

  // The one-pass call computes the same numbers as the three calls, exactly.
  auto all = hs::weight_geometry(model, variant, 4);
  REQUIRE(all.ok());
  for (auto [one, sep] : {std::pair{&all->spectra.ov, &spectra->ov}, std::pair{&all->spectra.qk, &spectra->qk}}) {
    CHECK(one->sigma == sep->sigma);
    CHECK(one->frobenius == sep->frobenius);
    CHECK(one->effective_rank == sep->effective_rank);
    CHECK(one->top1_share == sep->top1_share);
    CHECK(one->topk_share == sep->topk_share);
  }
  CHECK(all->spectra.variant == variant);
  CHECK(all->write_redundancy.kind == hs::HeadSubspace::output_write);
  CHECK(all->write_redundancy.overlap == write_overlap);
  CHECK(all->composition.variant == variant);
  CHECK(all->composition.q == comp->q);
  CHECK(all->composition.k == comp->k);
  CHECK(all->composition.v == comp->v);

  // Full OV circuit eigenvalues.
  auto ue = hs::unembed_embed_product(model, variant);
  REQUIRE(ue.ok());
  auto copy = hs::ov_copying_scores(model, variant, *ue);
  REQUIRE(copy.ok());
  CHECK(copy->variant == variant);
  Worst wc(tag + "OV copying score and positive fraction", 2e-6);
  const auto cs = R("copy_score"), pf = R("copy_posfrac");
  for (int i = 0; i < N; ++i) {
    wc.add(copy->copying_score[i], cs.data[i], "head " + std::to_string(i) + " score");
    wc.add(copy->positive_fraction[i], pf.data[i], "head " + std::to_string(i) + " positive fraction");
  }
  wc.check();

  // Token read-out of the last head.
  const auto rsig = R("readout_sigma");
  const int n_dir = static_cast<int>(rsig.size());
  const int top_n = static_cast<int>(R("readout_read_top_ids").shape[1]);
  auto ro = hs::ov_token_readout(model, variant, L - 1, H - 1, n_dir, top_n);
  REQUIRE(ro.ok());
  CHECK(ro->variant == variant);
  REQUIRE(static_cast<int>(ro->directions.size()) == n_dir);
  Worst wr(tag + "read-out cosines and sigma", 1e-6);
  int id_mismatch = 0;
  for (const char* list : {"read_top", "read_bottom", "write_top", "write_bottom"}) {
    const auto ids = R(std::string("readout_") + list + "_ids").as_int64();
    const auto cos = R(std::string("readout_") + list + "_cos");
    for (int k = 0; k < n_dir; ++k) {
      const hs::OvDirectionReadout& d = ro->directions[k];
      const auto& got = std::string(list) == "read_top"      ? d.read_top
                        : std::string(list) == "read_bottom" ? d.read_bottom
                        : std::string(list) == "write_top"   ? d.write_top
                                                             : d.write_bottom;
      REQUIRE(static_cast<int>(got.size()) == top_n);
      for (int j = 0; j < top_n; ++j) {
        if (got[j].token != ids[k * top_n + j]) ++id_mismatch;
        wr.add(got[j].cosine, cos.data[k * top_n + j], std::string(list) + " dir " + std::to_string(k) + " rank " + std::to_string(j));
      }
    }
  }
  for (int k = 0; k < n_dir; ++k) wr.add(ro->directions[k].sigma, rsig.data[k], "sigma " + std::to_string(k), rsig.data[0]);
  wr.check();
  CHECK(id_mismatch == 0);

  // One cross-kind pair: L0H0 writes (O) vs the last layer's head 1 reads (Q).
  auto pair = hs::head_pair_geometry(model, variant, 0, 0, hs::HeadSubspace::output_write, L - 1, std::min(1, H - 1),
                                     hs::HeadSubspace::query_read);
  REQUIRE(pair.ok());
  const auto pt = R("pair_theta");
  REQUIRE(static_cast<std::int64_t>(pair->angles.theta.size()) == pt.size());
  Worst wp(tag + "L0H0 O vs Q principal angles", 1e-10);
  for (std::size_t j = 0; j < pair->angles.theta.size(); ++j) wp.add(pair->angles.theta[j], pt.data[j], "angle " + std::to_string(j));
  wp.check();
}

}  // namespace

TEST_CASE("geometry: LayerNorm model matches numpy in both variants", "[geometry]") {
  hs_test::require_geometry_reference();
  check_model("synthetic_ln", hs::WeightVariant::raw);
  check_model("synthetic_ln", hs::WeightVariant::processed);
}

TEST_CASE("geometry: GQA RMSNorm model matches numpy in both variants", "[geometry]") {
  hs_test::require_geometry_reference();
  check_model("synthetic_gqa_rms", hs::WeightVariant::raw);
  check_model("synthetic_gqa_rms", hs::WeightVariant::processed);
}

TEST_CASE("geometry: degenerate heads (zero, rank-deficient, duplicated) match numpy", "[geometry]") {
  hs_test::require_geometry_reference();
  check_model("synthetic_degenerate", hs::WeightVariant::raw);
  check_model("synthetic_degenerate", hs::WeightVariant::processed);
  const hs::Model model = hs_test::model_from_reference("synthetic_degenerate");
  const int H = model.config.n_head;
  // L0H1 writes nothing: rank 0, no overlap with anything.
  auto write = hs::subspace_redundancy(model, hs::WeightVariant::raw, hs::HeadSubspace::output_write);
  REQUIRE(write.ok());
  CHECK(write->rank[1] == 0);
  auto read = hs::subspace_redundancy(model, hs::WeightVariant::raw, hs::HeadSubspace::value_read);
  REQUIRE(read.ok());
  CHECK(read->rank[2] == 3);  // L0H2 reads the duplicated-column KV head
  // L2H0 is a copy of L1H3: the best merge candidate, both overlaps 1.
  auto merge = hs::merge_candidates(*write, *read, 5);
  REQUIRE(merge.ok());
  REQUIRE(!merge->pairs.empty());
  const hs::MergeCandidate& top = merge->pairs.front();
  CHECK(top.layer_a * H + top.head_a == 1 * H + 3);
  CHECK(top.layer_b * H + top.head_b == 2 * H + 0);
  CHECK(top.write_overlap == Approx(1.0).margin(1e-6));
  CHECK(top.read_overlap == Approx(1.0).margin(1e-6));
  for (std::size_t i = 1; i < merge->pairs.size(); ++i) CHECK(merge->pairs[i].combined <= merge->pairs[i - 1].combined);
  auto direct = hs::merge_candidates(model, hs::WeightVariant::raw, 5);
  REQUIRE(direct.ok());
  CHECK(direct->pairs.front().combined == Approx(top.combined));
  // Mixing kinds is an error.
  auto bad = hs::merge_candidates(*read, *write, 5);
  CHECK_FALSE(bad.ok());
}

TEST_CASE("geometry: hf-oracle fixture weights match numpy in both variants", "[geometry]") {
  hs_test::require_geometry_reference();
  int seen = 0;
  for (const std::string& name : hs_test::read_lines(ref_path("models/names.txt"))) {
    if (name.rfind("fixture_", 0) != 0) continue;
    ++seen;
    check_model(name, hs::WeightVariant::raw);
    check_model(name, hs::WeightVariant::processed);
  }
  CHECK(seen == 3);  // gpt2, llama (GQA, RMS), gpt_neox (rotary, parallel)
}

TEST_CASE("geometry: both pair kernels give the same all-pairs products", "[geometry]") {
  // X, Y [d, n*k]: projector and direct kernels must agree for both pair sets;
  // d not a multiple of 8 (the panels' zero rows), layers of 1 to 3 heads (padded slots), and a single layer.
  struct Shape {
    int d, k, n, group;
  };
  for (const Shape shape : {Shape{40, 6, 9, 3}, Shape{37, 5, 6, 1}, Shape{37, 4, 8, 2}, Shape{21, 3, 3, 3}}) {
    const int d = shape.d, k = shape.k, n = shape.n, group = shape.group;
    hs::MatrixRM X = hs::MatrixRM::Random(d, n * k), Y = hs::MatrixRM::Random(d, n * k);
    X.middleCols(2 * k, k).setZero();  // an all-zero block
    for (auto set : {hs::detail::PairSet::symmetric, hs::detail::PairSet::later_layer}) {
      auto a = hs::detail::block_frobenius_products(X, Y, k, set, group, hs::detail::PairKernel::projector, {});
      auto b = hs::detail::block_frobenius_products(X, Y, k, set, group, hs::detail::PairKernel::direct, {});
      REQUIRE(a.ok());
      REQUIRE(b.ok());
      Worst w(std::string("projector vs direct kernel, ") +
                  (set == hs::detail::PairSet::symmetric ? "symmetric" : "later layer"),
              1e-5);
      for (int i = 0; i < n; ++i) {
        for (int j = 0; j < n; ++j) {
          // And both against a plain per-pair product in double.
          const hs::MatrixRM& Yr = set == hs::detail::PairSet::symmetric ? X : Y;
          const bool needed = set == hs::detail::PairSet::symmetric || i / group < j / group;
          const double want = needed ? (X.middleCols(i * k, k).cast<double>().transpose() *
                                        Yr.middleCols(j * k, k).cast<double>()).squaredNorm()
                                     : 0.0;
          w.add((*a)(i, j), want, "projector " + at(i, j), std::max(1.0, want));
          w.add((*b)(i, j), want, "direct " + at(i, j), std::max(1.0, want));
        }
      }
      w.check();
    }
  }
}

TEST_CASE("geometry: the projector kernel's blocking (many heads, split coordinate blocks) is exact", "[geometry]") {
  // Enough heads and width that the packed coordinates are split into
  // several column blocks per band (d 520 > the block width for 176 heads),
  // the symmetric set recurses (> 16 heads) and the later-layer set runs
  // its layer rectangles; d is no multiple of the band (zero rows pad it).
  const int d = 520, k = 3, n = 176, group = 16;
  hs::MatrixRM X = hs::MatrixRM::Random(d, n * k), Y = hs::MatrixRM::Random(d, n * k);
  X.middleCols(5 * k, k).setZero();
  // Every band the head count can choose (0: the automatic one, 128 here),
  // and one that does not divide d.
  for (int band : {0, 64, 32, 16, 44})
  for (auto set : {hs::detail::PairSet::symmetric, hs::detail::PairSet::later_layer}) {
    auto a = hs::detail::block_frobenius_products(X, Y, k, set, group, hs::detail::PairKernel::projector, {}, 0, 1, band);
    REQUIRE(a.ok());
    const hs::MatrixRM& Yr = set == hs::detail::PairSet::symmetric ? X : Y;
    const MatrixRMd Xd = X.cast<double>(), Yd = Yr.cast<double>();
    Worst w(std::string("projector blocks vs double, band ") + std::to_string(band) + ", " +
                (set == hs::detail::PairSet::symmetric ? "symmetric" : "later layer"),
            1e-6);
    for (int i = 0; i < n; ++i) {
      for (int j = 0; j < n; ++j) {
        const bool needed = set == hs::detail::PairSet::symmetric || i / group < j / group;
        const double want = needed ? (Xd.middleCols(i * k, k).transpose() * Yd.middleCols(j * k, k)).squaredNorm() : 0.0;
        // Relative to the pair's scale ||X_i||^2 ||Y_j||^2 (the sum's magnitude).
        const double scale = Xd.middleCols(i * k, k).squaredNorm() * Yd.middleCols(j * k, k).squaredNorm();
        w.add((*a)(i, j), want, at(i, j), std::max(1.0, scale));
      }
    }
    w.check();
  }
}

TEST_CASE("geometry: long computations report progress and can be cancelled", "[geometry]") {
  hs_test::require_geometry_reference();
  const hs::Model model = hs_test::model_from_reference("synthetic_ln");
  std::vector<double> seen;
  auto ok = hs::subspace_redundancy(model, hs::WeightVariant::raw, hs::HeadSubspace::output_write, [&](double f) {
    seen.push_back(f);
    return true;
  });
  REQUIRE(ok.ok());
  REQUIRE(!seen.empty());
  CHECK(seen.back() == Approx(1.0));
  for (std::size_t i = 1; i < seen.size(); ++i) CHECK(seen[i] >= seen[i - 1]);
  int calls = 0;
  auto stop = [&](double) { return ++calls < 3; };
  auto c1 = hs::composition_scores(model, hs::WeightVariant::raw, stop);
  REQUIRE_FALSE(c1.ok());
  CHECK(c1.error().message == "cancelled");
  calls = 0;
  auto c2 = hs::head_spectra(model, hs::WeightVariant::raw, 4, stop);
  REQUIRE_FALSE(c2.ok());
  CHECK(c2.error().message == "cancelled");
  calls = 0;
  auto c4 = hs::weight_geometry(model, hs::WeightVariant::raw, 4, stop);
  REQUIRE_FALSE(c4.ok());
  CHECK(c4.error().message == "cancelled");
  seen.clear();
  REQUIRE(hs::weight_geometry(model, hs::WeightVariant::raw, 4, [&](double f) {
            seen.push_back(f);
            return true;
          }).ok());
  CHECK(seen.back() == Approx(1.0));
  for (std::size_t i = 1; i < seen.size(); ++i) CHECK(seen[i] >= seen[i - 1]);
  calls = 0;
  auto c3 = hs::composition_baseline(64, 16, 50, 0, stop);
  REQUIRE_FALSE(c3.ok());
  CHECK(c3.error().message == "cancelled");
}

TEST_CASE("geometry: bad heads and bad models are reported as errors", "[geometry]") {
  hs_test::require_geometry_reference();
  hs::Model model = hs_test::model_from_reference("synthetic_ln");
  auto out_of_range = hs::head_circuit_svd(model, hs::WeightVariant::raw, 7, 0, hs::Circuit::ov);
  REQUIRE_FALSE(out_of_range.ok());
  CHECK_THAT(out_of_range.error().message, Catch::Contains("L7H0"));
  model.weights.layers[1].W_V(3, 2) = NAN;
  auto nan = hs::head_spectra(model, hs::WeightVariant::raw);
  REQUIRE_FALSE(nan.ok());
  CHECK_THAT(nan.error().message, Catch::Contains("L1H0 W_V"));
  model.weights.layers[1].W_V(3, 2) = 0.5f;
  for (float bad : {INFINITY, -INFINITY}) {
    model.weights.layers[0].W_O(model.config.d_head + 1, 5) = bad;  // head 1's rows
    auto inf = hs::weight_geometry(model, hs::WeightVariant::raw);
    REQUIRE_FALSE(inf.ok());
    CHECK_THAT(inf.error().message, Catch::Contains("L0H1 W_O"));
  }
  hs::Model post = hs_test::model_from_reference("synthetic_ln");
  post.config.post_ln = true;
  auto p = hs::composition_scores(post, hs::WeightVariant::processed);
  REQUIRE_FALSE(p.ok());
  CHECK_THAT(p.error().message, Catch::Contains("pre-LN"));
  CHECK(hs::composition_scores(post, hs::WeightVariant::raw).ok());
}
