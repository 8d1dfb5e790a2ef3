// The description of a model (ModelConfig): its architecture family, sizes,
// norms, activation, positions and which optional parameters it has, read
// from a Hugging Face config.json with the transformers class defaults of
// SPEC §2.1 for every absent field. The weights it describes are model.hpp's;
// checkpoint.hpp reads them.
#pragma once

#include <string>
#include <vector>

#include "result.hpp"

namespace hs {

enum class Family { gpt2, gpt_neox, llama, bert, gpt_neo, opt };
enum class NormKind { layer_norm, rms_norm };
enum class Activation { gelu_new, gelu, gelu_fast, silu, relu };
// How RoPE frequencies are rescaled for long contexts (config.json rope_scaling).
enum class RopeScaling { none, linear, llama3, longrope };
enum class QkNorm { none, per_head, whole };

struct ModelConfig;
// Layer l rotates q and k (a rotary model, and not one of SmolLM3's NoPE layers).
bool layer_uses_rope(const ModelConfig& config, int layer);

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
  bool fused_projections = false;  // Phi-3: one qkv_proj and one gate_up_proj tensor per layer
  bool causal = true;              // false for BERT
  bool post_ln = false;            // BERT: h = LN(h + sublayer(h))
  bool parallel_residual = false;  // NeoX: h = h + attn(LN1 h) + mlp(LN2 h)
  float attn_scale = 0;            // scores are q.k * attn_scale (1/sqrt(dh), or 1 for GPT-Neo)
  // A norm of q and k (of the model's norm kind, without bias) after the
  // projections, before RoPE: per_head over each head's dh slice, with one
  // weight [dh] for all heads (Qwen3, Gemma 3) or one per head when
  // qk_norm_each_head (StableLM's q_layernorm.norms.{h}); whole over the
  // projection (OLMo 2, weights [H*dh] and [G*dh]).
  QkNorm qk_norm = QkNorm::none;
  bool qk_norm_each_head = false;
  // Sequential blocks' norms: before each sublayer (ln1, ln2), on each
  // sublayer's output before it joins the residual (ln1_post, ln2_post), or
  // both: pre-LN GPT-2/LLaMA x = x + attn(N1 x); OLMo 2 x = x + N1p(attn(x));
  // Gemma 2/3 x = x + N1p(attn(N1 x)), and the same around the MLP.
  bool pre_norm = true;
  bool norm_after_sublayer = false;
  bool norm_plus_one = false;  // Gemma: RMSNorm scales by (1 + w); the loader stores 1 + w as the weight
  float embed_scale = 1.f;     // Gemma: the embeddings are multiplied by sqrt(d_model) (not the unembedding)
  float attn_softcap = 0;      // Gemma 2: scores s -> c tanh(s / c) after the scale, before mask and softmax (0: none)
  float final_softcap = 0;     // Gemma 2: logits -> c tanh(logits / c) (0: none)
  bool scale_by_inverse_layer = false;  // GPT-2 scale_attn_by_inverse_layer_idx

  // Positions.
  bool learned_positions = false;
  int position_offset = 0;  // OPT reads row p + 2
  int rotary_dim = 0;       // 0: no rotary; rotate_half convention
  float rope_theta = 10000.f;
  std::vector<int> window;  // per layer: 0 = global, w > 0 = key j allowed iff i - w < j <= i
  std::vector<int> rope_layers;  // per layer: 1 = rotary, 0 = no positions (SmolLM3's NoPE layers); empty = all rotary
  RopeScaling rope_scaling = RopeScaling::none;
  float rope_factor = 1.f;            // linear and llama3
  float rope_low_freq_factor = 1.f;   // llama3
  float rope_high_freq_factor = 4.f;  // llama3
  int rope_original_ctx = 8192;       // llama3, longrope: original_max_position_embeddings
  // LongRoPE (Phi-3.5, Phi-4-mini): per-frequency divisors [R/2], the short
  // ones for texts up to rope_original_ctx tokens and the long ones beyond,
  // and cos/sin multiplied by rope_attention_factor.
  std::vector<float> rope_short_factor, rope_long_factor;
  float rope_attention_factor = 1.f;
  // Gemma 3: sliding-window layers rotate with this base and no scaling, the
  // global ones with rope_theta and rope_scaling (0: every layer as the global ones).
  float rope_local_theta = 0;

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

const char* family_name(Family family);
// Names of the model_type values config_from_json accepts.
std::vector<std::string> supported_model_types();

// Parses config.json text into a ModelConfig; unknown model_type or
// inconsistent sizes give an Error naming the field.
Result<ModelConfig> config_from_json(const std::string& json_text);

}  // namespace hs
