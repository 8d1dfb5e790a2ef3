// Role detectors (detectors.hpp). The TL scores follow
// transformer_lens/head_detector.py line by line; the rest is documented in
// the header.
#include "detectors.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string>

#include "parallel.hpp"
#include "rng.hpp"

namespace hs {

const char* detection_pattern_name(DetectionPattern kind) {
  switch (kind) {
    case DetectionPattern::previous_token: return "previous_token_head";
    case DetectionPattern::duplicate_token: return "duplicate_token_head";
    case DetectionPattern::induction: return "induction_head";
  }
  return "?";
}

const char* error_measure_name(ErrorMeasure measure) { return measure == ErrorMeasure::mul ? "mul" : "abs"; }

const char* pattern_class_name(PatternClass cls) {
  switch (cls) {
    case PatternClass::vertical: return "vertical";
    case PatternClass::diagonal: return "diagonal";
    case PatternClass::block: return "block";
    case PatternClass::heterogeneous: return "heterogeneous";
  }
  return "?";
}

const char* head_role_name(HeadRole role) {
  switch (role) {
    case HeadRole::induction: return "induction";
    case HeadRole::duplicate_token: return "duplicate_token";
    case HeadRole::previous_token: return "previous_token";
    case HeadRole::positional: return "positional";
    case HeadRole::current_token: return "current_token";
    case HeadRole::first_token: return "first_token";
    case HeadRole::other: return "other";
  }
  return "?";
}

// ---------------------------------------------------------------------------
// TL detect_head

std::vector<float> detection_pattern(DetectionPattern kind, const std::vector<int>& ids) {
  const int T = static_cast<int>(ids.size());
  std::vector<float> D(static_cast<std::size_t>(T) * T, 0.f);
  auto at = [&](int i, int j) -> float& { return D[static_cast<std::size_t>(i) * T + j]; };
  switch (kind) {
    case DetectionPattern::previous_token:
      for (int i = 1; i < T; ++i) at(i, i - 1) = 1.f;
      break;
    case DetectionPattern::duplicate_token:
      for (int i = 0; i < T; ++i)
        for (int j = 0; j < i; ++j) at(i, j) = ids[i] == ids[j] ? 1.f : 0.f;
      break;
    case DetectionPattern::induction:
      // duplicate[i, j-1] for 1 <= j <= i (TL rolls the whole row right, so
      // j - 1 may be any column < T - 1; tril keeps j <= i, hence j-1 < i).
      for (int i = 0; i < T; ++i)
        for (int j = 1; j <= i; ++j) at(i, j) = (j - 1 < i && ids[i] == ids[j - 1]) ? 1.f : 0.f;
      break;
  }
  return D;
}

namespace {

// Python's round(x, 3): the exact binary value rounded to 3 decimals (ties to
// even), which is what printf's %.3f does.
double python_round3(double x) {
  if (!std::isfinite(x)) return x;
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.3f", x);
  return std::strtod(buf, nullptr);
}

}  // namespace

double head_similarity_score(const float* A, const float* D, int T, const DetectOptions& o) {
  auto excluded = [&](int i, int j) { return (o.exclude_bos && j == 0) || (o.exclude_current_token && i == j); };
  if (o.error_measure == ErrorMeasure::mul) {
    double num = 0, den = 0;
    for (int i = 0; i < T; ++i)
      for (int j = 0; j < T; ++j) {
        if (excluded(i, j)) continue;
        const double a = A[static_cast<std::size_t>(i) * T + j];
        num += a * D[static_cast<std::size_t>(i) * T + j];
        den += a;
      }
    return num / den;  // 0/0 = NaN, as TL
  }
  double sum = 0;
  for (int i = 0; i < T; ++i)
    for (int j = 0; j < T; ++j) {
      if (excluded(i, j)) continue;
      const std::size_t e = static_cast<std::size_t>(i) * T + j;
      sum += std::fabs(double(A[e]) - D[e]);
    }
  const double mean_times_size = sum / (double(T) * T) * T;
  return 1.0 - python_round3(mean_times_size);
}

Result<std::vector<double>> detect_head(const std::vector<float>& patterns, int n_layer, int n_head, int n_tokens,
                                        const std::vector<float>& detection, const DetectOptions& options) {
  const std::size_t T = static_cast<std::size_t>(n_tokens);
  if (n_tokens < 2) return make_error("detect_head: the sequence must have at least 2 tokens (TL requires 1 < T)");
  if (n_layer < 1 || n_head < 1) return make_error("detect_head: n_layer and n_head must be positive");
  if (patterns.size() != static_cast<std::size_t>(n_layer) * n_head * T * T)
    return make_error("detect_head: patterns have " + std::to_string(patterns.size()) + " entries, expected L*H*T*T = " +
                      std::to_string(static_cast<std::size_t>(n_layer) * n_head * T * T));
  if (detection.size() != T * T)
    return make_error("detect_head: the detection pattern has " + std::to_string(detection.size()) +
                      " entries, expected T*T = " + std::to_string(T * T));
  for (std::size_t i = 0; i < T; ++i)
    for (std::size_t j = i + 1; j < T; ++j)
      if (detection[i * T + j] != 0.f)
        return make_error("detect_head: the detection pattern must be lower triangular (entry [" + std::to_string(i) +
                          ", " + std::to_string(j) + "] is not 0)");
  std::vector<double> scores(static_cast<std::size_t>(n_layer) * n_head);
  parallel_for(static_cast<std::ptrdiff_t>(scores.size()), [&](std::ptrdiff_t hd0, std::ptrdiff_t hd1) {
    for (auto hd = static_cast<std::size_t>(hd0); hd < static_cast<std::size_t>(hd1); ++hd)
      scores[hd] = head_similarity_score(patterns.data() + hd * T * T, detection.data(), n_tokens, options);
  });
  return scores;
}

Result<std::vector<double>> detect_head(const std::vector<float>& patterns, int n_layer, int n_head,
                                        const std::vector<int>& ids, DetectionPattern kind,
                                        const DetectOptions& options) {
  return detect_head(patterns, n_layer, n_head, static_cast<int>(ids.size()), detection_pattern(kind, ids), options);
}

// ---------------------------------------------------------------------------
// Induction test

Result<InductionTest> induction_test(const Model& model, const InductionTestOptions& options, const ModelEdits& edits,
                                     const ProgressFn& progress) {
  const ModelConfig& c = model.config;
  const int S = options.seq_len, B = options.batch, T = 2 * S + 1, L = c.n_layer, H = c.n_head;
  if (S < 2) return make_error("induction_test: seq_len must be at least 2");
  if (B < 1) return make_error("induction_test: batch must be at least 1");
  if (T > c.n_ctx)
    return make_error("induction_test: 2 * seq_len + 1 = " + std::to_string(T) + " tokens exceed the context of " +
                      std::to_string(c.n_ctx) + " (use seq_len <= " + std::to_string((c.n_ctx - 1) / 2) + ")");
  const int bos = options.bos_token >= 0 ? options.bos_token : c.bos_token_id;
  if (bos < 0) return make_error("induction_test: the model has no bos_token_id; pass bos_token");
  if (bos >= c.d_vocab)
    return make_error("induction_test: BOS id " + std::to_string(bos) + " is outside the vocabulary of " +
                      std::to_string(c.d_vocab));

  InductionTest r;
  r.n_layer = L;
  r.n_head = H;
  r.seq_len = S;
  r.batch = B;
  r.bos_token = bos;
  r.seed = options.seed;
  Rng rng(options.seed);
  r.tokens.resize(static_cast<std::size_t>(B) * T);
  for (int b = 0; b < B; ++b) {
    int* seq = &r.tokens[static_cast<std::size_t>(b) * T];
    seq[0] = bos;
    for (int i = 0; i < S; ++i) seq[1 + i] = seq[1 + S + i] = rng.below(c.d_vocab);
  }

  const bool has_loss = c.causal && has_unembedding(model);
  r.score.assign(static_cast<std::size_t>(L) * H, 0.0);
  r.score_strict.assign(static_cast<std::size_t>(L) * H, 0.0);
  if (has_loss) r.token_loss.assign(2 * S, 0.0);
  RunOptions opt;
  opt.want_hidden = opt.want_logits = false;
  const std::size_t TT = static_cast<std::size_t>(T) * T;
  for (int b = 0; b < B; ++b) {
    if (!report_progress(progress, double(b) / B)) return cancelled_error();
    const std::vector<int> ids(r.tokens.begin() + static_cast<std::ptrdiff_t>(b) * T,
                               r.tokens.begin() + static_cast<std::ptrdiff_t>(b + 1) * T);
    auto run = run_edited(model, ids, edits, opt);
    if (!run.ok()) return run.error();
    for (int hd = 0; hd < L * H; ++hd) {
      const float* A = run->patterns.data() + hd * TT;
      double all = 0, strict = 0;
      for (int i = S - 1; i <= 2 * S; ++i) {
        const double a = A[static_cast<std::size_t>(i) * T + (i - S + 1)];
        all += a;
        if (i >= S + 1) strict += a;
      }
      r.score[hd] += all / (S + 2) / B;
      r.score_strict[hd] += strict / S / B;
    }
    if (has_loss)
      for (int t = 0; t < 2 * S; ++t) r.token_loss[t] += double(run->token_loss[t]) / B;
  }
  const double nan = std::numeric_limits<double>::quiet_NaN();
  r.loss_first_half = r.loss_second_half = nan;
  if (has_loss) {
    double first = 0, second = 0;
    for (int t = 0; t < S; ++t) first += r.token_loss[t];
    for (int t = S; t < 2 * S; ++t) second += r.token_loss[t];
    r.loss_first_half = first / S;
    r.loss_second_half = second / S;
  }
  report_progress(progress, 1.0);
  return r;
}

// ---------------------------------------------------------------------------
// Pattern statistics

Result<PatternStats> pattern_stats(const std::vector<float>& patterns, int n_layer, int n_head, int n_tokens,
                                   const std::vector<int>& segments, const PatternClassRule& rule,
                                   const std::vector<int>& windows) {
  const int T = n_tokens;
  if (T < 1 || n_layer < 1 || n_head < 1) return make_error("pattern_stats: empty pattern");
  const std::size_t TT = static_cast<std::size_t>(T) * T, N = static_cast<std::size_t>(n_layer) * n_head;
  if (patterns.size() != N * TT)
    return make_error("pattern_stats: patterns have " + std::to_string(patterns.size()) + " entries, expected L*H*T*T = " +
                      std::to_string(N * TT));
  if (!segments.empty() && static_cast<int>(segments.size()) != T)
    return make_error("pattern_stats: " + std::to_string(segments.size()) + " segment ids for " + std::to_string(T) +
                      " tokens");
  if (!windows.empty() && static_cast<int>(windows.size()) != n_layer)
    return make_error("pattern_stats: " + std::to_string(windows.size()) + " layer windows for " +
                      std::to_string(n_layer) + " layers");
  if (rule.vertical_columns < 1 || rule.diagonal_band < 0)
    return make_error("pattern_stats: vertical_columns must be >= 1 and diagonal_band >= 0");

  PatternStats s;
  s.n_layer = n_layer;
  s.n_head = n_head;
  s.n_tokens = T;
  s.rule = rule;
  const int n_off = 2 * T - 1;
  s.first_token_mass.assign(N, 0);
  s.current_token_mass.assign(N, 0);
  s.previous_token_mass.assign(N, 0);
  s.entropy.assign(N, 0);
  s.entropy_normalized.assign(N, 0);
  s.offset_mass.assign(N * n_off, 0);
  s.dominant_offset.assign(N, 0);
  s.dominant_offset_share.assign(N, 0);
  s.vertical.assign(N, 0);
  s.diagonal.assign(N, 0);
  s.block.assign(N, 0);
  s.pattern_class.assign(N, PatternClass::heterogeneous);

  bool two_segments = false;
  for (int t = 1; t < T && !segments.empty(); ++t) two_segments |= segments[t] != segments[0];

  // The three raw Kovaleva measures of a pattern [T, T], as fractions of its mass.
  struct Measures {
    double vertical = 0, diagonal = 0, block = 0;
  };
  // (column: [T] scratch.)
  auto measures = [&](auto&& at, double total, std::vector<double>& column) {
    Measures m;
    std::fill(column.begin(), column.end(), 0.0);
    for (int i = 0; i < T; ++i)
      for (int j = 0; j < T; ++j) {
        const double a = at(i, j);
        column[j] += a;
        if (std::abs(i - j) <= rule.diagonal_band) m.diagonal += a;
        else if (two_segments && segments[i] == segments[j]) m.block += a;
      }
    const int k = std::min(rule.vertical_columns, T);
    std::partial_sort(column.begin(), column.begin() + k, column.end(), std::greater<double>());
    for (int c = 0; c < k; ++c) m.vertical += column[c];
    m.vertical /= total;
    m.diagonal /= total;
    m.block /= total;
    return m;
  };
  // The uniform baselines, causal and bidirectional.
  Measures uniform[2];
  std::vector<double> column(T);
  for (int causal = 0; causal < 2; ++causal)
    uniform[causal] = measures([&](int i, int j) { return (causal && j > i) ? 0.0 : 1.0 / (causal ? i + 1 : T); }, T, column);
  auto excess = [](double m, double u) { return u < 1 ? std::max(0.0, (m - u) / (1 - u)) : 0.0; };

  // The heads are independent: shared over the threads.
  parallel_for(static_cast<std::ptrdiff_t>(N), [&](std::ptrdiff_t hd0, std::ptrdiff_t hd1) {
    std::vector<double> row_entropy(T), column(T);
    for (std::size_t hd = static_cast<std::size_t>(hd0); hd < static_cast<std::size_t>(hd1); ++hd) {
      const float* A = patterns.data() + hd * TT;
      double* off = s.offset_mass.data() + hd * n_off;
      double total = 0, entropy = 0;
      bool causal = true;
      for (int i = 0; i < T; ++i) {
        double h = 0;
        for (int j = 0; j < T; ++j) {
          const double a = A[static_cast<std::size_t>(i) * T + j];
          if (a == 0) continue;
          if (j > i) causal = false;
          total += a;
          off[i - j + T - 1] += a;
          if (a > 0) h -= a * std::log(a);
        }
        entropy += h;
        row_entropy[i] = h;
        s.first_token_mass[hd] += A[static_cast<std::size_t>(i) * T] / T;
        s.current_token_mass[hd] += A[static_cast<std::size_t>(i) * T + i] / T;
        if (i >= 1) s.previous_token_mass[hd] += A[static_cast<std::size_t>(i) * T + i - 1] / (T - 1);
      }
      s.entropy[hd] = entropy / T;
      const int window = windows.empty() ? 0 : windows[hd / n_head];
      double normalized = 0;
      int rows = 0;
      for (int i = 0; i < T; ++i) {
        const int keys = !causal ? T : window > 0 ? std::min(i + 1, window) : i + 1;
        if (keys < 2) continue;
        normalized += row_entropy[i] / std::log(static_cast<double>(keys));
        ++rows;
      }
      s.entropy_normalized[hd] = rows ? normalized / rows : 0;
      if (!(total > 0)) {
        std::fill(off, off + n_off, 0.0);
        continue;
      }
      for (int k = 0; k < n_off; ++k) off[k] /= total;
      // Dominant offset: highest mass, smallest |delta| on ties.
      int best = T - 1;
      for (int k = 0; k < n_off; ++k) {
        const int delta = k - (T - 1), best_delta = best - (T - 1);
        if (off[k] > off[best] || (off[k] == off[best] && std::abs(delta) < std::abs(best_delta))) best = k;
      }
      s.dominant_offset[hd] = best - (T - 1);
      s.dominant_offset_share[hd] = off[best];

      // Kovaleva scores.
      const Measures m = measures([&](int i, int j) { return double(A[static_cast<std::size_t>(i) * T + j]); }, total, column);
      const Measures& u = uniform[causal ? 1 : 0];
      s.vertical[hd] = excess(m.vertical, u.vertical);
      s.diagonal[hd] = excess(m.diagonal, u.diagonal);
      s.block[hd] = two_segments ? excess(m.block, u.block) : 0.0;
      const double v = s.vertical[hd], d = s.diagonal[hd], b = s.block[hd];
      const double best_score = std::max({v, d, b});
      if (best_score >= rule.threshold)
        s.pattern_class[hd] = v == best_score ? PatternClass::vertical
                              : d == best_score ? PatternClass::diagonal
                                                : PatternClass::block;
    }
  });
  return s;
}

// ---------------------------------------------------------------------------
// Behaviour and roles

Result<HeadBehavior> head_behavior(const std::vector<float>& patterns, int n_layer, int n_head,
                                   const std::vector<int>& ids, const BehaviorOptions& options) {
  const int T = static_cast<int>(ids.size());
  const std::size_t N = static_cast<std::size_t>(n_layer) * n_head;
  HeadBehavior r;
  r.n_layer = n_layer;
  r.n_head = n_head;
  r.n_tokens = T;
  auto prev = detect_head(patterns, n_layer, n_head, ids, DetectionPattern::previous_token, options.detect);
  if (!prev.ok()) return prev.error();
  auto dup = detect_head(patterns, n_layer, n_head, ids, DetectionPattern::duplicate_token, options.detect);
  if (!dup.ok()) return dup.error();
  auto ind = detect_head(patterns, n_layer, n_head, ids, DetectionPattern::induction, options.detect);
  if (!ind.ok()) return ind.error();
  r.previous_token_score = std::move(prev).value();
  r.duplicate_token_score = std::move(dup).value();
  r.induction_score = std::move(ind).value();
  auto stats = pattern_stats(patterns, n_layer, n_head, T, options.segments, options.pattern_rule, options.windows);
  if (!stats.ok()) return stats.error();
  r.stats = std::move(stats).value();
  if (!options.probe_induction.empty() && options.probe_induction.size() != N)
    return make_error("head_behavior: probe_induction has " + std::to_string(options.probe_induction.size()) +
                      " entries, expected n_layer x n_head = " + std::to_string(N));
  r.roles_use_probe = !options.probe_induction.empty();
  r.role_threshold = options.role_threshold;

  // The scores the roles are judged by; NaN (a head with no mass) counts as 0.
  auto clean = [](double v) { return std::isfinite(v) ? v : 0.0; };
  r.role_scores.assign(N * kRoleCount, 0.0);
  r.role.assign(N, HeadRole::other);
  r.role_confidence.assign(N, 0.0);
  r.role_margin.assign(N, 0.0);
  for (std::size_t hd = 0; hd < N; ++hd) {
    double* sc = &r.role_scores[hd * kRoleCount];
    sc[int(HeadRole::induction)] = clean(r.roles_use_probe ? options.probe_induction[hd] : r.induction_score[hd]);
    sc[int(HeadRole::duplicate_token)] = clean(r.duplicate_token_score[hd]);
    sc[int(HeadRole::previous_token)] = clean(r.previous_token_score[hd]);
    const int off = r.stats.dominant_offset[hd];
    sc[int(HeadRole::positional)] = (off != 0 && off != 1) ? r.stats.dominant_offset_share[hd] : 0.0;
    sc[int(HeadRole::current_token)] = r.stats.current_token_mass[hd];
    sc[int(HeadRole::first_token)] = r.stats.first_token_mass[hd];
    int best = 0;
    for (int k = 1; k < kRoleCount; ++k)
      if (sc[k] > sc[best]) best = k;
    double second = -std::numeric_limits<double>::infinity();
    for (int k = 0; k < kRoleCount; ++k)
      if (k != best) second = std::max(second, sc[k]);
    if (sc[best] > options.role_threshold) {
      r.role[hd] = static_cast<HeadRole>(best);
      r.role_confidence[hd] = sc[best];
      r.role_margin[hd] = sc[best] - second;
    } else {
      r.role[hd] = HeadRole::other;
      r.role_confidence[hd] = 1.0 - sc[best];
      r.role_margin[hd] = options.role_threshold - sc[best];
    }
  }
  return r;
}

Result<HeadBehavior> head_behavior(const Model& model, const std::vector<int>& ids, const BehaviorOptions& options,
                                   const ModelEdits& edits) {
  RunOptions opt;
  opt.want_hidden = opt.want_logits = opt.want_loss = false;  // the patterns only: no LM head
  auto run = run_edited(model, ids, edits, opt);
  if (!run.ok()) return run.error();
  BehaviorOptions o = options;
  if (o.windows.empty()) o.windows = model.config.window;
  return head_behavior(run->patterns, run->n_layer, run->n_head, ids, o);
}

}  // namespace hs
