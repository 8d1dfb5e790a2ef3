#include "composition_null.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>

namespace hs {

double quantile_sorted(const std::vector<double>& sorted, double f) {
  const double h = (static_cast<double>(sorted.size()) - 1) * f;
  const std::size_t lo = static_cast<std::size_t>(std::floor(h));
  const std::size_t hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (h - static_cast<double>(lo)) * (sorted[hi] - sorted[lo]);
}

std::vector<double> empirical_p_values(const std::vector<double>& scores, std::vector<double> null) {
  std::sort(null.begin(), null.end());
  const double denominator = static_cast<double>(null.size()) + 1;
  std::vector<double> p(scores.size());
  for (std::size_t i = 0; i < scores.size(); ++i) {
    const auto at_least = null.end() - std::lower_bound(null.begin(), null.end(), scores[i]);
    p[i] = (1.0 + static_cast<double>(at_least)) / denominator;
  }
  return p;
}

std::vector<bool> benjamini_hochberg(const std::vector<double>& p, double q) {
  const std::size_t m = p.size();
  std::vector<double> sorted(p);
  std::sort(sorted.begin(), sorted.end());
  // The largest k (1-based) with p_(k) <= k q / m; every p <= p_(k) is a discovery.
  double cut = -1;
  for (std::size_t k = m; k >= 1; --k) {
    if (sorted[k - 1] <= static_cast<double>(k) * q / static_cast<double>(m)) {
      cut = sorted[k - 1];
      break;
    }
  }
  std::vector<bool> out(m);
  for (std::size_t i = 0; i < m; ++i) out[i] = p[i] <= cut;
  return out;
}

namespace {

NullSummary summarize(const std::vector<double>& sorted) {
  NullSummary s;
  s.n = static_cast<int>(sorted.size());
  if (sorted.empty()) return s;
  s.mean = std::accumulate(sorted.begin(), sorted.end(), 0.0) / static_cast<double>(sorted.size());
  s.q95 = quantile_sorted(sorted, 0.95);
  s.q99 = quantile_sorted(sorted, 0.99);
  s.q999 = quantile_sorted(sorted, 0.999);
  return s;
}

CompositionTest test_kind(const std::vector<double>& scores, const std::vector<double>& null_scores, int L, int H,
                          double fdr) {
  const int N = L * H;
  CompositionTest out;
  std::vector<double> forward, null;
  std::vector<std::vector<double>> by_gap(L);
  for (int i = 0; i < N; ++i) {
    for (int j = 0; j < N; ++j) {
      const std::size_t at = static_cast<std::size_t>(i) * N + j;
      const int l1 = i / H, l2 = j / H;
      if (l1 < l2) {
        forward.push_back(scores[at]);
      } else if (i != j) {
        null.push_back(null_scores[at]);
        by_gap[l1 - l2].push_back(null_scores[at]);
      }
    }
  }
  std::sort(null.begin(), null.end());
  out.null = summarize(null);
  for (int g = 0; g < L; ++g) {
    std::vector<double>& x = by_gap[g];
    std::sort(x.begin(), x.end());
    const NullSummary s = summarize(x);
    NullGap gap{g, s.n, s.mean, s.q95, 0.0};
    if (!x.empty()) {
      const auto above = x.end() - std::upper_bound(x.begin(), x.end(), out.null.q95);
      gap.above_q95 = static_cast<double>(above) / static_cast<double>(x.size());
    }
    out.gaps.push_back(gap);
  }
  out.n_tests = static_cast<int>(forward.size());
  const std::vector<double> p = empirical_p_values(forward, null);
  out.p.assign(static_cast<std::size_t>(N) * N, std::numeric_limits<double>::quiet_NaN());
  out.resolvable = (static_cast<double>(null.size()) + 1) * fdr * fdr >= 1.0 && !forward.empty();
  const std::vector<bool> flagged = out.resolvable ? benjamini_hochberg(p, fdr) : std::vector<bool>(p.size());
  double threshold = std::numeric_limits<double>::infinity();
  std::size_t t = 0;
  for (int i = 0; i < N; ++i) {
    for (int j = 0; j < N; ++j) {
      if (i / H >= j / H) continue;
      const std::size_t at = static_cast<std::size_t>(i) * N + j;
      out.p[at] = p[t];
      if (flagged[t]) {
        ++out.n_flagged;
        threshold = std::min(threshold, scores[at]);
      }
      ++t;
    }
  }
  out.threshold = out.n_flagged > 0 ? threshold : 0;
  return out;
}

}  // namespace

Result<CompositionSignificance> composition_significance(const CompositionScores& scores, double fdr) {
  if (!(fdr > 0 && fdr < 1)) return make_error("composition_significance: fdr must be in (0, 1), got " + std::to_string(fdr));
  const int L = scores.n_layer, H = scores.n_head;
  const std::size_t total = static_cast<std::size_t>(L) * H * L * H;
  for (const auto* a : {&scores.q, &scores.k, &scores.v, &scores.null_q, &scores.null_k, &scores.null_v}) {
    if (a->size() != total) return make_error("composition_significance: scores are not [L, H, L, H] with their null");
  }
  CompositionSignificance out;
  out.fdr = fdr;
  out.q = test_kind(scores.q, scores.null_q, L, H, fdr);
  out.k = test_kind(scores.k, scores.null_k, L, H, fdr);
  out.v = test_kind(scores.v, scores.null_v, L, H, fdr);
  return out;
}

}  // namespace hs
