// Head behaviour over a corpus: head_behavior (detectors.hpp) on every text,
// each per-head statistic summarised over the texts by its mean and a
// percentile-bootstrap interval, next to its chance level: the same
// statistic of attention spread uniformly over the keys each row may see
// (i + 1 causal, T bidirectional, the window in local layers), on the same
// texts. A head's claim ("a previous-token head") then rests on many texts,
// with its uncertainty, and against what no head at all would score.
//
// Texts are token ids; each is cut to its first max_tokens (the result
// counts how many were cut). Every array is per head [L, H] (flat
// l * n_head + h) unless it says otherwise.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "detectors.hpp"
#include "interventions.hpp"
#include "model.hpp"
#include "progress.hpp"
#include "result.hpp"

namespace hs {

// The percentile bootstrap of a mean: values [n, m] (n samples, the texts,
// of m quantities, the heads); B resamples of n rows drawn with replacement
// by Rng(seed) (rng.hpp); lo and hi are the (1 - level) / 2 and
// (1 + level) / 2 quantiles of the B resampled means, linear interpolation
// between order statistics as numpy's default. A NaN value makes its
// column's mean and interval NaN. Error: n < 2 (one sample has no spread
// to resample), resamples < 1, level outside (0, 1), values not [n, m].
struct BootstrapInterval {
  std::vector<double> mean, lo, hi;  // [m]
};
Result<BootstrapInterval> bootstrap_mean(const std::vector<double>& values, int n, int m, int resamples,
                                         double level, std::uint64_t seed);

// Where a head does its role: in text `text`, query position `query` puts
// `weight` of its attention on key position `key`.
struct RoleExample {
  int text = -1, query = 0, key = 0;  // text -1: no example
  double weight = 0;
};

// One statistic over the corpus.
struct MetricSummary {
  std::string name;                  // as in HeadBehavior: "previous_token_score", ...
  std::vector<double> per_text;      // [n_texts, L, H]
  std::vector<double> mean, lo, hi;  // [L, H] the bootstrap interval of the mean over texts
  std::vector<double> chance;        // [L, H] the uniform pattern's mean over the same texts
};

struct CorpusOptions {
  int max_tokens = 128;  // each text cut to this many ids
  int examples = 5;      // top examples kept per head
  int resamples = 1000;  // bootstrap resamples
  double level = 0.95;   // the intervals' coverage
  std::uint64_t seed = 0;
  BehaviorOptions behavior;  // detector options and the role threshold (windows: the model's)
};

struct CorpusStats {
  int n_layer = 0, n_head = 0, n_texts = 0;
  CorpusOptions options;
  std::vector<int> n_tokens;  // [n_texts] after the cut
  int n_truncated = 0;        // texts longer than max_tokens
  // previous_token_score, duplicate_token_score, induction_score (TL's
  // detect_head), first_token_mass (the BOS sink), current_token_mass,
  // previous_token_mass, entropy_normalized, dominant_offset_share.
  std::vector<MetricSummary> metrics;
  // [L, H, kRoleCount + 1]: the share of texts on which each role (HeadRole
  // order, `other` last) is the head's label.
  std::vector<double> role_share;
  // [L, H] the dominant offset seen on most texts (smallest |offset| on
  // ties) and the share of texts on which it is the dominant one.
  std::vector<int> dominant_offset;
  std::vector<double> dominant_offset_agreement;
  // [L, H, examples], strongest first: the texts and positions where the
  // head does the role most texts give it most strongly, one per text at
  // most, its weight on the role's target key: previous_token A[i, i-1];
  // induction A[i, j] with ids[j-1] == ids[i] (the token after an earlier
  // copy); duplicate_token A[i, j], j < i, ids[j] == ids[i]; positional
  // A[i, i - d] with d the head's dominant offset on that text;
  // current_token A[i, i]; first_token A[i, 0] (i >= 1); other: the largest
  // A[i, j] off the first key and the diagonal. Missing ones: text -1.
  std::vector<RoleExample> examples;
};

// Error: fewer than 2 texts (an interval needs 2), a text with fewer than 2
// ids (the detectors need 2; its index is named), ids out of range, bad
// options, cancelled.
Result<CorpusStats> corpus_stats(const Model& model, const std::vector<std::vector<int>>& texts,
                                 const CorpusOptions& options = {}, const ModelEdits& edits = {},
                                 const ProgressFn& progress = {});

// Head importance over a corpus (each text cut to max_tokens), with the
// causal LM loss, or the masked-LM loss where labels are given
// (interventions.hpp); a bidirectional model without labels is measured by
// the same-position loss, and the result's objective says so:
//   gradient   Michel et al.'s E_x |dL/dxi_h| (the mean over texts of each
//              text's |gradient|), and that expectation divided by its
//              layer's L2 norm (their per-layer normalisation);
//   loo        each head's leave-one-out loss change, mean over texts with a
//              bootstrap interval (L * H forwards per text: optional);
//   pruning    held out: the texts split by parity, the order chosen on the
//              even-indexed half (its normalised gradient importance, least
//              important first, measured once) and the loss measured on the
//              odd-indexed half (mean over its texts) as heads are removed in
//              steps of 10 %, next to n_random uniformly random orders (Rng(seed)),
//              whose per-step minimum and maximum make the band.
struct CorpusImportanceOptions {
  // Per text, Loss labels for the masked-LM objective (the texts then hold
  // the masked input: mask_tokens), or empty: the model's causal LM loss.
  std::vector<std::vector<int>> labels;
  int max_tokens = 128;
  int resamples = 1000;
  double level = 0.95;
  std::uint64_t seed = 0;
  bool leave_one_out = true;
  AblationMode mode = AblationMode::zero;  // leave-one-out and pruning
  int n_random = 5;                        // random pruning orders (0: none)
};
struct CorpusImportance {
  int n_layer = 0, n_head = 0, n_texts = 0;
  CorpusImportanceOptions options;
  Objective objective = Objective::next_token;
  double loss = 0;                              // mean over texts, nothing removed
  std::vector<double> gradient;                 // [L, H] E_x |dL/dxi_h|
  std::vector<double> gradient_normalized;      // [L, H] divided by its layer's L2 norm
  std::vector<double> loo_mean, loo_lo, loo_hi;  // [L, H] (empty without leave_one_out)
  std::vector<int> choose_texts, evaluate_texts;  // the halves, text indices
  std::vector<int> order;                        // [N] from the choosing half
  std::vector<int> n_removed;                    // [P] 0, step, 2 step, ..., N
  std::vector<double> pruning_loss;              // [P] on the evaluating half
  std::vector<double> random_min, random_max, random_mean;  // [P] over the random orders
};
// Error: fewer than 2 texts (the pruning needs both halves), a text with
// fewer than 2 ids, a model with no LM head, labels that do not fit, bad
// options, cancelled.
Result<CorpusImportance> corpus_importance(const Model& model, const std::vector<std::vector<int>>& texts,
                                           const CorpusImportanceOptions& options = {}, const ModelEdits& edits = {},
                                           const ProgressFn& progress = {});

}  // namespace hs
