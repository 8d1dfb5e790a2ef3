// Weight geometry analyses (core/geometry.*, full_circuits.*) against
// numpy/scipy: every quantity is compared with what
// tests/reference/geometry_reference.py computes the explicit way (d x d
// products, numpy.linalg.svd/eigvals, scipy subspace_angles pair by pair), on
// random models (LayerNorm, GQA + RMSNorm, degenerate heads) and on the
// hf-oracle fixture weights, in both weight variants, and on random factors
// for the composition score. Each comparison prints its worst mismatch. Plus
// progress, cancellation and error handling.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <string>

#include "../reference/geometry_reference.hpp"
#include "full_circuits.hpp"
#include "geometry.hpp"
#include "processing.hpp"

using hs::MatrixRMd;
using hs_test::at;
using hs_test::count_of;
using hs_test::ref_path;
using hs_test::Worst;

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
    // Its null: the pairs l1 >= l2, self-pairs 0.
    const auto want_null = R(std::string("compnull_") + k);
    const std::vector<double>& got_null = *k == 'q' ? comp->null_q : *k == 'k' ? comp->null_k : comp->null_v;
    Worst wn(tag + "composition null " + k, 2e-6);
    for (int i = 0; i < N * N; ++i) wn.add(got_null[i], want_null.data[i], "pair " + at(i / N, i % N));
    wn.check();
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
  CHECK(all->composition.null_q == comp->null_q);
  CHECK(all->composition.null_k == comp->null_k);
  CHECK(all->composition.null_v == comp->null_v);

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

  // Merge candidates: every same-layer pair, its QK cosine against numpy,
  // KV siblings (GQA) flagged and ranked without their shared value weights.
  auto merges = hs::merge_candidates(model, variant, N * N);
  REQUIRE(merges.ok());
  REQUIRE(merges->pairs.size() == static_cast<std::size_t>(L * H * (H - 1) / 2));
  const auto qk_cos = R("qk_cosine");
  Worst wq(tag + "merge candidates: QK cosine", 1e-6);
  for (const auto& p : merges->pairs) {
    const int i = p.layer * H + p.head_a, j = p.layer * H + p.head_b;
    wq.add(p.qk_similarity, qk_cos.data[(p.layer * H + p.head_a) * H + p.head_b], at(i, j));
    const bool siblings = c.n_kv_head < H && p.head_a / (H / c.n_kv_head) == p.head_b / (H / c.n_kv_head);
    CHECK(p.kv_siblings == siblings);
    const double want = siblings ? (p.write_overlap + p.qk_similarity) / 2 : (p.write_overlap + p.read_overlap + p.qk_similarity) / 3;
    CHECK(p.combined == Approx(want).margin(1e-12));
    CHECK(p.write_overlap == Approx(write_overlap[i * N + j]).margin(1e-12));
  }
  wq.check();

  // Diagonal tests of the full OV and token QK circuits, every row: the
  // fractions are exact counts; a rank may move by one where float rounding
  // reorders two nearly equal entries (Eigen's blocking, and so its sums,
  // follow the CPU's caches), so a few such flips are allowed: 4 / V.
  auto diag = hs::full_circuit_tests(model, variant, {}, 1 << 20);
  REQUIRE(diag.ok());
  CHECK_FALSE(diag->sampled);
  const int V = diag->d_vocab;
  for (const char* circ : {"ov", "qk"}) {
    const auto want = R(std::string("diag_") + circ);
    const auto& got = std::string(circ) == "ov" ? diag->ov : diag->qk;
    Worst wd(tag + circ + " diagonal test (top-1, top-5 fractions; mean rank)", 4.0 / V);
    for (int i = 0; i < N; ++i) {
      wd.add(got[i].top1, want.data[i * 4 + 0], "head " + std::to_string(i) + " top1");
      wd.add(got[i].top5, want.data[i * 4 + 1], "head " + std::to_string(i) + " top5");
      wd.add(got[i].mean_rank, want.data[i * 4 + 3], "head " + std::to_string(i) + " mean rank");
    }
    wd.check();
  }
  if (c.learned_positions && c.rotary_dim == 0) {
    auto pos = hs::positional_qk(model, variant, {}, 16);
    REQUIRE(pos.ok());
    REQUIRE(pos->n_positions == static_cast<int>(R("pos_pattern_L0H0").shape[0]));
    Worst wp(tag + "positional QK pattern and its previous/current-token means", 1e-5);
    const auto prev = R("pos_previous"), cur = R("pos_current"), pat = R("pos_pattern_L0H0");
    for (int i = 0; i < N; ++i) {
      wp.add(pos->previous[i], prev.data[i], "head " + std::to_string(i) + " previous");
      wp.add(pos->current[i], cur.data[i], "head " + std::to_string(i) + " current");
    }
    for (std::size_t k = 0; k < pat.data.size(); ++k) wp.add(pos->patterns[k], pat.data[k], "L0H0 entry " + std::to_string(k));
    wp.check();
  }

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
  // L2H0 is a copy of L1H3, but in another layer: a merge needs one layer,
  // so no candidate spans two.
  auto merge = hs::merge_candidates(model, hs::WeightVariant::raw, *write, *read, 100);
  REQUIRE(merge.ok());
  REQUIRE(merge->pairs.size() == static_cast<std::size_t>(model.config.n_layer * H * (H - 1) / 2));
  for (std::size_t i = 1; i < merge->pairs.size(); ++i) CHECK(merge->pairs[i].combined <= merge->pairs[i - 1].combined);
  for (const auto& p : merge->pairs) {
    CHECK(p.head_a < p.head_b);
    CHECK(p.qk_similarity >= -1 - 1e-12);
    CHECK(p.qk_similarity <= 1 + 1e-12);
  }
  auto direct = hs::merge_candidates(model, hs::WeightVariant::raw, 5);
  REQUIRE(direct.ok());
  CHECK(direct->pairs.front().combined == Approx(merge->pairs.front().combined));
  // Mixing kinds is an error.
  auto bad = hs::merge_candidates(model, hs::WeightVariant::raw, *read, *write, 5);
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
