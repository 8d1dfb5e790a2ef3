// The canonical model: one description (ModelConfig) and one set of weights
// (ModelWeights) for every supported architecture family, in TransformerLens
// conventions (row vectors, y = x W). Layout differences between checkpoints
// (Conv1D vs nn.Linear, fused QKV blocks, per-head interleaving, prefixes,
// gamma/beta names, tied embeddings) are resolved once, at load, by
// model_from_checkpoint; the forward pass and every metric read only this.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "linalg.hpp"
#include "result.hpp"
#include "safetensors.hpp"

namespace hs {

enum class Family { gpt2, gpt_neox, llama, bert, gpt_neo, opt };
enum class NormKind { layer_norm, rms_norm };
enum class Activation { gelu_new, gelu, gelu_fast, silu, relu };
// How RoPE frequencies are rescaled for long contexts (config.json rope_scaling).
enum class RopeScaling { none, linear, llama3 };

struct ModelConfig {
  std::string model_type;  // as written in config.json ("gpt2", "qwen2", ...)
  Family family = Family::gpt2;

  int n_layer = 0;
  int d_model = 0;
  int n_head = 0;     // query heads, H
  int n_kv_head = 0;  // key/value heads, G (== H without GQA)
  int d_head = 0;
  int d_mlp = 0;
  int d_vocab = 0;
  int n_ctx = 0;  // maximum sequence length

  NormKind norm = NormKind::layer_norm;
  float norm_eps = 1e-5f;
  Activation act = Activation::gelu_new;
  bool gated_mlp = false;          // LLaMA: down(act(gate(x)) * up(x))
  bool causal = true;              // false for BERT
  bool post_ln = false;            // BERT: h = LN(h + sublayer(h))
  bool parallel_residual = false;  // NeoX: h = h + attn(LN1 h) + mlp(LN2 h)
  float attn_scale = 0;            // scores are q.k * attn_scale (1/sqrt(dh), or 1 for GPT-Neo)
  bool scale_by_inverse_layer = false;  // GPT-2 scale_attn_by_inverse_layer_idx

  // Positions.
  bool learned_positions = false;
  int position_offset = 0;  // OPT reads row p + 2
  int rotary_dim = 0;       // 0: no rotary; rotate_half convention
  float rope_theta = 10000.f;
  std::vector<int> window;  // per layer: 0 = global, w > 0 = key j allowed iff i - w < j <= i
  RopeScaling rope_scaling = RopeScaling::none;
  float rope_factor = 1.f;            // linear and llama3
  float rope_low_freq_factor = 1.f;   // llama3
  float rope_high_freq_factor = 4.f;  // llama3
  int rope_original_ctx = 8192;       // llama3 original_max_position_embeddings

  int type_vocab_size = 0;  // BERT token types
  bool tied_embeddings = true;
  bool has_lm_head = true;  // false for BERT without an MLM head
  int bos_token_id = -1;

  // Which optional parameters the checkpoint carries; absent ones are zeros
  // (biases) or ones (norm weights) in ModelWeights.
  bool qkv_bias = true;     // b_Q, b_K, b_V
  bool out_bias = true;     // b_O
  bool mlp_bias = true;     // b_in (and b_gate), b_out
  bool norm_bias = true;    // LayerNorm beta (false for RMSNorm)
  bool norm_affine = true;  // LayerNorm gamma/beta stored at all (OPT layer_norm_elementwise_affine)
  bool final_norm = true;   // a final norm before the unembedding (pre-LN decoders)

  // Loaded with its attention weights only (CheckpointOptions): no
  // embeddings, MLPs or unembedding, so the weight geometry of the heads
  // works and anything that runs text refuses (kAttentionOnlyMessage).
  bool attention_only = false;
};

inline constexpr const char* kAttentionOnlyMessage =
    "this model was loaded with its attention weights only (for weight geometry): load it in full to run text";

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

  RowVectorF ln1_w, ln1_b;  // attention-input norm (post-LN: after attention); b empty for RMSNorm
  RowVectorF ln2_w, ln2_b;  // MLP-input norm (post-LN: after the MLP)

  MatrixRM W_in;    // [d, d_mlp]
  MatrixRM W_gate;  // [d, d_mlp], gated MLPs only
  RowVectorF b_in;  // [d_mlp]
  RowVectorF b_gate;  // [d_mlp], gated MLPs only (zeros when absent)
  MatrixRM W_out;   // [d_mlp, d]
  RowVectorF b_out;  // [d]
};

struct ModelWeights {
  MatrixRM W_E;         // [V, d]
  MatrixRM W_pos;       // [n_pos, d] learned positions (rows as stored; OPT includes its 2 offset rows)
  MatrixRM W_type;      // [type_vocab, d] BERT token types
  RowVectorF ln_embed_w, ln_embed_b;  // BERT embedding LayerNorm
  std::vector<LayerWeights> layers;
  RowVectorF ln_final_w, ln_final_b;  // final norm of pre-LN decoders
  MatrixRM W_U;    // [d, V]; empty when tied to W_E (see unembed_tied)
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
// checkpoints, training's tie_unembedding) is used as is.
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
MatrixRM unembedding_block(const ModelWeights& w, Eigen::Index t0, Eigen::Index n);
// The whole unembedding [d, V], materialised (process_weights, tests).
inline MatrixRM unembedding_matrix(const ModelWeights& w) { return unembedding_block(w, 0, unembed_vocab(w)); }

const char* family_name(Family family);
// Names of the model_type values config_from_json accepts.
std::vector<std::string> supported_model_types();

// Parses config.json text into a ModelConfig; unknown model_type or
// inconsistent sizes give an Error naming the field.
Result<ModelConfig> config_from_json(const std::string& json_text);

// Builds the canonical model from a config and the checkpoint's tensors
// (any known prefix, gamma/beta, tied embeddings, buffers ignored). Tensors
// are decoded straight into the weights (through a scratch of at most a few
// hundred KB for transposes and splits), so the peak is the weights plus
// whatever holds the files; with files parsed from their headers and a
// reader (SafetensorsFile::reader) that is the weights alone. Tied
// embeddings leave W_U empty (unembed_tied).
// attention_only: read only the attention projections, their biases and the
// blocks' norms (attention_tensor): enough for every per-head weight metric,
// a fraction of the download and of the memory. The config says so
// (ModelConfig::attention_only).
struct CheckpointOptions {
  bool attention_only = false;
};
Result<Model> model_from_checkpoint(const ModelConfig& config, const std::vector<const SafetensorsFile*>& shards,
                                    const CheckpointOptions& options = {});
// Whether the checkpoint tensor `name` (as stored, any known prefix) is one
// an attention-only load reads: the attention projections (weights and
// biases) and the norms of the blocks.
bool attention_tensor(const ModelConfig& config, const std::string& name);
// The scratch's size in float values (default 65536: 256 KB; at least one row
// is read at a time). Tests shrink it so that the row-block paths run.
extern std::int64_t checkpoint_scratch_values;

}  // namespace hs
