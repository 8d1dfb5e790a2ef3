// The canonical model: one description (ModelConfig, config.hpp) and one
// set of weights (ModelWeights) for every supported architecture family, in
// TransformerLens conventions (row vectors, y = x W). Layout differences
// between checkpoints (Conv1D vs nn.Linear, fused QKV blocks, per-head
// interleaving, prefixes, gamma/beta names, tied embeddings) are resolved
// once, at load, by model_from_checkpoint (checkpoint.hpp); the forward pass
// and every metric read only this.
#pragma once

#include <string>
#include <vector>

#include "config.hpp"
#include "linalg.hpp"
#include "result.hpp"
#include "weight_matrix.hpp"

namespace hs {

// One transformer block. Per-head matrices are stored side by side: head h of
// W_Q is the column block W_Q.middleCols(h*dh, dh), i.e. TL's W_Q[h] [d, dh];
// W_O's head h is the row block W_O.middleRows(h*dh, dh), TL's W_O[h] [dh, d].
// K and V keep their G un-expanded heads; query head h reads KV head
// h / (H/G).
struct LayerWeights {
  MatrixRM W_Q;  // [d, H*dh]
  MatrixRM W_K;  // [d, G*dh]
  MatrixRM W_V;  // [d, G*dh]
  MatrixRM W_O;  // [H*dh, d]
  RowVectorF b_Q, b_K, b_V;  // [H*dh], [G*dh], [G*dh] (zeros when absent)
  RowVectorF b_O;            // [d]
  RowVectorF q_norm_w, k_norm_w;  // q/k norm weights (config.qk_norm): [dh] shared by the heads (Qwen3, Gemma 3), or
                                  // [H*dh] and [G*dh] (OLMo 2's whole projection, StableLM's one per head); else empty
  // The norms (config.pre_norm, config.norm_after_sublayer); b empty for
  // RMSNorm, all empty when the model has no such norm.
  RowVectorF ln1_w, ln1_b;  // attention-input norm (post-LN BERT: after attention + residual)
  RowVectorF ln2_w, ln2_b;  // MLP-input norm (post-LN BERT: after MLP + residual)
  RowVectorF ln1_post_w, ln1_post_b;  // on the attention's output (OLMo 2, Gemma 2/3)
  RowVectorF ln2_post_w, ln2_post_b;  // on the MLP's output (OLMo 2, Gemma 2/3)

  // The MLP's matrices keep a 16-bit checkpoint's storage (weight_matrix.hpp).
  WeightMatrix W_in;    // [d, d_mlp]
  WeightMatrix W_gate;  // [d, d_mlp], gated MLPs only
  RowVectorF b_in;  // [d_mlp]
  RowVectorF b_gate;  // [d_mlp], gated MLPs only (zeros when absent)
  WeightMatrix W_out;   // [d_mlp, d]
  RowVectorF b_out;  // [d]
};

struct ModelWeights {
  WeightMatrix W_E;     // [V, d] (16-bit when the checkpoint's is)
  MatrixRM W_pos;       // [n_pos, d] learned positions (rows as stored; OPT includes its 2 offset rows)
  MatrixRM W_type;      // [type_vocab, d] BERT token types
  RowVectorF ln_embed_w, ln_embed_b;  // BERT embedding LayerNorm
  std::vector<LayerWeights> layers;
  RowVectorF ln_final_w, ln_final_b;  // final norm of pre-LN decoders
  WeightMatrix W_U;  // [d, V]; empty when tied to W_E (see unembed_tied); 16-bit when the checkpoint's is
  RowVectorF b_U;  // [V] (zeros when absent)
  // BERT MLM head (transform dense + LN, then decoder tied to W_E), when present.
  MatrixRM mlm_dense_W;  // [d, d]
  RowVectorF mlm_dense_b, mlm_ln_w, mlm_ln_b;
};

struct Model {
  ModelConfig config;
  ModelWeights weights;
  std::vector<std::string> warnings;  // e.g. NaN/Inf weights
};

// The model adds a learned positional embedding matrix W_pos (not rotary
// positions): the positional QK circuit is defined.
inline bool has_position_matrix(const ModelConfig& c) { return c.learned_positions && c.rotary_dim == 0; }

// Heads named by flat index layer * n_head + head (RunOptions::head_gate's
// layout): an error names the first index out of range.
inline Status check_head_list(const ModelConfig& c, const std::vector<int>& heads) {
  const int n = c.n_layer * c.n_head;
  for (std::size_t i = 0; i < heads.size(); ++i)
    if (heads[i] < 0 || heads[i] >= n)
      return make_error("head index " + std::to_string(heads[i]) + " (entry " + std::to_string(i) +
                        ") is out of range: heads are layer * n_head + head < " + std::to_string(n));
  return Ok{};
}

// Head h's blocks, TransformerLens shapes.
inline auto head_W_Q(const LayerWeights& l, int h, int dh) { return l.W_Q.middleCols(h * dh, dh); }
inline auto head_W_O(const LayerWeights& l, int h, int dh) { return l.W_O.middleRows(h * dh, dh); }
inline int kv_head_of(const ModelConfig& c, int h) { return h / (c.n_head / c.n_kv_head); }
inline auto head_W_K(const LayerWeights& l, const ModelConfig& c, int h) {
  return l.W_K.middleCols(kv_head_of(c, h) * c.d_head, c.d_head);
}
inline auto head_W_V(const LayerWeights& l, const ModelConfig& c, int h) {
  return l.W_V.middleCols(kv_head_of(c, h) * c.d_head, c.d_head);
}

// The unembedding [d, V]. When it is the input embedding transposed (tied
// embeddings: GPT-2 and most small models) the loader leaves W_U empty instead
// of holding W_E twice (154 MB for GPT-2 small), so code that reads the
// unembedding goes through these rather than W_U. An explicit W_U (untied
// checkpoints) is used as is.
inline bool unembed_tied(const ModelWeights& w) { return w.W_U.size() == 0 && w.W_E.size() > 0; }
// The model has an LM head whose unembedding is there (tied or not).
inline bool has_unembedding(const Model& m) {
  return m.config.has_lm_head && (m.weights.W_U.size() > 0 || unembed_tied(m.weights));
}
// V: the unembedding's number of columns (0 when there is none).
inline Eigen::Index unembed_vocab(const ModelWeights& w) { return unembed_tied(w) ? w.W_E.rows() : w.W_U.cols(); }
// d: the unembedding's number of rows.
inline Eigen::Index unembed_dim(const ModelWeights& w) { return unembed_tied(w) ? w.W_E.cols() : w.W_U.rows(); }
// Columns [t0, t0 + n) of the unembedding, [d, n] (a copy of W_U's, or of
// W_E's rows transposed). The caller keeps within [0, unembed_vocab).
inline MatrixRM unembedding_block(const ModelWeights& w, Eigen::Index t0, Eigen::Index n) {
  if (unembed_tied(w)) return w.W_E.rows_f32(t0, n).transpose();
  return w.W_U.cols_f32(t0, n);
}
// The whole unembedding [d, V], materialised (process_weights, tests).
inline MatrixRM unembedding_matrix(const ModelWeights& w) { return unembedding_block(w, 0, unembed_vocab(w)); }

}  // namespace hs
