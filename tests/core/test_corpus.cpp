// Corpus statistics (core/corpus.*): the bootstrap interval's coverage on
// data with a known mean, and corpus_stats against head_behavior run text by
// text, the chance level against its closed form, and its errors.
#include <catch2/catch.hpp>

#include <cmath>
#include <map>
#include <set>
#include <numeric>

#include "corpus.hpp"
#include "forward.hpp"
#include "fixture_model.hpp"
#include "rng.hpp"

using namespace hs;

TEST_CASE("corpus: the bootstrap interval covers a known mean at its stated rate", "[corpus]") {
  // 400 samples of n = 30 normal values with mean 0.3: the 95 % percentile
  // interval of the mean should hold 0.3 about 95 % of the time (the
  // percentile bootstrap runs a little short at n = 30: ~93-94 %). Two
  // columns, one of them constant: its interval is the constant itself.
  const int reps = 400, n = 30, m = 2;
  Rng data(11);
  int covered = 0;
  double width = 0;
  for (int r = 0; r < reps; ++r) {
    std::vector<double> values(static_cast<std::size_t>(n) * m);
    for (int i = 0; i < n; ++i) {
      values[i * m] = 0.3 + data.normal();
      values[i * m + 1] = 2.0;
    }
    const BootstrapInterval ci = bootstrap_mean(values, n, m, 1000, 0.95, r).value();
    covered += ci.lo[0] <= 0.3 && 0.3 <= ci.hi[0];
    width += (ci.hi[0] - ci.lo[0]) / reps;
    REQUIRE(ci.lo[0] <= ci.mean[0]);
    REQUIRE(ci.mean[0] <= ci.hi[0]);
    REQUIRE(ci.lo[1] == Approx(2.0));
    REQUIRE(ci.hi[1] == Approx(2.0));
  }
  const double coverage = double(covered) / reps;
  INFO("coverage " << coverage << ", mean width " << width << " (normal theory 2 * 1.96 / sqrt(30) = 0.716)");
  CHECK(coverage >= 0.90);
  CHECK(coverage <= 0.98);
  CHECK(width == Approx(2 * 1.96 / std::sqrt(30.0)).epsilon(0.08));
  // The same seed gives the same interval; another seed, another one.
  std::vector<double> v(n);
  for (double& x : v) x = data.normal();
  CHECK(bootstrap_mean(v, n, 1, 500, 0.9, 4)->lo == bootstrap_mean(v, n, 1, 500, 0.9, 4)->lo);
  CHECK(bootstrap_mean(v, n, 1, 500, 0.9, 4)->lo != bootstrap_mean(v, n, 1, 500, 0.9, 5)->lo);
}

TEST_CASE("corpus: statistics over texts are head_behavior's, text by text, beside their chance level", "[corpus]") {
  const Model model = test::load_fixture_model("gpt2").value();
  const int N = model.config.n_layer * model.config.n_head;
  const std::vector<std::vector<int>> texts = {{5, 6, 7, 5, 6, 7, 8, 9}, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, {3, 3, 4, 4}};
  CorpusOptions o;
  o.max_tokens = 10;
  o.resamples = 200;
  const CorpusStats s = corpus_stats(model, texts, o).value();
  REQUIRE(s.n_texts == 3);
  CHECK(s.n_tokens == std::vector<int>{8, 10, 4});
  CHECK(s.n_truncated == 1);
  REQUIRE(s.metrics.size() == 8);
  BehaviorOptions bo;
  bo.windows = model.config.window;
  for (int t = 0; t < 3; ++t) {
    const std::vector<int> ids(texts[t].begin(), texts[t].begin() + s.n_tokens[t]);
    const HeadBehavior b = head_behavior(model, ids, bo).value();
    for (int i = 0; i < N; ++i) {
      CHECK(s.metrics[0].per_text[t * N + i] == b.previous_token_score[i]);
      CHECK(s.metrics[2].per_text[t * N + i] == b.induction_score[i]);
      CHECK(s.metrics[6].per_text[t * N + i] == b.stats.entropy_normalized[i]);
    }
  }
  for (const MetricSummary& m : s.metrics) {
    INFO(m.name);
    for (int i = 0; i < N; ++i) {
      const double mean = (m.per_text[i] + m.per_text[N + i] + m.per_text[2 * N + i]) / 3;
      CHECK(m.mean[i] == Approx(mean).margin(1e-15));
      CHECK(m.lo[i] <= m.mean[i] + 1e-12);
      CHECK(m.hi[i] >= m.mean[i] - 1e-12);
    }
  }
  // Chance: uniform causal attention. TL's previous-token score (mul) of
  // rows spread over i + 1 keys is sum_{i>=1} 1/(i+1) / T; its normalised
  // entropy is 1.
  double want = 0;
  for (int T : s.n_tokens) {
    double sum = 0;
    for (int i = 1; i < T; ++i) sum += 1.0 / (i + 1);
    want += sum / T / 3;
  }
  for (int i = 0; i < N; ++i) {
    CHECK(s.metrics[0].chance[i] == Approx(want).epsilon(1e-6));
    CHECK(s.metrics[6].chance[i] == Approx(1.0).epsilon(1e-6));
    double shares = 0;
    for (int r = 0; r <= kRoleCount; ++r) shares += s.role_share[i * (kRoleCount + 1) + r];
    CHECK(shares == Approx(1.0));
  }
  // The dominant offset most texts agree on, from head_behavior text by text.
  for (int i = 0; i < N; ++i) {
    std::map<int, int> seen;
    for (int t = 0; t < 3; ++t) {
      const std::vector<int> ids(texts[t].begin(), texts[t].begin() + s.n_tokens[t]);
      ++seen[head_behavior(model, ids, bo).value().stats.dominant_offset[i]];
    }
    CHECK(seen[s.dominant_offset[i]] == Approx(s.dominant_offset_agreement[i] * 3));
    for (const auto& [offset, count] : seen) CHECK(count <= seen[s.dominant_offset[i]]);
  }
  // Top examples: for the role most texts give each head, the strongest
  // (text, query, key) on that role's target, one per text, strongest first,
  // their weights the patterns' own.
  REQUIRE(s.examples.size() == static_cast<std::size_t>(N) * o.examples);
  for (int i = 0; i < N; ++i) {
    const double* shares = s.role_share.data() + i * (kRoleCount + 1);
    const auto role = static_cast<HeadRole>(std::max_element(shares, shares + kRoleCount + 1) - shares);
    std::set<int> seen;
    double last = 2;
    for (int k = 0; k < o.examples; ++k) {
      const RoleExample& e = s.examples[i * o.examples + k];
      if (e.text < 0) continue;
      INFO("head " << i << " role " << head_role_name(role) << " example " << k << ": text " << e.text << " " << e.query << " -> " << e.key);
      CHECK(seen.insert(e.text).second);
      CHECK(e.weight <= last);
      last = e.weight;
      const std::vector<int> ids(texts[e.text].begin(), texts[e.text].begin() + s.n_tokens[e.text]);
      RunOptions ro;
      const RunResult run = run_model(model, ids, ro).value();
      const int T = run.n_tokens;
      CHECK(e.weight == Approx(run.patterns[static_cast<std::size_t>(i) * T * T + e.query * T + e.key]).margin(1e-6));
      if (role == HeadRole::previous_token) CHECK(e.key == e.query - 1);
      if (role == HeadRole::current_token) CHECK(e.key == e.query);
      if (role == HeadRole::first_token) CHECK(e.key == 0);
      if (role == HeadRole::induction) CHECK(ids[e.key - 1] == ids[e.query]);
      if (role == HeadRole::duplicate_token) CHECK(ids[e.key] == ids[e.query]);
      if (role == HeadRole::other) CHECK((e.key != 0 && e.key != e.query));
    }
    CHECK(!seen.empty());
  }
  // Errors name the problem.
  CHECK_THAT(corpus_stats(model, {}).error().message, Catch::Contains("no texts"));
  CHECK_THAT(corpus_stats(model, {{1, 2, 3}, {4}}).error().message, Catch::Contains("text 1 has 1 token"));
  CHECK_THAT(corpus_stats(model, {{1, 2, 3}}).error().message, Catch::Contains("at least 2 texts"));
  CHECK_THAT(corpus_stats(model, {{1, 2, 3}, {1, 2, 100000}}).error().message, Catch::Contains("text 1"));
  CorpusOptions bad;
  bad.level = 1.5;
  CHECK_THAT(corpus_stats(model, texts, bad).error().message, Catch::Contains("level"));
  bad.level = 0.95;
  bad.resamples = -3;
  CHECK_THAT(corpus_stats(model, texts, bad).error().message, Catch::Contains("resamples"));
  CorpusImportanceOptions ibad;
  ibad.level = 1.5;
  CHECK_THAT(corpus_importance(model, texts, ibad).error().message, Catch::Contains("level"));
}

TEST_CASE("corpus: importance over texts, and a pruning curve chosen on one half and measured on the other", "[corpus]") {
  const Model model = test::load_fixture_model("gpt2").value();
  const int N = model.config.n_layer * model.config.n_head;
  const std::vector<std::vector<int>> texts = {{5, 6, 7, 5, 6, 7, 8, 9}, {1, 2, 3, 4, 5, 6, 7}, {3, 3, 4, 4, 9, 9}, {10, 20, 30, 10, 20, 30}};
  CorpusImportanceOptions o;
  o.resamples = 200;
  o.n_random = 3;
  const CorpusImportance r = corpus_importance(model, texts, o).value();
  CHECK(r.objective == Objective::next_token);
  std::vector<double> gradient(N, 0.0), half(N, 0.0), loo(N, 0.0);
  double loss = 0;
  for (int t = 0; t < 4; ++t) {
    const GradientImportance g = gradient_importance(model, texts[t]).value();
    const LeaveOneOut l = leave_one_out(model, texts[t]).value();
    loss += g.loss / 4;
    for (int i = 0; i < N; ++i) {
      gradient[i] += g.importance[i] / 4;
      if (t % 2 == 0) half[i] += g.importance[i];
      loo[i] += l.delta[i] / 4;
    }
  }
  CHECK(r.loss == Approx(loss).epsilon(1e-12));
  for (int i = 0; i < N; ++i) {
    CHECK(r.gradient[i] == Approx(gradient[i]).epsilon(1e-12));
    CHECK(r.loo_mean[i] == Approx(loo[i]).margin(1e-12));
    CHECK(r.loo_lo[i] <= r.loo_mean[i] + 1e-12);
    CHECK(r.loo_hi[i] >= r.loo_mean[i] - 1e-12);
  }
  // Michel's per-layer normalisation: each layer's vector has unit L2 norm.
  for (int l = 0; l < model.config.n_layer; ++l) {
    double s = 0;
    for (int h = 0; h < model.config.n_head; ++h) s += r.gradient_normalized[l * model.config.n_head + h] * r.gradient_normalized[l * model.config.n_head + h];
    CHECK(s == Approx(1.0));
  }
  CHECK(r.choose_texts == std::vector<int>{0, 2});
  CHECK(r.evaluate_texts == std::vector<int>{1, 3});
  // The order: least important first by the choosing half's normalised importance.
  for (int l = 0; l < model.config.n_layer; ++l) {
    double s = 0;
    for (int h = 0; h < model.config.n_head; ++h) s += half[l * model.config.n_head + h] * half[l * model.config.n_head + h];
    for (int h = 0; h < model.config.n_head; ++h) half[l * model.config.n_head + h] /= std::sqrt(s) + 1e-20;
  }
  for (int k = 1; k < N; ++k) CHECK(half[r.order[k - 1]] <= half[r.order[k]]);
  // The curve on the evaluating half: the intact loss first, every head removed last.
  const int P = static_cast<int>(r.n_removed.size());
  REQUIRE(P >= 2);
  std::vector<int> all(N);
  std::iota(all.begin(), all.end(), 0);
  double intact = 0, none = 0;
  for (int t : {1, 3}) {
    intact += gradient_importance(model, texts[t]).value().loss / 2;
    none += ablate_heads(model, texts[t], all).value().loss / 2;
  }
  CHECK(r.pruning_loss[0] == Approx(intact).epsilon(1e-6));
  CHECK(r.pruning_loss[P - 1] == Approx(none).epsilon(1e-6));
  for (int p = 0; p < P; ++p) {
    CHECK(r.random_min[p] <= r.random_mean[p] + 1e-12);
    CHECK(r.random_mean[p] <= r.random_max[p] + 1e-12);
  }
  CHECK(r.random_min[0] == Approx(r.pruning_loss[0]));
  CHECK(r.random_max[P - 1] == Approx(r.pruning_loss[P - 1]));
  CHECK_THAT(corpus_importance(model, {{1, 2, 3}}).error().message, Catch::Contains("at least 2 texts"));
}
