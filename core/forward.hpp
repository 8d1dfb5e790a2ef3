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
//   on_attn_view  after on_attn_out, with the layer's attention input x [T, d]
//               and its gated patterns A [H, T, T] as well: for paths that
//               read the residual through a head's pattern. An OV weight edit
//               W_OV += c a b^T of head h adds c (A_h (x a)) b^T, which z
//               cannot express (z_h = A_h (x W_V + b_V) has lost x).
//
// Gradients. With `tape` set, the run also keeps what a reverse pass needs
// (ForwardTape); the pass itself lives with its user (interventions.cpp).
#pragma once

#include <functional>
#include <vector>

#include "linalg.hpp"
#include "model.hpp"
#include "result.hpp"

namespace hs {

// One layer's attention, as the on_attn_view hook sees it.
struct AttentionView {
  const MatrixRM& input;  // [T, d] what the attention read (normed for pre-LN, the residual for post-LN)
  const float* patterns;  // [H, T, T] post-softmax, after the gate
  const MatrixRM& z;      // [T, H*dh] after on_z
};

// The intermediate values of one block that a reverse pass reads.
struct LayerTape {
  MatrixRM ln1_in;            // [T, d] input of the attention-side norm (pre-LN: the block input; post-LN: x + attn)
  MatrixRM attn_in;           // [T, d] attention input
  MatrixRM q, k, v;           // [T, H*dh], [T, G*dh], [T, G*dh]: biases and RoPE applied
  std::vector<float> probs;   // [H, T, T] post-softmax, before the gate
  MatrixRM ln2_in;            // [T, d] input of the MLP-side norm (sequential: x + attn; parallel: the block
                              // input; post-LN: mlp + LN1 out)
  MatrixRM mlp_in;            // [T, d] MLP input
  MatrixRM mlp_pre;           // [T, M] mlp_in W_in + b_in, before the activation
  MatrixRM mlp_gate_pre;      // [T, M] mlp_in W_gate + b_gate (gated MLPs)
};

struct ForwardTape {
  std::vector<LayerTape> layers;
  MatrixRM rope_cos, rope_sin;  // [T, R/2] (R = 0: empty)
  MatrixRM final_norm_in;       // [T, d] input of the final norm (pre-LN decoders)
  MatrixRM head_in;             // [T, d] input of the LM head (after the final norm)
  MatrixRM mlm_pre;             // [T, d] BERT MLM head: head_in W + b, before the activation
};

struct RunOptions {
  std::vector<float> head_gate;     // [L*H], index l*H + h; empty = all 1
  std::vector<int> token_type_ids;  // [T] (BERT); empty = all 0
  bool want_patterns = true;        // fill RunResult::patterns
  bool want_hidden = true;          // fill RunResult::hidden
  bool want_logits = true;          // fill RunResult::logits
  bool want_loss = true;            // fill RunResult::token_loss/loss; with neither, the LM head is skipped
  std::function<void(int layer, MatrixRM& z)> on_z;                                  // z [T, H*dh]
  std::function<void(int layer, const MatrixRM& z, MatrixRM& attn_out)> on_attn_out;  // attn_out [T, d]
  std::function<void(int layer, const AttentionView& view, MatrixRM& attn_out)> on_attn_view;  // attn_out [T, d]
  ForwardTape* tape = nullptr;  // when set, filled for a reverse pass
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

// logits [T, V] = x [T, d] W_U + b_U (b_U when it has V entries), with W_U =
// W_E^T read in place when tied (unembed_tied); the packed GEMM either way.
void unembed_logits(MatrixRM& logits, const MatrixRM& x, const ModelWeights& w);
// dx [T, d] = dlogits [T, V] W_U^T: the unembedding read backwards.
MatrixRM unembed_backward(const MatrixRM& dlogits, const ModelWeights& w);

// Runs the model on one sequence. Errors: no tokens, more tokens than the
// context, a token (type) id out of range, a head_gate of the wrong size.
Result<RunResult> run_model(const Model& model, const std::vector<int>& ids, const RunOptions& options = {});

// The activations by name, for callers that edit hidden units.
float activation_apply(Activation act, float x);

// x [T, d] -> out [T, d]: LayerNorm, (x - mean) / sqrt(var + eps) * w + b
// (b may be empty), biased variance, statistics in double.
void layer_norm_forward(MatrixRM& out, const MatrixRM& x, const RowVectorF& w, const RowVectorF& b, float eps);

}  // namespace hs
