// Causal evidence between two runs of the same length, a clean text and a
// corrupted one that differ where the task's answer is decided (the IOI pair
// "When Mary and John went to the store, John gave a drink to" / "... Alice
// and Bob ... Bob ..."), and the direct logit attribution of one run.
//
//   activation patching  TransformerLens's patching module: one activation of
//                        one run replaces the same activation of the other,
//                        and the metric of that run is read. Denoising patches
//                        from clean into corrupted (does this restore the
//                        answer? sufficiency); noising from corrupted into
//                        clean (does losing it break the answer? necessity).
//   path patching        Wang et al. (2022), as ARENA implements it: the
//                        effect of one sender head on the logits or on
//                        receiver heads' query/key/value inputs only through
//                        the paths that avoid every other attention head.
//   direct logit attribution  each component's share of the metric's logit
//                        difference, through the final norm with its scale
//                        frozen at the run's value.
//
// The metric at one position p (default the last): the logit difference
// logit(answer) - logit(wrong) (wrong < 0: the answer's logit alone), or the
// loss -log softmax(logits)[answer]. Every effect is normalised as
//   effect = (m - m_corrupt) / (m_clean - m_corrupt)
// so 0 is the corrupted run's value and 1 the clean one's, in both
// directions: a denoising patch that restores the answer reads 1, a noising
// patch that removes what the clean run needs reads near 0. (ARENA's path
// patching metric, (m - m_clean) / (m_clean - m_corrupt), is effect - 1.)
//
// What is patched (TransformerLens's hook names in brackets), head h of layer
// l, one forward per patch, resumed at layer l from the cached residual of the
// run patched into (forward.hpp RunOptions::resid_in):
//   heads              z_h at every position [hook_z]                      -> [L, H]
//   heads_by_position  z_h at one position                                 -> [L, H, T]
//   resid              the residual stream at block l's input, one position
//                      [hook_resid_pre]                                    -> [L, T]
//   q                  head h's query vectors, every position [hook_q]     -> [L, H]
//   k, v               one key/value head's vectors, every position
//                      [hook_k, hook_v]: in a GQA model the key and value
//                      of a KV group are shared by its H/G query heads, so
//                      they are patched and reported per KV head           -> [L, G]
// q and k are taken after RoPE; between two runs of one length the rotation
// is the same, so this equals patching before it. With weight edits in
// force every run is of the edited model; an OV edit's extra path reads the
// run's own residual and is not patched with z.
//
// Path patching of sender head s = (l_s, h_s), all steps on the clean text:
//   1. the clean and corrupted runs, cached (every head's z);
//   2. a clean run in which s's z is the corrupted run's, every other head's
//      z is frozen at its clean value (in every layer) and the MLPs, norms
//      and everything else are recomputed: what changes flows from s
//      directly, or through MLPs only;
//   3a. receiver = the logits: the metric of run 2;
//   3b. receivers = heads' q, k or v: a clean run in which those inputs are
//      the values run 2 computed for them (everything else recomputed, no
//      freezing): the metric of run 3.
// A sender sends to the receivers in later layers (NaN when there are none:
// a sender at or after the last receiver's layer). Weight edits: their extra
// paths read each run's own residual, so path patching treats them like
// the MLPs (recomputed, never frozen); a merged head's own z is zero.
#pragma once

#include <string>
#include <vector>

#include "forward.hpp"
#include "interventions.hpp"
#include "model.hpp"
#include "progress.hpp"
#include "result.hpp"

namespace hs {

enum class MetricKind { logit_diff, loss };
const char* metric_kind_name(MetricKind kind);  // "logit_diff", "loss"

struct PatchMetric {
  MetricKind kind = MetricKind::logit_diff;
  int answer = -1;    // token id (required)
  int wrong = -1;     // token id; < 0: the answer's logit alone (logit_diff)
  int position = -1;  // < 0: the last position
};

enum class PatchTarget { heads, heads_by_position, resid, q, k, v };
const char* patch_target_name(PatchTarget target);  // "heads", "heads_by_position", "resid", "q", "k", "v"

enum class PatchDirection { denoise, noise };
const char* patch_direction_name(PatchDirection direction);  // "denoise", "noise"

struct PatchOptions {
  PatchTarget target = PatchTarget::heads;
  PatchDirection direction = PatchDirection::denoise;
  PatchMetric metric;
};

struct PatchResult {
  int n_layer = 0, n_head = 0, n_kv_head = 0, n_tokens = 0;
  PatchTarget target = PatchTarget::heads;
  PatchDirection direction = PatchDirection::denoise;
  PatchMetric metric;            // position resolved
  double clean = 0, corrupt = 0;  // the metric of the two runs unpatched
  std::vector<int> shape;        // of value and effect: [L, H], [L, H, T], [L, T] or [L, G]
  std::vector<double> value;     // the metric with each patch
  std::vector<double> effect;    // (value - corrupt) / (clean - corrupt); NaN when clean == corrupt
};

// Errors: texts of different token lengths (naming both), no tokens, a
// metric token or position out of range, a model without an LM head,
// cancelled; and run_model's.
Result<PatchResult> activation_patch(const Model& model, const std::vector<int>& clean,
                                     const std::vector<int>& corrupt, const PatchOptions& options,
                                     const ModelEdits& edits = {}, const ProgressFn& progress = {});

// A receiver of path patching: head `head` of `layer` (for k and v: the KV
// head, see above), input 'q', 'k' or 'v'.
struct PathReceiver {
  int layer = 0, head = 0;
  char input = 'q';
};
// "L9H9:q" (or "L9G2:k" for a KV head); error naming the text otherwise.
Result<PathReceiver> parse_receiver(const std::string& text);
std::string receiver_name(const PathReceiver& receiver);

struct PathPatchOptions {
  PatchMetric metric;
  std::vector<PathReceiver> receivers;  // empty: the logits
};
struct PathPatchResult {
  int n_layer = 0, n_head = 0, n_tokens = 0;
  PatchMetric metric;
  std::vector<PathReceiver> receivers;
  double clean = 0, corrupt = 0;
  std::vector<double> value;   // [L, H] per sender; NaN for senders with no path to the receivers
  std::vector<double> effect;  // [L, H] normalised as activation patching
};
// Every sender head in turn. Errors: as activation_patch; a receiver out of
// range or not q/k/v; receivers that no head can send to (all in layer 0).
Result<PathPatchResult> path_patch(const Model& model, const std::vector<int>& clean, const std::vector<int>& corrupt,
                                   const PathPatchOptions& options, const ModelEdits& edits = {},
                                   const ProgressFn& progress = {});

// Direct logit attribution of one run, at every position t, for the
// direction u = W_U[:, answer] - W_U[:, wrong] (or W_U[:, answer]). The
// residual stream before the final norm is a sum of components (the
// embeddings, each head's z_h W_O[h], each layer's b_O and edit paths, each
// MLP's output); the final norm is linear once its scale is frozen at the
// run's value s_t (LayerNorm: s_t = sqrt(var(x_t) + eps), and each component
// is centred, as TransformerLens's apply_ln_to_stack does; RMSNorm:
// s_t = sqrt(mean(x_t^2) + eps)), so each component c contributes
// (c_t - mean(c_t)) . (gamma * u) / s_t, and the norm's bias and b_U add
// beta . u + b_U[answer] - b_U[wrong]. The parts sum to the run's logit
// difference exactly, up to float rounding. A norm after the attention (OLMo
// 2) is frozen likewise: a head's output reaches the residual as
// w * (z_h W_O[h]) / rms(a_t), a_t the attention's whole output; the MLP's
// part is its normed output. Post-LN models (BERT) renormalise
// the residual after every sublayer and end in a nonlinear MLM head: no
// component's contribution is linear there, so they are refused.
struct DirectLogitAttribution {
  int n_layer = 0, n_head = 0, n_tokens = 0;
  PatchMetric metric;           // position resolved (the position the page shows first)
  std::vector<double> heads;    // [L, H, T]
  std::vector<double> attn_bias;   // [L, T] b_O
  std::vector<double> edit_paths;  // [L, T] the OV edits' and merges' extra paths (0 without edits)
  std::vector<double> mlp;      // [L, T]
  std::vector<double> embed;    // [T] token (and position) embeddings
  std::vector<double> bias;     // [T] the final norm's bias and b_U
  std::vector<double> total;    // [T] the run's logit difference (from its logits)
  // Gemma 2 soft-caps the logits (c tanh(x / c)): the parts then add up to the
  // difference of the logits before the cap, which `total` holds.
  bool before_softcap = false;
};
Result<DirectLogitAttribution> direct_logit_attribution(const Model& model, const std::vector<int>& ids,
                                                        const PatchMetric& metric, const ModelEdits& edits = {});

}  // namespace hs
