// What each head does on real text: role detectors computed from attention
// patterns [L, H, T, T] (RunResult::patterns, row i = query, column j = key)
// and the token ids, plus the standard induction probe.
//
//   detect_head     TransformerLens's detect_head exactly (SPEC §5.5): the
//                   previous-token, duplicate-token and induction detection
//                   patterns, the "mul" and "abs" measures, exclude_bos and
//                   exclude_current_token
//   induction_test  ARENA's repeated random tokens [BOS] + R + R (SPEC §5.6)
//   pattern_stats   positional profile, BOS sink and current-token mass,
//                   entropy, and a Kovaleva et al. (2019) pattern class
//   head_behavior   all of the above for one text, and one role label per
//                   head with its confidence; the scores stay beside it
//
// Every per-head array is [L, H], flat index layer * n_head + head.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "interventions.hpp"
#include "model.hpp"
#include "progress.hpp"
#include "result.hpp"

namespace hs {

// ---------------------------------------------------------------------------
// TransformerLens detect_head

enum class DetectionPattern { previous_token, duplicate_token, induction };
// TL's HeadName: "previous_token_head", "duplicate_token_head", "induction_head".
const char* detection_pattern_name(DetectionPattern kind);

enum class ErrorMeasure { mul, abs };
const char* error_measure_name(ErrorMeasure measure);  // "mul", "abs"

// TL get_<name>_detection_pattern(tokens): D [T, T] row-major, lower
// triangular, entries 0 or 1.
//   previous_token   D[i, i-1] = 1 for i >= 1
//   duplicate_token  D[i, j] = 1 iff ids[i] == ids[j] and j < i
//   induction        D[i, j] = duplicate[i, j-1] for j >= 1 (roll right by
//                    one, column 0 zeroed, then tril): D[i, i] can be 1 when
//                    ids[i] == ids[i-1]
std::vector<float> detection_pattern(DetectionPattern kind, const std::vector<int>& ids);

struct DetectOptions {  // TL's defaults
  bool exclude_bos = false;            // zero column 0 of A (mul) or of |A - D| (abs)
  bool exclude_current_token = false;  // zero the diagonal likewise
  ErrorMeasure error_measure = ErrorMeasure::mul;
};

// TL compute_head_attention_similarity_score for one head, A and D [T, T]:
//   mul  sum(A' o D) / sum(A'), A' = A with the exclusions zeroed (NaN when
//        the exclusions leave no mass, as in TL);
//   abs  1 - round(mean(|A - D|') * T, 3), the exclusions zeroing entries
//        of |A - D| (round: Python's, to the nearest of the exact decimal
//        value). TL asserts |A - D| is lower triangular; a bidirectional
//        pattern's upper triangle is counted here instead.
double head_similarity_score(const float* attention, const float* detection, int n_tokens, const DetectOptions& options);

// Every head's score, [L, H]. patterns [L, H, T, T]. Error: T < 2 (TL needs
// 1 < T), sizes that do not match.
Result<std::vector<double>> detect_head(const std::vector<float>& patterns, int n_layer, int n_head,
                                        const std::vector<int>& ids, DetectionPattern kind,
                                        const DetectOptions& options = {});
// With a custom detection pattern D [T, T].
Result<std::vector<double>> detect_head(const std::vector<float>& patterns, int n_layer, int n_head, int n_tokens,
                                        const std::vector<float>& detection, const DetectOptions& options = {});

// ---------------------------------------------------------------------------
// The standard induction test (ARENA)

struct InductionTestOptions {
  int seq_len = 50;
  int batch = 10;
  std::uint64_t seed = 0;
  int bos_token = -1;  // -1: the model's bos_token_id (Error if it has none)
};

// Sequence b is [BOS] + R_b + R_b, R_b seq_len ids uniform on [0, d_vocab)
// drawn in order from one Rng(seed) (rng.hpp; batch 0 first). T = 2 seq_len + 1.
struct InductionTest {
  int n_layer = 0, n_head = 0, seq_len = 0, batch = 0, bos_token = 0;
  std::uint64_t seed = 0;
  std::vector<int> tokens;  // [batch, T]
  // ARENA's score: the mean over batch and over the seq_len + 2 entries of
  // pattern.diagonal(1 - seq_len), A[i, i - seq_len + 1] for i in
  // [seq_len - 1, 2 seq_len]. Two of them are not induction positions
  // (i = seq_len - 1 reads BOS, i = seq_len reads R[0] from the last token of
  // the first copy); they are kept to match ARENA and TL-demo numbers.
  std::vector<double> score;  // [L, H]
  // The same without those two entries: i in [seq_len + 1, 2 seq_len].
  std::vector<double> score_strict;  // [L, H]
  // Causal LMs: -log p(next token) at positions 0..2 seq_len - 1, mean over
  // the batch, and its means over the first half (predicting the first copy,
  // positions < seq_len) and the second (the repeat). In-context learning
  // shows as a second half far below the first. Empty / NaN for models
  // without a next-token loss.
  std::vector<double> token_loss;  // [2 seq_len]
  double loss_first_half = 0, loss_second_half = 0;
};
Result<InductionTest> induction_test(const Model& model, const InductionTestOptions& options = {},
                                     const ModelEdits& edits = {}, const ProgressFn& progress = {});

// ---------------------------------------------------------------------------
// Pattern statistics and Kovaleva classes

// Kovaleva, Romanov, Rogers & Rumshisky (2019), "Revealing the Dark Secrets
// of BERT", sorted self-attention maps into vertical (every query attends the
// same few tokens: [CLS], [SEP], BOS), diagonal (the previous / current /
// next token), block (within the query's own segment) and heterogeneous.
// They trained a CNN on 400 hand-labelled maps; we use this rule instead.
// Three raw measures, each a fraction of the head's total attention mass
// S = sum A:
//   vertical  the mass of the `vertical_columns` most-attended key columns
//   diagonal  the mass with |i - j| <= diagonal_band
//   block     the mass with seg(i) == seg(j) and |i - j| > diagonal_band; it
//             needs segment ids (sentences, BERT token types) with at least
//             two segments, and is 0 otherwise
// A short causal text makes even uniform attention look vertical and
// diagonal (for T = 9 the two first columns hold 52% of it), so each score is
// the measure's excess over the uniform pattern u (each row spread evenly
// over its allowed keys, the causal ones when the head's pattern is causal):
// score = max(0, (m - u) / (1 - u)), 0 for attention as spread as uniform, 1
// for all of it in the columns / band / segment.
// class = the highest score if it is >= threshold, else heterogeneous (ties:
// vertical, diagonal, block).
enum class PatternClass { vertical, diagonal, block, heterogeneous };
const char* pattern_class_name(PatternClass cls);

struct PatternClassRule {
  double threshold = 0.5;
  int vertical_columns = 2;
  int diagonal_band = 1;
};

struct PatternStats {
  int n_layer = 0, n_head = 0, n_tokens = 0;
  // ARENA's detector means (SPEC §5.5), over every query row:
  std::vector<double> first_token_mass;     // [L, H] mean_i A[i, 0] (the BOS sink; row 0 counts)
  std::vector<double> current_token_mass;   // [L, H] mean_i A[i, i]
  std::vector<double> previous_token_mass;  // [L, H] mean_{i >= 1} A[i, i-1]
  std::vector<double> entropy;              // [L, H] mean_i of -sum_j A[i,j] ln A[i,j], nats
  // [L, H] the same row entropies divided by ln n_i, n_i the keys row i may
  // attend (i + 1 causal, T bidirectional, min(i + 1, w) in a layer with a
  // local window w), averaged over the rows with n_i > 1: 1 = uniform over
  // what the row can see, whatever the length; 0 = one key.
  std::vector<double> entropy_normalized;
  // Attention mass by relative offset delta = i - j (delta > 0: earlier keys),
  // as a fraction of S: offset_mass[(l*H + h)*(2T-1) + delta + T - 1].
  std::vector<double> offset_mass;            // [L, H, 2T-1]
  std::vector<int> dominant_offset;           // [L, H] argmax over delta (smallest |delta| on ties)
  std::vector<double> dominant_offset_share;  // [L, H] its offset_mass
  std::vector<double> vertical, diagonal, block;  // [L, H] Kovaleva scores (excess over uniform)
  std::vector<PatternClass> pattern_class;        // [L, H]
  PatternClassRule rule;
};
// segments: [T] segment id per token, or empty. windows: per layer, 0 =
// global, w > 0 = a causal local window of w keys (ModelConfig::window), or
// empty (all global). A head is causal when it puts no mass above the
// diagonal. A head with no mass (gated to 0) gets zeros, entropy 0 and class
// heterogeneous.
Result<PatternStats> pattern_stats(const std::vector<float>& patterns, int n_layer, int n_head, int n_tokens,
                                   const std::vector<int>& segments = {}, const PatternClassRule& rule = {},
                                   const std::vector<int>& windows = {});

// ---------------------------------------------------------------------------
// One text, everything, and a role per head

// Roles and the score each is judged by (all in [0, 1]):
//   induction        the induction test's score when one is given, else TL's
//                    induction score on the text (0 without repeated tokens)
//   duplicate_token  TL's duplicate-token score on the text
//   previous_token   TL's previous-token score on the text
//   positional       dominant_offset_share when the dominant offset is not 0
//                    or 1 (a fixed offset other than current / previous)
//   current_token    current_token_mass
//   first_token      first_token_mass (the BOS sink)
// The label is the role with the highest score among those above threshold
// (ARENA's 0.4 convention, strict >), ties in the order listed; confidence =
// that score, margin = it minus the next role's score. No score above the
// threshold: `other`, with confidence 1 - the highest score and margin =
// threshold - the highest score.
enum class HeadRole { induction, duplicate_token, previous_token, positional, current_token, first_token, other };
const char* head_role_name(HeadRole role);
constexpr int kRoleCount = 6;  // the scored roles (all but `other`)

struct BehaviorOptions {
  DetectOptions detect;          // for the three TL scores
  std::vector<int> segments;     // for the block class, [T] or empty
  PatternClassRule pattern_rule;
  std::vector<int> windows;      // per layer (pattern_stats); the model's overload uses its config's
  double role_threshold = 0.4;
  // [L, H] induction scores from induction_test (its `score`) to label
  // induction heads with; empty = the text's own induction score.
  std::vector<double> probe_induction;
};

struct HeadBehavior {
  int n_layer = 0, n_head = 0, n_tokens = 0;
  std::vector<double> previous_token_score, duplicate_token_score, induction_score;  // [L, H] TL detect_head
  PatternStats stats;
  std::vector<double> role_scores;  // [L, H, kRoleCount] in HeadRole order
  std::vector<HeadRole> role;       // [L, H]
  std::vector<double> role_confidence, role_margin;  // [L, H]
  double role_threshold = 0.4;
  bool roles_use_probe = false;  // the induction role used probe_induction
};
Result<HeadBehavior> head_behavior(const std::vector<float>& patterns, int n_layer, int n_head,
                                   const std::vector<int>& ids, const BehaviorOptions& options = {});
// Runs the model (with the edits) on ids first.
Result<HeadBehavior> head_behavior(const Model& model, const std::vector<int>& ids, const BehaviorOptions& options = {},
                                   const ModelEdits& edits = {});

}  // namespace hs
