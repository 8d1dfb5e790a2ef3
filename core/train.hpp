// Training of gpt2-family models in the core's own representation (hs::Model):
// GPT-2 initialisation, a forward pass that keeps every activation the
// backward pass needs, the backward pass, AdamW, and the export of the trained
// weights as a Hugging Face GPT-2 state dict. It exists to train the built-in
// model that ships with the page (tests/trainer/train_builtin.cpp), so that the
// weights the page opens with go through exactly the loader that hub
// checkpoints use. The passes are the inference forward's own: embeddings,
// blocks_forward / blocks_backward (forward.hpp) and the unembedding and
// cross-entropy (layers.hpp), over a batch of sequences.
//
// Scope: pre-LN GPT-2 blocks (LayerNorm, gelu_new MLP, learned positions,
// causal attention scaled by 1/sqrt(dh), no GQA, embeddings tied to the
// unembedding, no lm_head bias). check_trainable says what else is refused.
//
// Determinism: everything runs on one thread, in a fixed order, with the
// core's Rng (rng.hpp); the same build given the same seed gives the same
// bits on CPUs that take the same kernel path (gemm_kernel_name(): the
// native kernels choose AVX2 + FMA at run time when the CPU has them).
//
// Shape legend: B = sequences in the batch, T = tokens per sequence,
// N = B*T rows, d = d_model, H = heads, dh = d_head, V = vocabulary,
// M = d_mlp.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "forward.hpp"
#include "linalg.hpp"
#include "model.hpp"
#include "result.hpp"

namespace hs {

// A gpt2-family configuration as GPT2Config would describe it (gelu_new,
// LayerNorm eps 1e-5, d_head = d_model / n_head, tied embeddings).
ModelConfig gpt2_config(int n_layer, int d_model, int n_head, int d_mlp, int d_vocab, int n_ctx);

// Refuses configurations the training passes do not implement, naming the field.
Status check_trainable(const ModelConfig& config);

// How W_pos starts. `normal` is GPT-2's N(0, init_std). `sinusoidal` starts
// it at the sinusoids of Vaswani et al. (pairs sin, cos of p / 10000^(2k/d),
// scaled to the same RMS): still learned, but relative offsets such as "the
// previous token" are then a rotation a low-rank QK circuit can express from
// the first step.
enum class PositionInit { normal, sinusoidal };

struct InitOptions {
  // GPT-2's 0.02 suits d_model 768 (about 0.55 / sqrt(d)); narrow models start
  // faster with a larger value (products such as W_V W_O and W_Q W_K^T start
  // near a saddle at 0 and leave it at a rate set by the initial scale).
  double std = 0.02;
  PositionInit positions = PositionInit::normal;
};

// GPT-2 initialisation (transformers GPT2PreTrainedModel._init_weights):
// weights N(0, std), residual output projections N(0, std/sqrt(2*n_layer)),
// biases 0, LayerNorm weights 1, drawn from Rng(seed). W_U and b_U stay empty:
// the unembedding is W_E^T, as for a tied checkpoint (unembed_tied).
Result<Model> gpt2_init(const ModelConfig& config, std::uint64_t seed, const InitOptions& options = {});

// A ModelWeights of zeros with the same shapes (for gradients and moments).
ModelWeights zeros_like(const ModelWeights& w);

// Every trainable tensor, in a fixed order, named as in the Hugging Face
// GPT-2 state dict. W_U and b_U are not listed: the unembedding is W_E^T.
struct ParamRef {
  std::string name;
  float* data = nullptr;
  std::size_t size = 0;
  bool decay = false;  // weight decay applies to matrices, not to biases or norms
};
std::vector<ParamRef> trainable_params(ModelWeights& w);

// Activations of one forward pass, kept for the backward pass.
struct TrainCache {
  int n_seq = 0, n_tok = 0;
  std::vector<int> tokens, targets;  // [N]; target < 0: no loss at this row
  ForwardTape tape;                // the blocks' activations over all N rows, the head gate included
  MatrixRM logits;                 // [N, V]
  MatrixRM probs;                  // [N, V] softmax of logits (the backward pass overwrites it)
  std::vector<float> row_loss;     // [N]: -log p(target), 0 where target < 0
  int n_targets = 0;
  double loss = 0;                 // mean of row_loss over rows with a target

  // Head h of layer l, sequence b: the [T, T] attention pattern (before the
  // head gate; run_model reports it gated).
  ConstMapRM head_pattern(int l, int b, int h, int n_head) const {
    const std::size_t TT = static_cast<std::size_t>(n_tok) * n_tok;
    return ConstMapRM(tape.layers[l].probs.data() + (static_cast<std::size_t>(b) * n_head + h) * TT, n_tok, n_tok);
  }
};

// Forward pass over B sequences of T tokens (`tokens` and `targets` are [B*T],
// row-major). Returns the mean cross-entropy over rows whose target is >= 0.
// `head_gate` ([n_layer*H], optional) multiplies each head's pattern, as
// transformers' head_mask does (0 = zero-ablation).
Result<double> train_forward(const Model& model, const std::vector<int>& tokens, const std::vector<int>& targets,
                             int n_seq, int n_tok, TrainCache& cache,
                             const std::vector<float>& head_gate = {});

// Backward pass of the last train_forward: writes d(mean loss)/d(weight) into
// `grads` (overwriting it; shapes as zeros_like(model.weights)).
void train_backward(const Model& model, TrainCache& cache, ModelWeights& grads);

struct AdamWConfig {
  float beta1 = 0.9f;
  float beta2 = 0.95f;
  float eps = 1e-8f;
  float weight_decay = 0.1f;  // decoupled, on matrices only
  float grad_clip = 1.0f;     // global L2 norm; <= 0 disables
};

struct AdamWState {
  ModelWeights m, v;  // first and second moments
  std::int64_t step = 0;
};

AdamWState adamw_init(const Model& model);
// One AdamW update with learning rate `lr`. Returns the gradient's global L2
// norm before clipping.
double adamw_step(Model& model, const ModelWeights& grads, AdamWState& state, const AdamWConfig& config, float lr);

// The Hugging Face GPT2LMHeadModel state dict (names with the `transformer.`
// prefix that save_pretrained writes, Conv1D [in, out] orientation, fused
// c_attn columns [Q | K | V], no lm_head: tied).
struct NamedTensor {
  std::string name;
  std::vector<std::int64_t> shape;
  std::vector<float> data;  // row-major
};
std::vector<NamedTensor> gpt2_state_dict(const Model& model);

// config.json text for the model, as GPT2Config.save_pretrained writes it.
std::string gpt2_config_json(const ModelConfig& config, int bos_token_id, int eos_token_id);

}  // namespace hs
