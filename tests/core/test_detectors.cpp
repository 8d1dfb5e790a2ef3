// Head detectors: TransformerLens's detect_head on hand-built patterns whose
// scores are derived by hand, and on the fixture models against an
// independent re-implementation of TL's formulas written here as TL writes
// them (whole-matrix tril / roll / fill_diagonal); against TL's own code
// re-typed in python (tests/reference/behavior_reference.py) when the build
// defines HEADSCOPE_BEHAVIOR_REF; then pattern statistics, Kovaleva classes,
// role labels and the induction test.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdlib>

#include "detectors.hpp"
#include "fixture_model.hpp"
#include "forward.hpp"

using namespace hs;
using namespace hs::test;

namespace {

using Mat = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

double harmonic(int n) {
  double s = 0;
  for (int k = 1; k <= n; ++k) s += 1.0 / k;
  return s;
}

// One head's pattern [T, T] as the flat [1, 1, T, T] the API takes.
std::vector<float> flat(const Mat& A) {
  std::vector<float> v(A.size());
  for (Eigen::Index i = 0; i < A.rows(); ++i)
    for (Eigen::Index j = 0; j < A.cols(); ++j) v[i * A.cols() + j] = static_cast<float>(A(i, j));
  return v;
}

Mat uniform_causal(int T) {
  Mat A = Mat::Zero(T, T);
  for (int i = 0; i < T; ++i) A.row(i).head(i + 1).setConstant(1.0 / (i + 1));
  return A;
}

Mat previous_token_head(int T) {  // row 0 can only attend to itself
  Mat A = Mat::Zero(T, T);
  A(0, 0) = 1;
  for (int i = 1; i < T; ++i) A(i, i - 1) = 1;
  return A;
}

double score1(const Mat& A, const std::vector<int>& ids, DetectionPattern kind, DetectOptions o = {}) {
  const int T = static_cast<int>(A.rows());
  auto s = must(detect_head(flat(A), 1, 1, ids, kind, o));
  REQUIRE(s.size() == 1);
  (void)T;
  return s[0];
}

// ---- TL's formulas, whole-matrix, written from head_detector.py ------------

Mat tril(Mat M) { return M.triangularView<Eigen::Lower>(); }

Mat ref_detection(DetectionPattern kind, const std::vector<int>& ids) {
  const int T = static_cast<int>(ids.size());
  Mat prev = Mat::Zero(T, T);
  prev.bottomLeftCorner(T - 1, T - 1) = Mat::Identity(T - 1, T - 1);  // detection_pattern[1:, :-1] = eye
  Mat eq(T, T);
  for (int i = 0; i < T; ++i)
    for (int j = 0; j < T; ++j) eq(i, j) = ids[i] == ids[j];
  eq.diagonal().setZero();  // np.fill_diagonal(eq_mask, 0)
  const Mat dup = tril(eq);
  Mat rolled(T, T);  // torch.roll(dup, shifts=1, dims=1)
  for (int j = 0; j < T; ++j) rolled.col(j) = dup.col((j - 1 + T) % T);
  rolled.col(0).setZero();
  switch (kind) {
    case DetectionPattern::previous_token: return tril(prev);
    case DetectionPattern::duplicate_token: return dup;
    case DetectionPattern::induction: return tril(rolled);
  }
  return prev;
}

double ref_score(Mat A, const Mat& D, const DetectOptions& o) {
  const int T = static_cast<int>(A.rows());
  if (o.error_measure == ErrorMeasure::mul) {
    if (o.exclude_bos) A.col(0).setZero();
    if (o.exclude_current_token) A.diagonal().setZero();
    return A.cwiseProduct(D).sum() / A.sum();
  }
  Mat diff = (A - D).cwiseAbs();
  if (o.exclude_bos) diff.col(0).setZero();
  if (o.exclude_current_token) diff.diagonal().setZero();
  return 1 - std::round(diff.mean() * T * 1000) / 1000;
}

std::vector<DetectOptions> all_options() {
  std::vector<DetectOptions> out;
  for (ErrorMeasure m : {ErrorMeasure::mul, ErrorMeasure::abs})
    for (bool bos : {false, true})
      for (bool cur : {false, true}) out.push_back(DetectOptions{bos, cur, m});
  return out;
}

std::string describe(DetectionPattern kind, const DetectOptions& o) {
  return std::string(detection_pattern_name(kind)) + " " + error_measure_name(o.error_measure) +
         (o.exclude_bos ? " exclude_bos" : "") + (o.exclude_current_token ? " exclude_current_token" : "");
}

// Every head, kind and option against the whole-matrix reference. The abs
// measure rounds to 3 decimals: a value on a rounding boundary may land 1e-3
// apart (std::round vs Python's exact-decimal round).
void check_against_reference(const std::string& what, const std::vector<float>& patterns, int L, int H,
                             const std::vector<int>& ids) {
  const int T = static_cast<int>(ids.size());
  double worst_mul = 0, worst_abs = 0;
  for (DetectionPattern kind :
       {DetectionPattern::previous_token, DetectionPattern::duplicate_token, DetectionPattern::induction}) {
    const Mat D = ref_detection(kind, ids);
    const std::vector<float> Dg = detection_pattern(kind, ids);
    CHECK(Dg == flat(D));
    for (const DetectOptions& o : all_options()) {
      const std::vector<double> got = must(detect_head(patterns, L, H, ids, kind, o));
      for (int hd = 0; hd < L * H; ++hd) {
        Mat A(T, T);
        for (int i = 0; i < T; ++i)
          for (int j = 0; j < T; ++j) A(i, j) = patterns[(static_cast<std::size_t>(hd) * T + i) * T + j];
        const double want = ref_score(A, D, o);
        const double err = std::fabs(got[hd] - want);
        INFO(what << " " << describe(kind, o) << " head " << hd << ": got " << got[hd] << ", expected " << want);
        if (o.error_measure == ErrorMeasure::mul) {
          CHECK(err <= 1e-12);
          worst_mul = std::max(worst_mul, err);
        } else {
          CHECK(err <= 1e-3 + 1e-9);
          worst_abs = std::max(worst_abs, err);
        }
      }
    }
  }
  if (std::getenv("HEADSCOPE_REPORT"))
    WARN(what << ": detect_head vs whole-matrix reference: mul max |diff| = " << worst_mul << ", abs " << worst_abs);
}

}  // namespace

// ---------------------------------------------------------------------------
// Hand-built patterns

TEST_CASE("detectors: detection patterns are TL's, with the induction diagonal edge case", "[detectors]") {
  const std::vector<int> ids = {5, 7, 9, 5, 7, 9, 9};
  const int T = 7;
  auto D = [&](DetectionPattern k) { return detection_pattern(k, ids); };
  auto at = [&](const std::vector<float>& M, int i, int j) { return M[i * T + j]; };
  const auto dup = D(DetectionPattern::duplicate_token);
  const auto ind = D(DetectionPattern::induction);
  const auto prev = D(DetectionPattern::previous_token);
  // Duplicates: (3,0) (4,1) (5,2) (6,2) (6,5).
  int n_dup = 0, n_ind = 0, n_prev = 0;
  for (float v : dup) n_dup += v == 1.f;
  for (float v : ind) n_ind += v == 1.f;
  for (float v : prev) n_prev += v == 1.f;
  CHECK(n_dup == 5);
  CHECK(at(dup, 3, 0) == 1.f);
  CHECK(at(dup, 6, 2) == 1.f);
  CHECK(at(dup, 6, 5) == 1.f);
  CHECK(at(dup, 0, 0) == 0.f);
  // Induction: one to the right of each duplicate, (6,6) included since ids[6] == ids[5].
  CHECK(n_ind == 5);
  CHECK(at(ind, 3, 1) == 1.f);
  CHECK(at(ind, 4, 2) == 1.f);
  CHECK(at(ind, 5, 3) == 1.f);
  CHECK(at(ind, 6, 3) == 1.f);
  CHECK(at(ind, 6, 6) == 1.f);
  CHECK(n_prev == T - 1);
  for (int i = 1; i < T; ++i) CHECK(at(prev, i, i - 1) == 1.f);
}

TEST_CASE("detectors: a perfect previous-token head scores 1 once row 0's forced self-attention is excluded",
          "[detectors]") {
  const int T = 10;
  const std::vector<int> ids = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  const Mat A = previous_token_head(T);
  // Row 0 must attend to itself, which D does not cover: (T-1)/T.
  CHECK(score1(A, ids, DetectionPattern::previous_token) == Approx(double(T - 1) / T).epsilon(1e-12));
  CHECK(score1(A, ids, DetectionPattern::previous_token, {false, true}) == 1.0);
  CHECK(score1(A, ids, DetectionPattern::previous_token, {true, false}) == 1.0);  // A[0,0], A[1,0] both out
  // abs: |A - D| is 1 at [0, 0] only: 1 - round(1/T^2 * T, 3).
  CHECK(score1(A, ids, DetectionPattern::previous_token, {false, false, ErrorMeasure::abs}) == Approx(1 - 0.1));
  CHECK(score1(A, ids, DetectionPattern::previous_token, {false, true, ErrorMeasure::abs}) == 1.0);
  // No repeats: nothing to duplicate or induct.
  CHECK(score1(A, ids, DetectionPattern::duplicate_token) == 0.0);
  CHECK(score1(A, ids, DetectionPattern::induction) == 0.0);
}

TEST_CASE("detectors: a uniform causal pattern's scores are harmonic numbers", "[detectors]") {
  for (int T : {2, 7, 30}) {
    std::vector<int> ids(T);
    for (int i = 0; i < T; ++i) ids[i] = i;
    const Mat A = uniform_causal(T);
    const double HT = harmonic(T);
    INFO("T = " << T);
    // sum_i>=1 1/(i+1) over total mass T.
    CHECK(score1(A, ids, DetectionPattern::previous_token) == Approx((HT - 1) / T).epsilon(1e-6));
    // Excluding the diagonal: the mass left is T - H_T.
    CHECK(score1(A, ids, DetectionPattern::previous_token, {false, true}) == Approx((HT - 1) / (T - HT)).epsilon(1e-6));
    // abs: sum |A - D| = 1 (row 0) + sum_{i>=1} 2i/(i+1) = 2T - 2H_T + 1.
    const double abs_want = 1 - std::round((2 * T - 2 * HT + 1) / T * 1000) / 1000;
    CHECK(score1(A, ids, DetectionPattern::previous_token, {false, false, ErrorMeasure::abs}) == Approx(abs_want));
  }
}

TEST_CASE("detectors: an ideal induction head on [BOS] R R scores 1 without BOS, S/T with it", "[detectors]") {
  const int S = 6, T = 2 * S + 1;
  std::vector<int> ids = {0};
  for (int pass = 0; pass < 2; ++pass)
    for (int i = 0; i < S; ++i) ids.push_back(10 + i);
  Mat A = Mat::Zero(T, T);
  for (int i = 0; i < T; ++i) {
    if (i >= S + 1) A(i, i - S + 1) = 1;  // the token after the earlier copy
    else A(i, 0) = 1;                     // nothing to copy yet: BOS
  }
  CHECK(score1(A, ids, DetectionPattern::induction) == Approx(double(S) / T).epsilon(1e-12));
  CHECK(score1(A, ids, DetectionPattern::induction, {true, false}) == 1.0);
  // The same head is no duplicate-token head: it looks one past the duplicate.
  CHECK(score1(A, ids, DetectionPattern::duplicate_token, {true, false}) == 0.0);
  // Excluding everything a head attends to leaves 0/0: NaN, as TL.
  CHECK(std::isnan(score1(Mat(Mat::Identity(T, T)), ids, DetectionPattern::induction, {false, true})));
}

TEST_CASE("detectors: detect_head rejects what TL rejects", "[detectors]") {
  auto one = detect_head(std::vector<float>{1.f}, 1, 1, std::vector<int>{3}, DetectionPattern::previous_token);
  REQUIRE_FALSE(one.ok());
  CHECK_THAT(one.error().message, Catch::Contains("at least 2 tokens"));
  auto size = detect_head(std::vector<float>(7), 1, 1, std::vector<int>{1, 2}, DetectionPattern::previous_token);
  REQUIRE_FALSE(size.ok());
  CHECK_THAT(size.error().message, Catch::Contains("expected L*H*T*T = 4"));
  auto upper = detect_head(std::vector<float>(4), 1, 1, 2, std::vector<float>{0, 1, 0, 0});
  REQUIRE_FALSE(upper.ok());
  CHECK_THAT(upper.error().message, Catch::Contains("lower triangular"));
}

// ---------------------------------------------------------------------------
// The fixture models

TEST_CASE("detectors: detect_head on the fixture models matches TL's formulas", "[detectors]") {
  for (const char* name : {"gpt2", "gpt_neox", "llama", "gpt_neo", "opt", "bert"}) {
    const Model model = must(load_fixture_model(name));
    // The fixture's ids, then a repeat of its first 8 and a doubled token, so
    // that duplicate and induction patterns are not empty.
    std::vector<int> ids = must(load_fixture_ids(name));
    const std::vector<int> head(ids.begin(), ids.begin() + 8);
    ids.insert(ids.end(), head.begin(), head.end());
    ids.push_back(ids.back());
    RunOptions opt;
    opt.want_hidden = opt.want_logits = false;
    const RunResult run = must(run_model(model, ids, opt));
    if (std::string(name) == "bert") {
      // TL's abs measure asserts a causal pattern; mul is defined anyway.
      for (DetectionPattern kind : {DetectionPattern::previous_token, DetectionPattern::induction}) {
        const std::vector<double> got = must(detect_head(run.patterns, run.n_layer, run.n_head, ids, kind));
        const Mat D = ref_detection(kind, ids);
        const int T = run.n_tokens;
        for (int hd = 0; hd < run.n_layer * run.n_head; ++hd) {
          Mat A(T, T);
          for (int i = 0; i < T; ++i)
            for (int j = 0; j < T; ++j) A(i, j) = run.patterns[(static_cast<std::size_t>(hd) * T + i) * T + j];
          CHECK(std::fabs(got[hd] - ref_score(A, D, {})) <= 1e-12);
        }
      }
      continue;
    }
    check_against_reference(name, run.patterns, run.n_layer, run.n_head, ids);
  }
}

#ifdef HEADSCOPE_BEHAVIOR_REF
TEST_CASE("detectors: detect_head matches TransformerLens's scoring code (python reference)", "[detectors]") {
  // Tolerances: TL sums in float32 (mul: ~1e-6 relative); abs rounds to 3
  // decimals, so a float32 mean on a rounding boundary can land 1e-3 apart.
  for (const char* c : {"hf_gpt2", "hf_gpt_neox", "hf_llama", "hf_gpt_neo", "hf_opt", "synthetic"}) {
    const std::string dir = std::string(HEADSCOPE_BEHAVIOR_REF) + "/" + c;
    auto pat = must(npy_load(dir + "/patterns.npy"));
    auto idn = must(npy_load(dir + "/ids.npy"));
    REQUIRE(pat.shape.size() == 4);
    const int L = static_cast<int>(pat.shape[0]), H = static_cast<int>(pat.shape[1]);
    const std::vector<float> patterns(pat.data.begin(), pat.data.end());
    std::vector<int> ids;
    for (double v : idn.data) ids.push_back(static_cast<int>(v));
    double worst_mul = 0, worst_abs = 0;
    int abs_flips = 0;
    for (auto [kind, kname] : {std::pair{DetectionPattern::previous_token, "previous_token"},
                               std::pair{DetectionPattern::duplicate_token, "duplicate_token"},
                               std::pair{DetectionPattern::induction, "induction"}})
      for (const DetectOptions& o : all_options()) {
        const std::string file = dir + "/score_" + kname + "_" + error_measure_name(o.error_measure) + "_" +
                                 (o.exclude_bos ? "1" : "0") + "_" + (o.exclude_current_token ? "1" : "0") + ".npy";
        const auto want = must(npy_load(file));
        const auto got = must(detect_head(patterns, L, H, ids, kind, o));
        const bool mul = o.error_measure == ErrorMeasure::mul;
        const Mismatch m = compare_arrays(got, want.data, mul ? 1e-6 : 1e-3 + 1e-9);
        INFO(c << " " << describe(kind, o) << ": " << m.describe({L, H}));
        CHECK(m.max_abs <= (mul ? 1e-6 : 1e-3 + 1e-9));
        (mul ? worst_mul : worst_abs) = std::max(mul ? worst_mul : worst_abs, m.max_abs);
        if (!mul) abs_flips += static_cast<int>(m.n_over);
      }
    if (std::getenv("HEADSCOPE_REPORT"))
      WARN(c << " vs TL python: mul max |diff| = " << worst_mul << ", abs max |diff| = " << worst_abs);
    (void)abs_flips;
  }
}
#endif

// ---------------------------------------------------------------------------
// Pattern statistics, classes, roles

TEST_CASE("detectors: entropy normalised by ln of the keys each row may attend", "[detectors][stats]") {
  const int T = 12;
  // Uniform over what a row can see: 1 whatever the length, where the raw
  // entropy grows with it (mean ln(i + 1)).
  const PatternStats causal = must(pattern_stats(flat(uniform_causal(T)), 1, 1, T));
  CHECK(causal.entropy_normalized[0] == Approx(1.0).epsilon(1e-6));
  const PatternStats longer = must(pattern_stats(flat(uniform_causal(2 * T)), 1, 1, 2 * T));
  CHECK(longer.entropy_normalized[0] == Approx(1.0).epsilon(1e-6));
  CHECK(longer.entropy[0] > causal.entropy[0] + 0.5);
  // All on one key: 0 (row 0, with one key, is left out).
  CHECK(must(pattern_stats(flat(previous_token_head(T)), 1, 1, T)).entropy_normalized[0] == Approx(0.0).margin(1e-12));
  // Bidirectional (mass above the diagonal): every row sees T keys.
  const Mat all = Mat::Constant(T, T, 1.0 / T);
  CHECK(must(pattern_stats(flat(all), 1, 1, T)).entropy_normalized[0] == Approx(1.0).epsilon(1e-6));
  // A local window of w keys: uniform over the window is 1 once the layer's
  // window is known; read as global, the same head looks focused.
  const int w = 3;
  Mat local = Mat::Zero(T, T);
  for (int i = 0; i < T; ++i) {
    const int n = std::min(i + 1, w);
    for (int j = i - n + 1; j <= i; ++j) local(i, j) = 1.0 / n;
  }
  CHECK(must(pattern_stats(flat(local), 1, 1, T, {}, {}, {w})).entropy_normalized[0] == Approx(1.0).epsilon(1e-6));
  CHECK(must(pattern_stats(flat(local), 1, 1, T)).entropy_normalized[0] < 0.7);
  CHECK_FALSE(pattern_stats(flat(local), 1, 1, T, {}, {}, {w, w}).ok());
}

TEST_CASE("detectors: pattern statistics of a uniform causal head in closed form", "[detectors][stats]") {
  const int T = 9;
  const Mat A = uniform_causal(T);
  const PatternStats s = must(pattern_stats(flat(A), 1, 1, T));
  const double HT = harmonic(T);
  CHECK(s.first_token_mass[0] == Approx(HT / T));
  CHECK(s.current_token_mass[0] == Approx(HT / T));
  CHECK(s.previous_token_mass[0] == Approx((HT - 1) / (T - 1)));
  double ent = 0;
  for (int i = 0; i < T; ++i) ent += std::log(i + 1.0);
  CHECK(s.entropy[0] == Approx(ent / T));
  // Offset delta collects 1/(i+1) for i >= delta: (H_T - H_delta) / T.
  for (int delta = 0; delta < T; ++delta)
    CHECK(s.offset_mass[delta + T - 1] == Approx((HT - harmonic(delta)) / T));
  for (int delta = 1; delta < T; ++delta) CHECK(s.offset_mass[T - 1 - delta] == 0.0);
  CHECK(s.dominant_offset[0] == 0);
  CHECK(s.dominant_offset_share[0] == Approx(HT / T));
  // Kovaleva scores are excesses over the uniform pattern: all 0 here,
  // although the raw top-2 column mass (2 H_T - 1) / T is above one half.
  CHECK((2 * HT - 1) / T > 0.5);
  CHECK(s.vertical[0] == Approx(0.0).margin(1e-12));
  CHECK(s.diagonal[0] == Approx(0.0).margin(1e-12));
  CHECK(s.block[0] == 0.0);  // no segments
  CHECK(s.pattern_class[0] == PatternClass::heterogeneous);
  // With two segments a uniform head is exactly as spread as the baseline.
  std::vector<int> seg(T, 0);
  for (int i = 5; i < T; ++i) seg[i] = 1;
  const PatternStats s2 = must(pattern_stats(flat(A), 1, 1, T, seg));
  CHECK(s2.block[0] == Approx(0.0).margin(1e-12));
}

TEST_CASE("detectors: Kovaleva classes of vertical, diagonal and block heads", "[detectors][stats]") {
  const int T = 12;
  Mat bos = Mat::Zero(T, T);
  bos.col(0).setOnes();
  const Mat prev = previous_token_head(T);
  // Block: two sentences, each query attends uniformly to its own sentence's earlier tokens at distance >= 2.
  std::vector<int> seg(T, 0);
  for (int i = 6; i < T; ++i) seg[i] = 1;
  Mat block = Mat::Zero(T, T);
  for (int i = 0; i < T; ++i) {
    std::vector<int> keys;
    for (int j = 0; j <= i; ++j)
      if (seg[j] == seg[i] && i - j >= 2) keys.push_back(j);
    if (keys.empty()) keys.push_back(i);
    for (int j : keys) block(i, j) = 1.0 / keys.size();
  }
  std::vector<float> all = flat(bos);
  for (const Mat* M : {&prev, static_cast<const Mat*>(&block)}) {
    const auto f = flat(*M);
    all.insert(all.end(), f.begin(), f.end());
  }
  const PatternStats s = must(pattern_stats(all, 1, 3, T, seg));
  CHECK(s.vertical[0] == 1.0);
  CHECK(s.pattern_class[0] == PatternClass::vertical);
  CHECK(s.diagonal[1] == 1.0);
  CHECK(s.dominant_offset[1] == 1);
  CHECK(s.dominant_offset_share[1] == Approx(double(T - 1) / T));
  CHECK(s.pattern_class[1] == PatternClass::diagonal);
  CHECK(s.block[2] > 0.5);
  CHECK(s.pattern_class[2] == PatternClass::block);
  CHECK(std::string(pattern_class_name(s.pattern_class[2])) == "block");
}

TEST_CASE("detectors: one role per head with its confidence, the scores beside it", "[detectors][roles]") {
  const int S = 6, T = 2 * S + 1;
  std::vector<int> ids = {0};
  for (int pass = 0; pass < 2; ++pass)
    for (int i = 0; i < S; ++i) ids.push_back(10 + i);
  Mat bos = Mat::Zero(T, T);
  bos.col(0).setOnes();
  Mat induction = Mat::Zero(T, T);
  for (int i = 0; i < T; ++i) induction(i, i >= S + 1 ? i - S + 1 : 0) = 1;
  Mat offset3 = Mat::Zero(T, T);
  for (int i = 0; i < T; ++i) offset3(i, std::max(0, i - 3)) = 1;
  std::vector<float> all;
  for (const Mat& M : {previous_token_head(T), bos, induction, offset3, uniform_causal(T)}) {
    const auto f = flat(M);
    all.insert(all.end(), f.begin(), f.end());
  }
  const HeadBehavior b = must(head_behavior(all, 1, 5, ids));
  CHECK(b.role[0] == HeadRole::previous_token);
  CHECK(b.role_confidence[0] == Approx(b.previous_token_score[0]));
  CHECK(b.role[1] == HeadRole::first_token);
  CHECK(b.role_confidence[1] == Approx(1.0));
  // The induction head attends BOS for the first half: the first-token role
  // (7/13) beats its text induction score (6/13).
  CHECK(b.role[2] == HeadRole::first_token);
  CHECK(b.role_scores[2 * kRoleCount + int(HeadRole::induction)] == Approx(double(S) / T));
  CHECK(b.role[3] == HeadRole::positional);
  CHECK(b.stats.dominant_offset[3] == 3);
  CHECK(b.role[4] == HeadRole::other);
  double top = 0;
  for (int k = 0; k < kRoleCount; ++k) top = std::max(top, b.role_scores[4 * kRoleCount + k]);
  CHECK(b.role_confidence[4] == Approx(1 - top));
  // With the induction test's score the induction head is labelled so.
  BehaviorOptions o;
  o.probe_induction = {0.0, 0.0, 0.9, 0.0, 0.0};
  const HeadBehavior p = must(head_behavior(all, 1, 5, ids, o));
  CHECK(p.roles_use_probe);
  CHECK(p.role[2] == HeadRole::induction);
  CHECK(p.role_confidence[2] == 0.9);
  CHECK(p.role_margin[2] == Approx(0.9 - double(S + 1) / T));
}

TEST_CASE("detectors: the induction test's tokens, scores and losses", "[detectors][induction]") {
  const Model model = must(load_fixture_model("gpt2"));
  InductionTestOptions o;
  o.seq_len = 20;
  o.batch = 3;
  o.seed = 11;
  const InductionTest t = must(induction_test(model, o));
  const InductionTest again = must(induction_test(model, o));
  CHECK(t.tokens == again.tokens);
  CHECK(t.score == again.score);
  const int S = o.seq_len, T = 2 * S + 1;
  REQUIRE(t.tokens.size() == static_cast<std::size_t>(o.batch * T));
  CHECK(t.bos_token == 127);  // the fixture config's bos_token_id
  for (int b = 0; b < o.batch; ++b) {
    CHECK(t.tokens[b * T] == 127);
    for (int i = 0; i < S; ++i) CHECK(t.tokens[b * T + 1 + i] == t.tokens[b * T + 1 + S + i]);
  }
  CHECK(t.tokens[1] != t.tokens[T + 1]);  // the batch differs
  // Scores and losses recomputed from run_model, averaging Eigen's diagonal(1 - S).
  std::vector<double> score(8, 0), strict(8, 0), loss(2 * S, 0);
  for (int b = 0; b < o.batch; ++b) {
    const std::vector<int> ids(t.tokens.begin() + b * T, t.tokens.begin() + (b + 1) * T);
    const RunResult run = must(run_model(model, ids));
    for (int hd = 0; hd < 8; ++hd) {
      const Eigen::Map<const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> A(
          run.patterns.data() + static_cast<std::size_t>(hd) * T * T, T, T);
      const auto diag = A.diagonal(1 - S);
      REQUIRE(diag.size() == S + 2);
      score[hd] += diag.cast<double>().mean() / o.batch;
      strict[hd] += diag.tail(S).cast<double>().mean() / o.batch;
    }
    for (int i = 0; i < 2 * S; ++i) loss[i] += double(run.token_loss[i]) / o.batch;
  }
  for (int hd = 0; hd < 8; ++hd) {
    CHECK(t.score[hd] == Approx(score[hd]).epsilon(1e-9));
    CHECK(t.score_strict[hd] == Approx(strict[hd]).epsilon(1e-9));
  }
  double first = 0, second = 0;
  for (int i = 0; i < S; ++i) first += loss[i] / S, second += loss[S + i] / S;
  CHECK(t.loss_first_half == Approx(first).epsilon(1e-9));
  CHECK(t.loss_second_half == Approx(second).epsilon(1e-9));

  // Errors: too long for the context; no BOS.
  o.seq_len = 40;
  auto longer = induction_test(model, o);
  REQUIRE_FALSE(longer.ok());
  CHECK_THAT(longer.error().message, Catch::Contains("seq_len <= 31"));
  const Model bert = must(load_fixture_model("bert"));
  o.seq_len = 10;
  auto no_bos = induction_test(bert, o);
  REQUIRE_FALSE(no_bos.ok());
  CHECK_THAT(no_bos.error().message, Catch::Contains("bos_token"));
  o.bos_token = 2;
  const InductionTest tb = must(induction_test(bert, o));
  CHECK(std::isnan(tb.loss_first_half));
  CHECK(tb.token_loss.empty());
}
