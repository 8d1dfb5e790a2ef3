// What happens to the model without a head, or with a head changed: causal
// tests that re-run the forward pass (forward.hpp) and report the change.
//
//   ablation        zero- or mean-ablate any set of heads: loss per token and
//                   in total, and the patterns downstream
//   importance      leave-one-out loss change per head; Michel et al.'s (2019)
//                   gradient importance |dL/dxi_h| for head gates xi, exact,
//                   from one reverse pass through the forward
//   pruning curve   loss as heads are removed least important first, next to
//                   random orders
//   weight edits    OV edits and head merges, kept in a ModelEdits list that
//                   the caller passes to every later run until it undoes them
//
// Heads are named by flat index `layer * n_head + head` (the layout of
// RunOptions::head_gate), and every [L, H] result uses that layout.
//
// The loss. Every function takes a Loss: an objective, and for the masked
// one its labels. Objectives: the mean next-token cross-entropy of a causal
// LM (RunResult::loss; Hugging Face's labels = input_ids); the masked-LM
// cross-entropy of a bidirectional model with an MLM head (BERT's training
// objective: the input has [MASK] at some positions, mask_tokens, and the
// loss is taken there only, against the labels); the same-position
// cross-entropy on unmasked input (a reconstruction score, not BERT's
// objective); or, for a model with no LM head, the test functional
// 0.5 * mean_t |h_t|^2 of the final hidden states (it has no meaning as a
// task loss; it lets the gradient machinery be checked on every family).
// `automatic` picks next_token for a causal LM, same_token for a
// bidirectional one (masked_token needs labels: the caller masks), and
// hidden_energy without an LM head.
//
// Ablation semantics. Zero-ablation sets the head's gate to 0 (transformers'
// head_mask: the head's whole output, value bias and any edit path included,
// is removed; its own pattern then reads 0, as in HF's returned attentions).
// Mean-ablation also gates the head to 0 and adds back the head's output
// averaged over the text's positions, taken from the run without ablation
// (with the current edits): the head still writes, but the same thing
// everywhere. For one head this equals replacing z_h by its mean over
// positions before W_O.
//
// Weight-edit conventions. TransformerLens row vectors: head h maps its input
// x (the normed residual, [1, d]) to x W_OV with W_OV = W_V[h] W_O[h] =
// U diag(S) V^T (raw weights, the ones the forward runs; biases are not part
// of the circuit). U_k is a direction of the space the head READS (input
// side), V_k one of the space it WRITES (output side). Papers with column
// vectors write W_OV^T = V diag(S) U^T: their u_k (left, "writes") is our V_k
// and their v_k (right, "reads") is our U_k. Every edit records the side each
// of its vectors lives on (OvSide). An edit adds the path
//   attn_out += coeff * (A_h (x a)) b^T   (a: read side, b: write side)
// to the forward, A_h the head's gated pattern: exactly W_OV += coeff a b^T,
// without refactoring W_V, W_O (a rank-one update can raise the rank above
// d_head). An edit with alpha = 0 adds exact zeros (bit-identical results);
// removing every edit removes every hook (the original numbers exactly).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "forward.hpp"
#include "linalg.hpp"
#include "model.hpp"
#include "processing.hpp"
#include "progress.hpp"
#include "result.hpp"
#include "rng.hpp"

namespace hs {

// ---------------------------------------------------------------------------
// The loss

enum class Objective { automatic, next_token, same_token, masked_token, hidden_energy };
const char* objective_name(Objective objective);  // "next_token", ...

// `automatic` resolved for a model: next_token (causal with an LM head),
// same_token (bidirectional with an LM head), hidden_energy (no LM head).
Objective resolve_objective(const ModelConfig& config, Objective objective);

// What a function measures. An Objective converts to a Loss, so every
// `Objective::...` is one. masked_token needs `labels`, one per input
// position: the true id where the input holds [MASK], -100 elsewhere
// (Hugging Face's convention; mask_tokens makes both).
struct Loss {
  Objective objective = Objective::automatic;
  std::vector<int> labels;
  Loss(Objective o = Objective::automatic) : objective(o) {}  // NOLINT: implicit on purpose
  Loss(Objective o, std::vector<int> l) : objective(o), labels(std::move(l)) {}
};

// BERT's masked input: round(rate * n) of the n positions whose id is not
// in `keep` (at least one; [CLS], [SEP] and padding go in keep), chosen
// uniformly by a Fisher-Yates draw over Rng(seed) (rng.hpp), hold mask_id;
// labels hold the original id there and -100 elsewhere. Hugging Face's
// collator draws each position with probability 0.15 and replaces 80 % of
// the drawn with [MASK]; here the count is fixed and every drawn position is
// [MASK], so that a loss is comparable between texts and runs. Error: no
// position to mask, rate outside (0, 1].
struct MaskedTokens {
  std::vector<int> ids, labels;
  std::vector<int> positions;  // the masked positions, ascending
};
Result<MaskedTokens> mask_tokens(const std::vector<int>& ids, int mask_id, const std::vector<int>& keep,
                                 std::uint64_t seed = 0, double rate = 0.15);

// The objective per position of a finished run (next_token: [T-1] from
// RunResult::token_loss; same_token: [T] from its logits; masked_token: one
// per masked position, in order; hidden_energy: [T] from the last hidden
// state), and its mean. Error when the run lacks what the objective needs or
// the model cannot have it.
struct ObjectiveValue {
  Objective objective = Objective::next_token;
  std::vector<double> per_token;
  double mean = 0;
};
Result<ObjectiveValue> objective_value(const Model& model, const std::vector<int>& ids, const RunResult& run,
                                       const Loss& loss);

// ---------------------------------------------------------------------------
// Weight edits

enum class OvSide { read, write };
const char* ov_side_name(OvSide side);  // "read", "write"

enum class OvEditKind {
  // The seed's literal W_OV <- W_OV - alpha u u^T with u the k-th singular
  // vector of W_OV on `side` (the paper's u_k, in column vectors, is the
  // write side, the default) and an absolute alpha. Not a projection of
  // W_OV's own range: it adds a path from u to u (rank up to d_head + 1).
  // Kept for the links made with it.
  rank_one,
  // The same form in W_OV's units: W_OV <- W_OV - alpha sigma_k u u^T.
  rank_one_scaled,
  // W_OV <- W_OV - alpha sigma_k U_k V_k^T: alpha = 1 removes the k-th
  // singular component (the head no longer maps U_k to V_k); the rank stays
  // <= d_head. The default.
  remove_component,
};
const char* ov_edit_kind_name(OvEditKind kind);  // "rank_one", "rank_one_scaled", "remove_component"

struct OvEdit {
  int id = 0;  // set by add_edit
  OvEditKind kind = OvEditKind::remove_component;
  WeightVariant variant = WeightVariant::raw;  // whose W_OV's SVD gave the directions
  int layer = 0, head = 0;
  int component = 0;  // k, 0-based, singular values descending
  float alpha = 0;
  OvSide side = OvSide::write;  // rank_one(_scaled): which singular vector u is
  double sigma = 0;             // sigma_k of the unedited W_OV (in `variant`)
  // In the variant's coordinates the edit is W_OV += coeff * u_read u_write^T
  // (rank_one: u_read = u_write = u, coeff = -alpha; rank_one_scaled: the
  // same with coeff = -alpha sigma_k; remove_component: u_read = U_k,
  // u_write = V_k, coeff = -alpha sigma_k). The forward runs the raw
  // weights and reads the attention input x (the normed residual), so the
  // path it adds is coeff (A_h (x read - read_offset)) write^T: for the raw
  // variant read = u_read and read_offset = 0; for the processed one (whose
  // W_V has the norm's gamma folded in and reads x_hat = (x - beta) / gamma)
  // read = u_read / gamma and read_offset = beta . read. write = u_write.
  std::vector<float> read;   // [d], read side
  std::vector<float> write;  // [d], write side
  float read_offset = 0;
  float coeff = 0;
};

// Builds an edit of head (layer, head) from the factored SVD of its W_OV in
// `variant` (the one the page displays). Error: indices out of range, alpha
// not finite, a processed edit of a post-LN model, or one whose read side
// needs a coordinate the norm's gamma zeroes.
Result<OvEdit> make_ov_edit(const Model& model, OvEditKind kind, int layer, int head, int component, float alpha,
                            OvSide side = OvSide::write, WeightVariant variant = WeightVariant::raw);

// Two heads of one layer replaced by one: its OV is the best rank-d_head
// approximation (Eckart-Young, from the factored SVD of
// [W_V[a] W_V[b]] [W_O[a]; W_O[b]]) of the pair's summed OV, read through the
// pattern of `pattern_head` (a or b). The value-bias paths b_V W_O of both
// heads are kept (each attention row sums to its gate, so they add
// rowsum(A) (b_V[a] W_O[a] + b_V[b] W_O[b])). Both heads' own outputs are
// removed (their z is zeroed); the other head's pattern is still computed
// but unused.
struct HeadMerge {
  int id = 0;  // set by add_merge
  int layer = 0, head_a = 0, head_b = 0, pattern_head = 0;
  MatrixRM read;    // [d, dh] U_r diag(S_r), read side
  MatrixRM write;   // [d, dh] V_r, write side
  RowVectorF bias;  // [d] b_V[a] W_O[a] + b_V[b] W_O[b]
  std::vector<double> sigma;  // [2 dh] singular values of the summed OV
  double truncation_error = 0;  // ||OV_a + OV_b - merged||_F / ||OV_a + OV_b||_F
};
Result<HeadMerge> make_head_merge(const Model& model, int layer, int head_a, int head_b, int pattern_head);

// The edits in force. Paths add up; a merge and an OV edit of the same head
// both apply.
struct ModelEdits {
  std::vector<OvEdit> ov;
  std::vector<HeadMerge> merges;
  int next_id = 1;
  bool empty() const { return ov.empty() && merges.empty(); }
};
int add_edit(ModelEdits& edits, OvEdit edit);       // returns the id
int add_merge(ModelEdits& edits, HeadMerge merge);  // returns the id
bool undo_edit(ModelEdits& edits, int id);          // false: no such id

// Checks that every edit fits the model (layer, head and vector sizes).
Status check_edits(const Model& model, const ModelEdits& edits);

// run_model with the edits in force: installs them through on_z and
// on_attn_view, after any hooks already in `options` (those run first). With
// no edits this is run_model itself.
Result<RunResult> run_edited(const Model& model, const std::vector<int>& ids, const ModelEdits& edits,
                             RunOptions options = {});

// ---------------------------------------------------------------------------
// Ablation

enum class AblationMode { zero, mean };
const char* ablation_mode_name(AblationMode mode);  // "zero", "mean"

struct AblationResult {
  int n_layer = 0, n_head = 0, n_tokens = 0;
  Objective objective = Objective::next_token;
  AblationMode mode = AblationMode::zero;
  std::vector<int> heads;  // the ablated heads, flat indices
  double loss_base = 0, loss = 0;
  std::vector<double> token_loss_base, token_loss;  // per position (see ObjectiveValue)
  std::vector<float> patterns;        // [L, H, T, T] with the heads ablated (empty unless want_patterns)
  std::vector<float> pattern_change;  // [L, H] max |A - A_base| per head (empty unless want_patterns)
  std::vector<float> logits;          // [T, V] with the heads ablated (empty unless want_logits)
};
struct AblationOptions {
  AblationMode mode = AblationMode::zero;
  Loss objective;
  bool want_patterns = true;
  bool want_logits = false;
};
Result<AblationResult> ablate_heads(const Model& model, const std::vector<int>& ids, const std::vector<int>& heads,
                                    const AblationOptions& options = {}, const ModelEdits& edits = {});

// ---------------------------------------------------------------------------
// Importance

// The objective with each set of heads ablated (one run per set), and its
// value with none: one unablated run serves every set (it gives
// mean-ablation its means). Error: as ablate_heads, cancelled.
struct AblatedLosses {
  Objective objective = Objective::next_token;
  double base = 0;
  std::vector<double> loss;  // one per set
};
Result<AblatedLosses> ablated_losses(const Model& model, const std::vector<int>& ids,
                                     const std::vector<std::vector<int>>& head_sets,
                                     AblationMode mode = AblationMode::zero, const Loss& objective = {},
                                     const ModelEdits& edits = {}, const ProgressFn& progress = {});

// Leave-one-out: the objective with each head ablated alone.
struct LeaveOneOut {
  int n_layer = 0, n_head = 0;
  Objective objective = Objective::next_token;
  AblationMode mode = AblationMode::zero;
  double loss_base = 0;
  std::vector<double> loss;   // [L, H]
  std::vector<double> delta;  // [L, H] loss - loss_base
};
Result<LeaveOneOut> leave_one_out(const Model& model, const std::vector<int>& ids, AblationMode mode = AblationMode::zero,
                                  const Loss& objective = {}, const ModelEdits& edits = {},
                                  const ProgressFn& progress = {});

// Michel et al. (SPEC §5.9) on one sequence: the gradient of the objective
// with respect to the head gates xi (head_mask) at `gate` (empty = all 1),
// by one reverse pass through the forward (blocks_backward, edits included).
// gradient[h] = sum_ij A_h[i,j] dL/dA^gated_h[i,j]; at xi = 1 it equals
// sum z_h . dL/dz_h plus the head's edit paths.
struct GradientImportance {
  int n_layer = 0, n_head = 0;
  Objective objective = Objective::next_token;
  double loss = 0;
  std::vector<double> gradient;    // [L, H] dL/dxi (signed)
  std::vector<double> importance;  // [L, H] |dL/dxi|: transformers' head_importance before normalisation
  // run_bertology's defaults: each layer divided by its L2 norm (+1e-20),
  // then min-max scaled to [0, 1] over all heads.
  std::vector<double> importance_normalized;  // [L, H]
};
// Michel et al.'s per-layer normalisation of [L, H] importances: each
// layer's values divided by their L2 norm (+1e-20, as run_bertology.py).
std::vector<double> layer_normalized(std::vector<double> values, int n_layer, int n_head);

Result<GradientImportance> gradient_importance(const Model& model, const std::vector<int>& ids,
                                               const Loss& objective = {},
                                               const std::vector<float>& gate = {}, const ModelEdits& edits = {});

// ---------------------------------------------------------------------------
// Pruning curve

enum class PruneOrder { gradient, leave_one_out };
const char* prune_order_name(PruneOrder order);  // "gradient", "leave_one_out"

struct PruningOptions {
  PruneOrder order = PruneOrder::gradient;
  AblationMode mode = AblationMode::zero;
  Loss objective;
  int step = 0;           // heads removed between two points of the curve; 0: 10 % of the heads (at least 1)
  int n_random = 1;       // random orders
  std::uint64_t seed = 0;  // of the random orders (Rng)
  // Gradient order only. normalize: |dL/dxi_h| divided by the L2 norm of its
  // layer's (Michel et al. 2019). reestimate: after each step the importance
  // is estimated again with the heads removed so far gated off, and the next
  // step removes the least important of the rest (run_bertology.py
  // mask_heads). Both off: the raw importance, once, on the intact model.
  bool normalize = true;
  bool reestimate = true;
};
// Heads are removed cumulatively in increasing order of importance (ties by
// index), and in n_random uniformly random orders (Fisher-Yates over
// Rng(seed), rng.hpp). Leave-one-out importance is measured once.
struct PruningCurve {
  int n_layer = 0, n_head = 0;
  PruningOptions options;
  int step = 0;                         // the step used (options.step resolved)
  std::vector<double> importance;       // [L, H] the scores that set the first step's order (normalised if so)
  std::vector<int> order;               // [N] flat head indices, first removed first
  std::vector<int> n_removed;           // [P] 0, step, 2 step, ..., N
  std::vector<double> loss;             // [P] importance order
  std::vector<int> random_orders;       // [n_random, N]
  std::vector<double> random_loss;      // [n_random, P]
  std::vector<double> random_loss_mean;  // [P]
};
// The points of a pruning curve over n heads: 0, step, 2 step, ..., n
// (step 0: 10 % of the heads, at least 1).
std::vector<int> pruning_points(int n_heads, int step = 0);

Result<PruningCurve> pruning_curve(const Model& model, const std::vector<int>& ids, const PruningOptions& options = {},
                                   const ModelEdits& edits = {}, const ProgressFn& progress = {});

// ---------------------------------------------------------------------------
// Merging, evaluated

// The loss after merging heads a and b of `layer` (with the pattern of a, and
// of b), next to zero-ablating a alone, b alone and both. best_pattern_head is
// the pattern giving the lower merged loss (a on a tie).
struct MergeReport {
  int layer = 0, head_a = 0, head_b = 0;
  Objective objective = Objective::next_token;
  double loss_base = 0;
  double loss_prune_a = 0, loss_prune_b = 0, loss_prune_both = 0;
  double loss_merged_pattern_a = 0, loss_merged_pattern_b = 0;
  int best_pattern_head = 0;
  double loss_merged = 0;  // with best_pattern_head
  std::vector<double> sigma;    // [2 dh] singular values of the summed OV
  double truncation_error = 0;  // relative Frobenius error of the rank-d_head approximation
};
Result<MergeReport> evaluate_head_merge(const Model& model, const std::vector<int>& ids, int layer, int head_a,
                                        int head_b, const Loss& objective = {},
                                        const ModelEdits& edits = {}, const ProgressFn& progress = {});

}  // namespace hs
