// Composition significance (core/composition_null.*): Benjamini-Hochberg
// against numpy's adjusted p-values, empirical p-values against the numpy
// composition scores and their null, and the null's calibration on a model
// whose heads are independent random matrices (every pair exchangeable).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <string>

#include "../reference/geometry_reference.hpp"
#include "composition_null.hpp"

using hs_test::load_npy;
using hs_test::ref_path;

namespace {

// Forward pairs (l1 < l2) and null pairs (l1 >= l2, not self) of [L, H, L, H].
struct Pairs {
  std::vector<double> forward, null;
};
Pairs split_pairs(const std::vector<double>& scores, const std::vector<double>& null, int L, int H) {
  Pairs out;
  const int N = L * H;
  for (int i = 0; i < N; ++i) {
    for (int j = 0; j < N; ++j) {
      if (i / H < j / H) out.forward.push_back(scores[i * N + j]);
      else if (i != j) out.null.push_back(null[i * N + j]);
    }
  }
  return out;
}

double share_below(const std::vector<double>& p, double level) {
  return static_cast<double>(std::count_if(p.begin(), p.end(), [&](double x) { return x <= level; })) / p.size();
}

}  // namespace

TEST_CASE("composition null: Benjamini-Hochberg matches numpy's adjusted p-values", "[composition_null]") {
  hs_test::require_geometry_reference();
  const int n = hs_test::count_of("bh");
  REQUIRE(n > 0);
  int discoveries = 0;
  for (int i = 0; i < n; ++i) {
    const std::string d = "bh/" + std::to_string(i) + "/";
    const std::vector<double> p = load_npy(ref_path(d + "p.npy")).data;
    const double q = load_npy(ref_path(d + "q.npy")).data[0];
    const std::vector<double> want = load_npy(ref_path(d + "flags.npy")).data;
    const std::vector<bool> got = hs::benjamini_hochberg(p, q);
    REQUIRE(got.size() == want.size());
    for (std::size_t k = 0; k < p.size(); ++k) {
      INFO("case " << i << " (m " << p.size() << ", q " << q << ") p[" << k << "] = " << p[k]);
      CHECK(got[k] == (want[k] != 0));
      discoveries += got[k];
    }
  }
  CHECK(discoveries > 0);  // the cases have some
}

TEST_CASE("composition null: p-values, null summaries and flags on the numpy reference models", "[composition_null]") {
  hs_test::require_geometry_reference();
  for (const char* name : {"synthetic_ln", "synthetic_gqa_rms", "synthetic_degenerate"}) {
    const hs::Model model = hs_test::model_from_reference(name);
    const int L = model.config.n_layer, H = model.config.n_head, N = L * H;
    auto comp = hs::composition_scores(model, hs::WeightVariant::raw);
    REQUIRE(comp.ok());
    // 3 layers of 4 heads: 48 forward pairs, 84 null ones. At q = 0.05 the
    // null is too small (85 q^2 < 1); at 0.2 it resolves (85 q^2 = 3.4).
    auto at05 = hs::composition_significance(*comp, 0.05);
    auto at20 = hs::composition_significance(*comp, 0.2);
    REQUIRE(at05.ok());
    REQUIRE(at20.ok());
    const std::string rd = std::string("models/") + name + "/ref_raw/";
    for (char kind : {'q', 'k', 'v'}) {
      INFO(name << " " << kind << "-composition");
      const auto want_scores = load_npy(ref_path(rd + "comp_" + kind + ".npy")).data;
      const auto want_null = load_npy(ref_path(rd + "compnull_" + kind + ".npy")).data;
      const Pairs want = split_pairs(want_scores, want_null, L, H);
      const hs::CompositionTest& t05 = kind == 'q' ? at05->q : kind == 'k' ? at05->k : at05->v;
      const hs::CompositionTest& t20 = kind == 'q' ? at20->q : kind == 'k' ? at20->k : at20->v;
      CHECK(t05.n_tests == static_cast<int>(want.forward.size()));
      CHECK(t05.null.n == static_cast<int>(want.null.size()));
      CHECK_FALSE(t05.resolvable);
      CHECK(t05.n_flagged == 0);
      CHECK(t20.resolvable);
      // Each p counts the null at or above the pair's score; the C++ scores
      // differ from numpy's by ~1e-7, so a null score within 1e-5 of the
      // pair's may fall either way.
      const double denominator = want.null.size() + 1.0;
      std::vector<double> forward_p;
      for (int i = 0, t = 0; i < N; ++i) {
        for (int j = 0; j < N; ++j) {
          const double p = t05.p[i * N + j];
          if (i / H >= j / H) {
            CHECK(std::isnan(p));
            continue;
          }
          const double s = want_scores[i * N + j];
          const auto count = [&](double from) { return std::count_if(want.null.begin(), want.null.end(), [&](double x) { return x >= from; }); };
          INFO("pair " << i << " -> " << j << " score " << s);
          CHECK(p >= (1 + count(s + 1e-5)) / denominator);
          CHECK(p <= (1 + count(s - 1e-5)) / denominator);
          CHECK(t20.p[i * N + j] == p);
          forward_p.push_back(p);
          ++t;
        }
      }
      // The flags at 0.2 are Benjamini-Hochberg of those p, and the
      // threshold is the smallest flagged score.
      const std::vector<bool> flags = hs::benjamini_hochberg(forward_p, 0.2);
      CHECK(t20.n_flagged == std::count(flags.begin(), flags.end(), true));
      double smallest = 2;
      for (int i = 0, t = 0; i < N; ++i) {
        for (int j = 0; j < N; ++j) {
          if (i / H >= j / H) continue;
          if (flags[t++]) smallest = std::min(smallest, (kind == 'q' ? comp->q : kind == 'k' ? comp->k : comp->v)[i * N + j]);
        }
      }
      if (t20.n_flagged > 0) CHECK(t20.threshold == smallest);
      // The pooled null's quantiles, numpy's linear interpolation.
      std::vector<double> sorted = want.null;
      std::sort(sorted.begin(), sorted.end());
      const double h = (sorted.size() - 1) * 0.95;
      const std::size_t lo = static_cast<std::size_t>(h);
      CHECK(t05.null.q95 == Approx(sorted[lo] + (h - lo) * (sorted[lo + 1] - sorted[lo])).margin(1e-5));
      // One summary per gap, 0 .. L - 1, their counts the null's.
      REQUIRE(t05.gaps.size() == static_cast<std::size_t>(L));
      int in_gaps = 0;
      for (const hs::NullGap& g : t05.gaps) in_gaps += g.n;
      CHECK(in_gaps == t05.null.n);
      CHECK(t05.gaps[0].n == L * H * (H - 1));  // same layer
    }
  }
  // A self-test of the arithmetic on made-up scores: 2 layers of 1 head.
  hs::CompositionScores tiny;
  tiny.n_layer = 2;
  tiny.n_head = 1;
  tiny.q = tiny.k = tiny.v = {0, 0.9, 0, 0};
  tiny.null_q = tiny.null_k = tiny.null_v = {0, 0, 0.3, 0};
  auto s = hs::composition_significance(tiny, 0.05);
  REQUIRE(s.ok());
  CHECK(s->k.p[1] == Approx(0.5));  // (1 + 0) / (1 + 1)
  CHECK_FALSE(s->k.resolvable);
  CHECK_FALSE(hs::composition_significance(tiny, 0).ok());
  // One layer: nothing to test, and no error (the geometry pass goes on).
  hs::CompositionScores one;
  one.n_layer = 1;
  one.n_head = 2;
  one.q = one.k = one.v = {0, 0, 0, 0};
  one.null_q = one.null_k = one.null_v = {0, 0.2, 0.3, 0};
  auto none = hs::composition_significance(one, 0.05);
  REQUIRE(none.ok());
  CHECK(none->k.n_tests == 0);
  CHECK(none->k.null.n == 2);
  CHECK_FALSE(none->k.resolvable);
  CHECK_FALSE(hs::composition_significance(tiny, 1).ok());
}

TEST_CASE("composition null: calibrated where heads are independent random matrices", "[composition_null]") {
  // Issue 20's calibration: with independent random heads, forward pairs and
  // the null's pairs are exchangeable, so 5 +- 2 % of forward pairs have
  // p <= 0.05, and one half of the null's pairs tested against the other is
  // flagged at the nominal rate. (The i.i.d. baseline + 2 sd, on real models,
  // flags most pairs; here it would flag few because these heads are i.i.d.:
  // this test guards the p-values, the real-model claim is in the benchmark.)
  hs_test::require_geometry_reference();
  const hs::Model model = hs_test::model_from_reference("independent_heads");
  const int L = model.config.n_layer, H = model.config.n_head;
  auto comp = hs::composition_scores(model, hs::WeightVariant::raw);
  REQUIRE(comp.ok());
  auto sig = hs::composition_significance(*comp, 0.05);
  REQUIRE(sig.ok());
  for (char kind : {'q', 'k', 'v'}) {
    const hs::CompositionTest& t = kind == 'q' ? sig->q : kind == 'k' ? sig->k : sig->v;
    std::vector<double> p;
    for (double x : t.p) {
      if (!std::isnan(x)) p.push_back(x);
    }
    REQUIRE(p.size() == static_cast<std::size_t>(t.n_tests));
    const double forward = share_below(p, 0.05);
    // Held out: alternate null pairs into two halves.
    const Pairs pairs = split_pairs(kind == 'q' ? comp->q : kind == 'k' ? comp->k : comp->v,
                                    kind == 'q' ? comp->null_q : kind == 'k' ? comp->null_k : comp->null_v, L, H);
    std::vector<double> a, b;
    for (std::size_t i = 0; i < pairs.null.size(); ++i) (i % 2 ? b : a).push_back(pairs.null[i]);
    const double held_out = share_below(hs::empirical_p_values(b, a), 0.05);
    std::cout << kind << "-composition, independent heads: " << t.n_tests << " forward pairs, " << t.null.n
              << " null; p <= 0.05 for " << 100 * forward << " % of forward pairs, " << 100 * held_out
              << " % of held-out null pairs; BH flags " << t.n_flagged << "\n";
    CHECK(t.resolvable);
    CHECK(forward == Approx(0.05).margin(0.02));
    CHECK(held_out == Approx(0.05).margin(0.02));
    // No structure, so (almost) nothing is a discovery at FDR 5 %.
    CHECK(t.n_flagged <= t.n_tests / 100);
    // Every gap of the null agrees with the pooled one.
    for (const hs::NullGap& g : t.gaps) {
      INFO("gap " << g.gap << ": " << g.n << " pairs");
      CHECK(g.above_q95 == Approx(0.05).margin(0.04));
    }
  }
}

TEST_CASE("composition null: a planted circuit is flagged, and little else", "[composition_null]") {
  // L0H0 writes what every head of layers 3 to 5 reads as keys (a
  // previous-token head feeding 36 induction heads): those K-composition
  // pairs beat every null pair, and only K-composition into them is flagged. A single planted pair could not be flagged
  // at FDR 5 % here (p >= 1/2953 > 0.05/2160): Benjamini-Hochberg needs
  // about 15 such pairs, and the test plants 36.
  hs_test::require_geometry_reference();
  hs::Model model = hs_test::model_from_reference("independent_heads");
  const int L = model.config.n_layer, H = model.config.n_head, dh = model.config.d_head, N = L * H;
  const hs::MatrixRM write = hs::head_W_O(model.weights.layers[0], 0, dh).transpose();  // [d, dh]
  for (int l = 3; l < L; ++l) model.weights.layers[l].W_K = write.replicate(1, H);
  auto comp = hs::composition_scores(model, hs::WeightVariant::raw);
  REQUIRE(comp.ok());
  auto sig = hs::composition_significance(*comp, 0.05);
  REQUIRE(sig.ok());
  REQUIRE(sig->k.n_flagged > 0);
  int planted_flagged = 0;
  for (int j = 3 * H; j < N; ++j) {
    const double s = comp->k[j], p = sig->k.p[j];  // row 0: L0H0
    INFO("L0H0 -> head " << j << " K-composition " << s << ", p " << p);
    CHECK(p == Approx(1.0 / (sig->k.null.n + 1)));
    planted_flagged += s >= sig->k.threshold;
  }
  CHECK(planted_flagged == 3 * H);
  // Every other flag reads through a planted key: a head whose output
  // happens to overlap L0H0's composes with all 36 readers (L1H1 here).
  int elsewhere = 0;
  for (int i = 0; i < N; ++i) {
    for (int j = 0; j < 3 * H; ++j) elsewhere += i / H < j / H && comp->k[i * N + j] >= sig->k.threshold;
  }
  CHECK(elsewhere == 0);
  CHECK(sig->q.n_flagged + sig->v.n_flagged <= (sig->q.n_tests + sig->v.n_tests) / 100);
}
