#include "corpus.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <map>
#include <numeric>
#include <string>

#include "composition_null.hpp"
#include "forward.hpp"
#include "parallel.hpp"
#include "rng.hpp"

namespace hs {

namespace {

Status check_interval(int resamples, double level) {
  if (resamples < 1) return make_error("resamples must be at least 1, got " + std::to_string(resamples));
  if (!(level > 0 && level < 1)) return make_error("the interval's level must be in (0, 1), got " + std::to_string(level));
  return Ok{};
}

}  // namespace

Result<BootstrapInterval> bootstrap_mean(const std::vector<double>& values, int n, int m, int resamples,
                                         double level, std::uint64_t seed) {
  if (n < 2) return make_error("an interval needs at least 2 texts, got " + std::to_string(n));
  HS_TRY(check_interval(resamples, level));
  if (m < 0 || values.size() != static_cast<std::size_t>(n) * m) return make_error("bootstrap_mean: values are not [n, m]");
  BootstrapInterval out;
  out.mean.assign(m, 0.0);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < m; ++j) out.mean[j] += values[static_cast<std::size_t>(i) * m + j] / n;
  // B x m resampled means, the B rows of draws shared by every column. The
  // draws are made in order first; the rows and then the columns' quantiles
  // are shared over the threads.
  std::vector<int> draws(static_cast<std::size_t>(resamples) * n);
  Rng rng(seed);
  for (int& d : draws) d = static_cast<int>(rng.below(n));
  std::vector<double> means(static_cast<std::size_t>(resamples) * m, 0.0);
  parallel_for(resamples, [&](std::ptrdiff_t b0, std::ptrdiff_t b1) {
    for (auto b = static_cast<std::size_t>(b0); b < static_cast<std::size_t>(b1); ++b) {
      double* row = means.data() + b * m;
      for (int k = 0; k < n; ++k) {
        const double* v = values.data() + static_cast<std::size_t>(draws[b * n + k]) * m;
        for (int j = 0; j < m; ++j) row[j] += v[j];
      }
      for (int j = 0; j < m; ++j) row[j] /= n;
    }
  });
  out.lo.assign(m, 0.0);
  out.hi.assign(m, 0.0);
  parallel_for(m, [&](std::ptrdiff_t j0, std::ptrdiff_t j1) {
    std::vector<double> column(resamples);
    for (auto j = static_cast<std::size_t>(j0); j < static_cast<std::size_t>(j1); ++j) {
      for (int b = 0; b < resamples; ++b) column[b] = means[static_cast<std::size_t>(b) * m + j];
      if (std::isnan(out.mean[j])) {
        out.lo[j] = out.hi[j] = std::nan("");
        continue;
      }
      std::sort(column.begin(), column.end());
      out.lo[j] = quantile_sorted(column, (1 - level) / 2);
      out.hi[j] = quantile_sorted(column, (1 + level) / 2);
    }
  });
  return out;
}

namespace {

// Attention spread evenly over the keys each row may see, one head per
// layer [L, 1, T, T] (every head of a layer has the same): the chance
// level's pattern.
std::vector<float> uniform_patterns(const ModelConfig& c, int T) {
  std::vector<float> out(static_cast<std::size_t>(c.n_layer) * T * T, 0.f);
  for (int l = 0; l < c.n_layer; ++l) {
    const int w = l < static_cast<int>(c.window.size()) ? c.window[l] : 0;
    float* A = out.data() + static_cast<std::size_t>(l) * T * T;
    for (int i = 0; i < T; ++i) {
      const int from = c.causal && w > 0 ? std::max(0, i - w + 1) : 0;
      const int to = c.causal ? i : T - 1;
      for (int j = from; j <= to; ++j) A[static_cast<std::size_t>(i) * T + j] = 1.f / static_cast<float>(to - from + 1);
    }
  }
  return out;
}

// The statistics summarised, by name, from one text's behaviour.
const char* const kMetricNames[] = {"previous_token_score", "duplicate_token_score", "induction_score",
                                    "first_token_mass",     "current_token_mass",    "previous_token_mass",
                                    "entropy_normalized",   "dominant_offset_share"};
constexpr int kMetrics = sizeof(kMetricNames) / sizeof(kMetricNames[0]);

const std::vector<double>& metric_of(const HeadBehavior& b, int k) {
  switch (k) {
    case 0: return b.previous_token_score;
    case 1: return b.duplicate_token_score;
    case 2: return b.induction_score;
    case 3: return b.stats.first_token_mass;
    case 4: return b.stats.current_token_mass;
    case 5: return b.stats.previous_token_mass;
    case 6: return b.stats.entropy_normalized;
    default: return b.stats.dominant_offset_share;
  }
}

// Each role's strongest (query, key, weight) of one head's pattern A [T, T]
// on one text (RoleExample's definitions), by HeadRole index; `other` last.
// dominant: the head's dominant offset on this text.
std::array<RoleExample, kRoleCount + 1> role_examples(const float* A, const std::vector<int>& ids, int dominant,
                                                      bool causal, int text) {
  const int T = static_cast<int>(ids.size());
  std::array<RoleExample, kRoleCount + 1> best{};
  auto offer = [&](HeadRole role, int i, int j) {
    RoleExample& e = best[static_cast<int>(role)];
    const double w = A[static_cast<std::size_t>(i) * T + j];
    if (e.text < 0 || w > e.weight) e = {text, i, j, w};
  };
  for (int i = 0; i < T; ++i) {
    if (i >= 1) offer(HeadRole::previous_token, i, i - 1);
    offer(HeadRole::current_token, i, i);
    if (i >= 1) offer(HeadRole::first_token, i, 0);
    const int target = i - dominant;
    if (dominant != 0 && dominant != 1 && target >= 0 && target < T) offer(HeadRole::positional, i, target);
    for (int j = 0; j < (causal ? i : T); ++j) {
      if (j != i && ids[j] == ids[i]) offer(HeadRole::duplicate_token, i, j);
      if (j >= 1 && j - 1 != i && ids[j - 1] == ids[i] && (!causal || j <= i)) offer(HeadRole::induction, i, j);
      if (j != 0 && j != i) offer(HeadRole::other, i, j);
    }
    if (causal && i >= 1 && ids[i - 1] == ids[i]) offer(HeadRole::induction, i, i);  // j = i: the previous token repeats this one
  }
  return best;
}

}  // namespace

Result<CorpusStats> corpus_stats(const Model& model, const std::vector<std::vector<int>>& texts,
                                 const CorpusOptions& options, const ModelEdits& edits, const ProgressFn& progress) {
  const ModelConfig& c = model.config;
  if (texts.empty()) return make_error("corpus_stats: the corpus has no texts");
  if (texts.size() < 2) return make_error("corpus_stats: an interval needs at least 2 texts; the corpus has 1");
  if (options.max_tokens < 2) return make_error("corpus_stats: max_tokens must be at least 2");
  HS_TRY(check_interval(options.resamples, options.level));
  for (std::size_t t = 0; t < texts.size(); ++t) {
    if (texts[t].size() < 2)
      return make_error("corpus_stats: text " + std::to_string(t) + " has " + std::to_string(texts[t].size()) +
                        " token(s); the detectors need at least 2");
  }
  const int L = c.n_layer, H = c.n_head, N = L * H, n = static_cast<int>(texts.size());
  CorpusStats out;
  out.n_layer = L;
  out.n_head = H;
  out.n_texts = n;
  out.options = options;
  std::vector<std::vector<double>> per_text(kMetrics, std::vector<double>(static_cast<std::size_t>(n) * N));
  std::vector<std::vector<double>> chance(kMetrics, std::vector<double>(N, 0.0));
  out.role_share.assign(static_cast<std::size_t>(N) * (kRoleCount + 1), 0.0);
  std::vector<std::map<int, int>> offsets(N);
  // Per head and role, each text's strongest example (ranked at the end).
  std::vector<std::vector<RoleExample>> candidates(static_cast<std::size_t>(N) * (kRoleCount + 1));
  if (options.examples < 0) return make_error("corpus_stats: examples must not be negative");
  BehaviorOptions behavior = options.behavior;
  behavior.windows = c.window;
  for (int t = 0; t < n; ++t) {
    if (!report_progress(progress, double(t) / n)) return cancelled_error();
    const int T = std::min(static_cast<int>(texts[t].size()), options.max_tokens);
    if (T < static_cast<int>(texts[t].size())) ++out.n_truncated;
    out.n_tokens.push_back(T);
    const std::vector<int> ids(texts[t].begin(), texts[t].begin() + T);
    RunOptions run_options;
    run_options.want_hidden = run_options.want_logits = run_options.want_loss = false;  // patterns only
    auto run = run_edited(model, ids, edits, run_options);
    if (!run.ok()) return Error{run.error().code, "text " + std::to_string(t) + ": " + run.error().message};
    auto b = head_behavior(run->patterns, L, H, ids, behavior);
    if (!b.ok()) return Error{b.error().code, "text " + std::to_string(t) + ": " + b.error().message};
    auto u = head_behavior(uniform_patterns(c, T), L, 1, ids, behavior);
    if (!u.ok()) return u.error();
    for (int k = 0; k < kMetrics; ++k) {
      const std::vector<double>& v = metric_of(*b, k);
      std::copy(v.begin(), v.end(), per_text[k].begin() + static_cast<std::size_t>(t) * N);
      const std::vector<double>& cu = metric_of(*u, k);  // [L]
      for (int i = 0; i < N; ++i) chance[k][i] += cu[i / H] / n;
    }
    // Each head's share of the tallies and its examples: shared over the threads.
    parallel_for(N, [&](std::ptrdiff_t i0, std::ptrdiff_t i1) {
      for (int i = static_cast<int>(i0); i < i1; ++i) {
        out.role_share[static_cast<std::size_t>(i) * (kRoleCount + 1) + static_cast<int>(b->role[i])] += 1.0 / n;
        ++offsets[i][b->stats.dominant_offset[i]];
        if (options.examples == 0) continue;
        const auto best = role_examples(run->patterns.data() + static_cast<std::size_t>(i) * T * T, ids,
                                        b->stats.dominant_offset[i], c.causal, t);
        for (int r = 0; r <= kRoleCount; ++r) {
          if (best[r].text >= 0) candidates[static_cast<std::size_t>(i) * (kRoleCount + 1) + r].push_back(best[r]);
        }
      }
    });
  }
  for (int k = 0; k < kMetrics; ++k) {
    MetricSummary s;
    s.name = kMetricNames[k];
    // One seed per statistic, so that adding a statistic leaves the others' intervals as they were.
    auto ci = bootstrap_mean(per_text[k], n, N, options.resamples, options.level, options.seed + k);
    if (!ci) return ci.error();
    s.mean = std::move(ci->mean);
    s.lo = std::move(ci->lo);
    s.hi = std::move(ci->hi);
    s.per_text = std::move(per_text[k]);
    s.chance = std::move(chance[k]);
    out.metrics.push_back(std::move(s));
  }
  for (int i = 0; i < N; ++i) {
    int best = 0, count = -1;
    for (const auto& [offset, k] : offsets[i]) {
      if (k > count || (k == count && std::abs(offset) < std::abs(best))) best = offset, count = k;
    }
    out.dominant_offset.push_back(best);
    out.dominant_offset_agreement.push_back(double(count) / n);
  }
  // Examples of each head's most frequent role (ties: HeadRole order).
  out.examples.assign(static_cast<std::size_t>(N) * options.examples, RoleExample{});
  for (int i = 0; i < N; ++i) {
    const double* shares = out.role_share.data() + static_cast<std::size_t>(i) * (kRoleCount + 1);
    const int role = static_cast<int>(std::max_element(shares, shares + kRoleCount + 1) - shares);
    std::vector<RoleExample>& list = candidates[static_cast<std::size_t>(i) * (kRoleCount + 1) + role];
    std::stable_sort(list.begin(), list.end(), [](const RoleExample& a, const RoleExample& b) { return a.weight > b.weight; });
    for (int k = 0; k < std::min<int>(options.examples, list.size()); ++k) out.examples[static_cast<std::size_t>(i) * options.examples + k] = list[k];
  }
  report_progress(progress, 1.0);
  return out;
}

Result<CorpusImportance> corpus_importance(const Model& model, const std::vector<std::vector<int>>& given,
                                           const CorpusImportanceOptions& options, const ModelEdits& edits,
                                           const ProgressFn& progress) {
  const ModelConfig& c = model.config;
  if (given.size() < 2) return make_error("corpus_importance: the held-out pruning needs at least 2 texts");
  if (options.max_tokens < 2) return make_error("corpus_importance: max_tokens must be at least 2");
  if (options.n_random < 0) return make_error("corpus_importance: n_random must not be negative");
  HS_TRY(check_interval(options.resamples, options.level));
  if (!has_unembedding(model))
    return make_error("corpus_importance needs a model with an LM head: its loss is what importance measures");
  if (!options.labels.empty() && options.labels.size() != given.size())
    return make_error("corpus_importance: " + std::to_string(options.labels.size()) + " label lists for " +
                      std::to_string(given.size()) + " texts");
  const int L = c.n_layer, H = c.n_head, N = L * H, n = static_cast<int>(given.size());
  std::vector<std::vector<int>> texts;
  for (std::size_t t = 0; t < given.size(); ++t) {
    if (given[t].size() < 2) return make_error("corpus_importance: text " + std::to_string(t) + " has fewer than 2 tokens");
    texts.emplace_back(given[t].begin(), given[t].begin() + std::min<std::size_t>(given[t].size(), options.max_tokens));
  }
  // Each text's loss: the masked-LM one with its labels (cut like the text), else automatic.
  auto loss_of = [&](int t) {
    if (options.labels.empty()) return Loss{};
    const std::vector<int>& l = options.labels[t];
    return Loss(Objective::masked_token, std::vector<int>(l.begin(), l.begin() + std::min(l.size(), texts[t].size())));
  };
  CorpusImportance out;
  out.n_layer = L;
  out.n_head = H;
  out.n_texts = n;
  out.options = options;
  out.gradient.assign(N, 0.0);
  std::vector<double> half_gradient(N, 0.0);
  std::vector<double> loo(options.leave_one_out ? static_cast<std::size_t>(n) * N : 0);
  for (int t = 0; t < n; ++t) (t % 2 ? out.evaluate_texts : out.choose_texts).push_back(t);
  out.n_removed = pruning_points(N);
  const int P = static_cast<int>(out.n_removed.size());
  // Progress in forwards: gradient ~3 each, leave-one-out N + 1, pruning one
  // unablated run and P per order per evaluated text.
  const double total = n * (3.0 + (options.leave_one_out ? N + 1 : 0)) +
                       (1.0 + double(P) * (1 + options.n_random)) * out.evaluate_texts.size();
  double done = 0;
  auto step_progress = [&](double forwards) { return report_progress(progress, (done += forwards) / total); };

  for (int t = 0; t < n; ++t) {
    auto g = gradient_importance(model, texts[t], loss_of(t), {}, edits);
    if (!g.ok()) return Error{g.error().code, "text " + std::to_string(t) + ": " + g.error().message};
    out.objective = g->objective;
    out.loss += g->loss / n;
    for (int i = 0; i < N; ++i) {
      out.gradient[i] += g->importance[i] / n;
      if (t % 2 == 0) half_gradient[i] += g->importance[i];
    }
    if (!step_progress(3)) return cancelled_error();
    if (options.leave_one_out) {
      auto l = leave_one_out(model, texts[t], options.mode, loss_of(t), edits);
      if (!l.ok()) return l.error();
      std::copy(l->delta.begin(), l->delta.end(), loo.begin() + static_cast<std::size_t>(t) * N);
      if (!step_progress(N + 1)) return cancelled_error();
    }
  }
  out.gradient_normalized = layer_normalized(out.gradient, L, H);
  if (options.leave_one_out) {
    auto ci = bootstrap_mean(loo, n, N, options.resamples, options.level, options.seed);
    if (!ci) return ci.error();
    out.loo_mean = std::move(ci->mean);
    out.loo_lo = std::move(ci->lo);
    out.loo_hi = std::move(ci->hi);
  }

  // Held-out pruning: order from the choosing half, loss on the other.
  const std::vector<double> score = layer_normalized(half_gradient, L, H);
  out.order.resize(N);
  std::iota(out.order.begin(), out.order.end(), 0);
  std::stable_sort(out.order.begin(), out.order.end(), [&](int a, int b) { return score[a] < score[b]; });
  // Every order's heads removed at every point, as head sets: the main order
  // first, then the random ones (Rng(seed)); one unablated run per text.
  std::vector<std::vector<int>> orders = {out.order};
  Rng rng(options.seed);
  for (int r = 0; r < options.n_random; ++r) orders.push_back(random_order(N, rng));
  std::vector<std::vector<int>> sets;
  for (const std::vector<int>& order : orders) {
    for (int p = 0; p < P; ++p) sets.emplace_back(order.begin(), order.begin() + out.n_removed[p]);
  }
  std::vector<double> losses(sets.size(), 0.0);  // [order, point], mean over the evaluating texts
  for (int t : out.evaluate_texts) {
    auto a = ablated_losses(model, texts[t], sets, options.mode, loss_of(t), edits);
    if (!a.ok()) return a.error();
    for (std::size_t k = 0; k < sets.size(); ++k) losses[k] += a->loss[k] / out.evaluate_texts.size();
    if (!step_progress(1.0 + sets.size())) return cancelled_error();
  }
  out.pruning_loss.assign(losses.begin(), losses.begin() + P);
  if (options.n_random > 0) {
    out.random_min.assign(P, INFINITY);
    out.random_max.assign(P, -INFINITY);
    out.random_mean.assign(P, 0.0);
  }
  for (int r = 1; r <= options.n_random; ++r) {
    for (int p = 0; p < P; ++p) {
      const double v = losses[static_cast<std::size_t>(r) * P + p];
      out.random_min[p] = std::min(out.random_min[p], v);
      out.random_max[p] = std::max(out.random_max[p], v);
      out.random_mean[p] += v / options.n_random;
    }
  }
  report_progress(progress, 1.0);
  return out;
}

}  // namespace hs
