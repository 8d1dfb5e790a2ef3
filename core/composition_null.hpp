// Which composition scores stand out: each pair's empirical p-value against
// the scores of pairs that cannot compose, and the pairs flagged at a stated
// Benjamini-Hochberg false-discovery level.
//
// Why this null. Real heads share the residual stream's anisotropy, so a
// real pair beats any null of random matrices, whether i.i.d. or randomly
// oriented (on GPT-2 small, 68 % of the Q- and K-composition pairs pass the
// i.i.d. baseline + 2 sd). The null here is the same score over the pairs
// of the same model that cannot compose: l1 > l2 (a head cannot read what a
// later one writes) and l1 == l2 (heads of one layer read the stream side
// by side), self-pairs excluded (CompositionScores::null_*). They keep every
// head's spectrum and the shared anisotropy. The i.i.d. baseline
// (composition_baseline) stays only as a reference level, not a test.
//
// For each kind (Q, K, V) on its own, over the m pairs l1 < l2:
//   p(s) = (1 + #{null >= s}) / (N + 1)            N = the null's pairs
//   flagged: Benjamini-Hochberg at level q: the largest k with
//            p_(k) <= k q / m, and every pair with p <= p_(k).
// The null resolves p down to 1 / (N + 1). Flags are given only when
// 1 / (N + 1) <= q^2 (N >= 399 at q = 0.05): with fewer null pairs a single
// flag needs more than a share q of all pairs to beat every null pair, and
// the null cannot tell; then `resolvable` is false, nothing is flagged, and
// a caller ranks by score instead (the built-in model's 2 layers).
//
// Reversed pairs are not exchangeable with forward ones in every respect
// (a layer gap runs the other way; same-layer pairs have none), so the
// null is also summarised per gap l1 - l2 (0 = same layer): the share of
// each gap's pairs above the pooled null's 95th percentile is ~0.05 where
// the gaps agree.
#pragma once

#include <vector>

#include "geometry.hpp"
#include "result.hpp"

namespace hs {

// Quantiles as numpy's default (linear interpolation between order
// statistics): sorted[(n - 1) f]. `sorted` ascending, not empty.
double quantile_sorted(const std::vector<double>& sorted, double f);

// p-value of each score against the null (any order):
// (1 + #{null >= s}) / (null.size() + 1).
std::vector<double> empirical_p_values(const std::vector<double>& scores, std::vector<double> null);

// Benjamini-Hochberg at level q: which of the p-values are discoveries.
std::vector<bool> benjamini_hochberg(const std::vector<double>& p, double q);

struct NullSummary {
  int n = 0;
  double mean = 0, q95 = 0, q99 = 0, q999 = 0;
};

// The null's pairs with l1 - l2 == gap (0: same layer).
struct NullGap {
  int gap = 0, n = 0;
  double mean = 0, q95 = 0;
  double above_q95 = 0;  // share of these pairs above the pooled null's q95
};

struct CompositionTest {
  NullSummary null;
  std::vector<NullGap> gaps;  // gap 0 .. L - 1
  int n_tests = 0;            // m: pairs l1 < l2
  std::vector<double> p;      // [L, H, L, H]: p for l1 < l2, NaN elsewhere
  bool resolvable = false;    // 1 / (N + 1) <= q^2
  int n_flagged = 0;
  double threshold = 0;       // resolvable and n_flagged > 0: the smallest flagged score
};

struct CompositionSignificance {
  double fdr = 0.05;  // q
  CompositionTest q, k, v;
};

// A model of one layer has no pairs to test (n_tests 0, not resolvable);
// one head has no null either. Error: fdr outside (0, 1), arrays that are
// not [L, H, L, H].
Result<CompositionSignificance> composition_significance(const CompositionScores& scores, double fdr = 0.05);

}  // namespace hs
