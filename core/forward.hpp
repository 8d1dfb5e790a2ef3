// The forward pass of the canonical model (model.hpp) for every supported
// family, batch size 1: token ids in; attention patterns, hidden states,
// logits and the next-token loss out, each laid out as Hugging Face returns
// them (output_attentions / output_hidden_states), so the oracle fixtures
// compare element for element.
//
// Interventions. `head_gate` multiplies each head's post-softmax pattern, as
// transformers' head_mask does (0 = zero-ablation; the gradient with respect
// to it is Michel et al.'s head importance). Two hooks, called once per layer,
// expose the per-head outputs for edits that a gate cannot express:
//   on_z        z [T, H*dh], head h's mixed values in columns [h*dh, (h+1)*dh),
//               before W_O: e.g. mean-ablation replaces a head's block by its
//               mean over positions; patching copies in another run's block.
//   on_attn_out attn_out [T, d] = z W_O + b_O, after W_O, with z read-only:
//               e.g. an extra rank-1 path for head h adds (z_h u) v^T.
#pragma once

#include <functional>
#include <vector>

#include "linalg.hpp"
#include "model.hpp"
#include "result.hpp"

namespace hs {

struct RunOptions {
  std::vector<float> head_gate;     // [L*H], index l*H + h; empty = all 1
  std::vector<int> token_type_ids;  // [T] (BERT); empty = all 0
  bool want_patterns = true;        // fill RunResult::patterns
  bool want_hidden = true;          // fill RunResult::hidden
  bool want_logits = true;          // fill RunResult::logits
  bool want_loss = true;            // fill RunResult::token_loss/loss; with neither, the LM head is skipped
  std::function<void(int layer, MatrixRM& z)> on_z;                                  // z [T, H*dh]
  std::function<void(int layer, const MatrixRM& z, MatrixRM& attn_out)> on_attn_out;  // attn_out [T, d]
};

struct RunResult {
  int n_layer = 0, n_head = 0, n_tokens = 0, d_model = 0, d_vocab = 0;
  std::vector<float> patterns;    // [L, H, T, T], row i = query position, column j = key position
  std::vector<float> hidden;      // [L+1, T, d] as HF output_hidden_states: embeddings, then after each
                                  // layer; for pre-LN decoders the last entry is after the final norm
  std::vector<float> logits;      // [T, V] (empty without an LM head or when not wanted)
  std::vector<float> token_loss;  // [T-1] cross-entropy of token t+1 given tokens 0..t (causal LMs)
  float loss = 0;                 // mean of token_loss; NaN when there is none

  float pattern(int l, int h, int i, int j) const {
    return patterns[((static_cast<std::size_t>(l) * n_head + h) * n_tokens + i) * n_tokens + j];
  }
};

// Runs the model on one sequence. Errors: no tokens, more tokens than the
// context, a token (type) id out of range, a head_gate of the wrong size.
Result<RunResult> run_model(const Model& model, const std::vector<int>& ids, const RunOptions& options = {});

// The activations by name, for callers that edit hidden units.
float activation_apply(Activation act, float x);

}  // namespace hs
