// The forward pass of the canonical model (model.hpp) for every supported
// family, batch size 1: token ids in; attention patterns, hidden states,
// logits and the next-token loss out, each laid out as Hugging Face returns
// them (output_attentions / output_hidden_states), so the oracle fixtures
// compare element for element. And its reverse pass.
//
// The layers (norms, MLP, RoPE, attention, unembedding, loss) are the
// forward/backward pairs of layers.hpp; this file wires them into blocks:
//   pre-LN     x = x + attn(LN1 x); x = x + mlp(LN2 x)          (GPT-2, LLaMA, ...)
//   parallel   x = x + attn(LN1 x) + mlp(LN2 x)                 (NeoX)
//   post-LN    x = LN1(x + attn(x)); x = LN2(x + mlp(x))        (BERT)
//   norm after x = x + N1p(attn(x)); x = x + N2p(mlp(x))        (OLMo 2)
//   sandwich   x = x + N1p(attn(N1 x)); x = x + N2p(mlp(N2 x))  (Gemma 2/3)
// With a norm after the attention, the hooks around it (on_z, on_attn_out,
// on_attn_view, and so edits and mean-ablation) act before N1p, whose scale
// depends on every head's output: changing one head rescales what the others
// add. on_mlp_out gives N2p's output, what joins the residual.
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
//   on_qkv      q [T, H*dh], k and v [T, G*dh] after their biases, q/k norm and RoPE,
//               before the scores: patching a head's query, key or value.
//   on_mlp_out  the MLP's output [T, d] (read-only; OLMo 2: normed), before it joins the
//               residual: direct logit attribution's MLP terms.
//   on_attn_view  after on_attn_out, with the layer's attention input x [T, d]
//               and its gated patterns A [H, T, T] as well: for paths that
//               read the residual through a head's pattern. An OV weight edit
//               W_OV += c a b^T of head h adds c (A_h (x a)) b^T, which z
//               cannot express (z_h = A_h (x W_V + b_V) has lost x).
//
// Resuming. A run can start at block `first_layer` from a residual stream
// the caller gives (another run's hidden[first_layer], changed or not): the
// layers before it are skipped. Activation patching re-runs only what a
// patch changes this way.
//
// Gradients. With `tape` set, the run also keeps what the reverse pass needs
// (ForwardTape). blocks_backward walks the blocks backwards from dL/d(the LM
// head's input) and gives activation gradients, head-gate gradients (the
// importance of interventions.hpp) and weight gradients (the trainer,
// train.hpp); its hooks mirror on_z and on_attn_view. Both passes also take a
// batch of sequences of one length (the trainer's).
//
// Shape legend: N = rows (T tokens, or n_seq sequences of T), d = d_model,
// H = query heads, G = key/value heads, dh = head dim, M = d_mlp, V = vocabulary.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "layers.hpp"
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

// One head's other paths in the reverse pass (batch 1), as
// BackwardOptions::on_attn_view sees them: the mirror of AttentionView.
struct AttentionViewGrad {
  const MatrixRM& input;  // [T, d] what the attention read
  const MatrixRM& dout;   // [T, d] dL/d(the attention's output)
  const MatrixRM& pattern;  // [T, T] the head's gated pattern
  MatrixRM& dpattern;       // [T, T] dL/d pattern: add the paths' share
  MatrixRM* dinput;         // [T, d] dL/d input: add the paths' share (null: not wanted)
};

// The intermediate values of one block that the reverse pass reads.
struct LayerTape {
  MatrixRM ln1_in;            // [N, d] the block input (post-LN: x + attn, the input of LN1)
  MatrixRM attn_in;           // [N, d] attention input
  MatrixRM q, k, v;           // [N, H*dh], [N, G*dh], [N, G*dh]: biases, q/k norm and RoPE applied
  MatrixRM q_pre, k_pre;      // q and k before the q/k norm (config.qk_norm; else empty)
  std::vector<float> probs;   // [n_seq, H, T, T] post-softmax, before the gate
  MatrixRM z;                 // [N, H*dh] what W_O read (after on_z)
  MatrixRM ln2_in;            // [N, d] input of the MLP-side norm (sequential: x + attn; parallel: the block
                              // input; post-LN: mlp + LN1 out)
  MatrixRM ln1_post_in, ln2_post_in;  // [N, d] the attention's and the MLP's outputs before their norms
                                      // (config.norm_after_sublayer; else empty)
  MlpTape mlp;                // the MLP's input and pre-activations
};

struct ForwardTape {
  int n_seq = 1;
  std::vector<float> head_gate;  // [L*H] the run's gate (empty: all 1)
  std::vector<LayerTape> layers;
  Rope rope, rope_local;         // the tables for T positions (R = 0: none), global and local layers'
  MatrixRM final_norm_in;        // [N, d] input of the final norm (pre-LN decoders)
  MatrixRM head_in;              // [N, d] input of the LM head (after the final norm)
  MatrixRM mlm_pre;              // [T, d] BERT MLM head: head_in W + b, before the activation
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
  std::function<void(int layer, MatrixRM& q, MatrixRM& k, MatrixRM& v)> on_qkv;      // [T, H*dh], [T, G*dh] x 2
  std::function<void(int layer, const MatrixRM& mlp_out)> on_mlp_out;                 // [T, d]
  std::function<void(int layer, const AttentionView& view, MatrixRM& attn_out)> on_attn_view;  // attn_out [T, d]
  ForwardTape* tape = nullptr;  // when set, filled for a reverse pass
  // Resuming: with resid_in set, the run skips the embeddings and blocks
  // 0 .. first_layer - 1 and starts block first_layer from *resid_in [T, d]
  // (the residual at its input, as RunResult::hidden[first_layer] holds it).
  // Patterns and hidden states of the skipped layers read 0 (hidden[first_layer] is resid_in).
  int first_layer = 0;
  const MatrixRM* resid_in = nullptr;
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
// context, a token (type) id out of range, a head_gate of the wrong size, a
// resid_in of the wrong shape or a first_layer out of [0, n_layer),
// outputs (patterns, hidden states, logits as asked) over run_output_limit.
Result<RunResult> run_model(const Model& model, const std::vector<int>& ids, const RunOptions& options = {});

// What the unembedding reads, from the LM head's input x [N, d] (the last
// hidden state, RunResult::hidden[L]): BERT's MLM transform (dense,
// activation, LayerNorm; kept in the tape when given), nothing for the
// others. run_model's step 4 before the unembedding.
void lm_head_transform(const Model& model, MatrixRM& x, ForwardTape* tape = nullptr);

// The most logits run_model computes at once (default 8 000 000: 32 MB):
// it unembeds blocks of rows of this size. Tests shrink it.
extern std::int64_t logits_block_values;

// The most bytes a run's outputs may take (1 GB): past it a run is refused
// before anything is allocated, with the sizes in the message.
inline constexpr std::uint64_t run_output_limit = 1000000000;

// run_model's steps 2 and 3, the blocks and the final norm, over n_seq
// sequences of T = x.rows() / n_seq tokens: x [N, d] holds the embeddings on
// entry and the LM head's input on return. The options' gate, hooks and tape
// apply (hooks need n_seq = 1), first_layer included; `out` (or null) receives the patterns and
// hidden states the options want (n_seq = 1; hidden[0] is the caller's).
void blocks_forward(const Model& model, MatrixRM& x, int n_seq, const RunOptions& options, RunResult* out = nullptr);

struct BackwardOptions {
  double* dgate = nullptr;        // [L*H] dL/d head_gate is added (null: not wanted)
  ModelWeights* grads = nullptr;  // weight gradients are added, shapes as the weights (null: not wanted)
  bool want_input = false;        // return dL/d(block 0's input); else the pass stops where nothing else needs it
  // Mirrors of the forward's hooks (batch 1): on_dz gets dL/dz [T, H*dh] before
  // it reaches the heads (the transpose of on_z's edit: e.g. zero the columns
  // of heads whose z was zeroed); on_attn_view adds one head's other paths.
  std::function<void(int layer, MatrixRM& dz)> on_dz;
  std::function<void(int layer, int head, const AttentionViewGrad& grad)> on_attn_view;
};

// The reverse of blocks_forward, from its tape: dx [N, d] = dL/d(the LM
// head's input) in; dL/d(block 0's input) out (when want_input; else what is
// left of dx). Gate and weight gradients go where the options say.
MatrixRM blocks_backward(const Model& model, const ForwardTape& tape, MatrixRM dx, const BackwardOptions& options = {});

}  // namespace hs
