// The layers of the supported transformer families, each as a forward and a
// backward pass side by side (llm.c style): linear maps, embeddings, norms,
// activations, the MLP, RoPE, attention's softmax/pattern/value mixing, the
// unembedding and the cross-entropy. The inference forward (run_model) and
// its reverse pass (blocks_backward, forward.hpp) are built from these; the
// gradient importance (interventions.cpp) and the trainer (train.cpp) go
// through them, so each layer's arithmetic exists once.
//
// Shape legend (TransformerLens names):
//   N = rows: tokens; a batch of n_seq sequences of T tokens is N = n_seq T
//       rows, sequence b in rows [b T, (b + 1) T)
//   T = tokens per sequence, d = d_model, H = query heads, G = key/value
//   heads, dh = head dim, R = rotary dims, M = d_mlp, V = vocabulary.
//
// Conventions. A forward writes (and resizes) its output. A backward reads
// what its forward read (the inputs, recomputing cheap statistics such as a
// norm's mean and 1/std rather than keeping them) and ADDS into the gradient
// of each input (dx += ...) and, when given, of each weight (dW += ...): the
// branches of a residual stream and a tied embedding sum without copies. A
// null gradient pointer is not computed. Element-wise layers (activations,
// RoPE) work in place.
//
// Speed: the products run on the packed GEMM, exp and GELU on their SIMD
// array forms (kernels.hpp), which is where the inference forward's speed
// comes from.
#pragma once

#include <functional>
#include <vector>

#include "linalg.hpp"
#include "model.hpp"

namespace hs {

// ---------------------------------------------------------------------------
// Linear: y [N, n] = x [N, k] W [k, n] (+ b [n])

void linear_forward(MatrixRM& y, const MatrixRM& x, const MatrixRM& W, const RowVectorF* b = nullptr);
// dx [N, k] += dy W^T; dW [k, n] += x^T dy; db [n] += the column sums of dy.
void linear_backward(MatrixRM* dx, MatrixRM* dW, RowVectorF* db, const MatrixRM& dy, const MatrixRM& x,
                     const MatrixRM& W);

// ---------------------------------------------------------------------------
// Embeddings: x [N, d], row i = W_E[ids[i]] + W_pos[i mod T + offset]
// (W_pos null: no learned positions).

void embedding_forward(MatrixRM& x, const std::vector<int>& ids, int T, const WeightMatrix& W_E,
                       const MatrixRM* W_pos, int offset = 0);
// dW_E[ids[i]] += dx[i]; dW_pos[i mod T + offset] += dx[i].
void embedding_backward(MatrixRM* dW_E, MatrixRM* dW_pos, const MatrixRM& dx, const std::vector<int>& ids,
                        int T, int offset = 0);

// ---------------------------------------------------------------------------
// Norms, row by row, statistics in double

// LayerNorm: out [N, d] = (x - mean) / sqrt(var + eps) * w + b (biased
// variance; b may be empty).
void layer_norm_forward(MatrixRM& out, const MatrixRM& x, const RowVectorF& w, const RowVectorF& b,
                        float eps);
// dx += rstd (g - mean(g) - xhat mean(g xhat)) with g = dout w, xhat the
// normalised x; dw += sum over rows of dout xhat; db += sum of dout.
void layer_norm_backward(MatrixRM& dx, RowVectorF* dw, RowVectorF* db, const MatrixRM& dout,
                         const MatrixRM& x, const RowVectorF& w, float eps);

// RMSNorm (LlamaRMSNorm, fp32): out [N, d] = x / sqrt(mean(x^2) + eps) * w.
void rms_norm_forward(MatrixRM& out, const MatrixRM& x, const RowVectorF& w, float eps);
// dx += r dout w - r^3 x mean(dout w x), r = 1 / sqrt(mean(x^2) + eps); dw += sum of dout x r.
void rms_norm_backward(MatrixRM& dx, RowVectorF* dw, const MatrixRM& dout, const MatrixRM& x,
                       const RowVectorF& w, float eps);

// A norm (RMSNorm or LayerNorm without bias) of each head's slice of x
// [N, n_heads * dh], in place: the q/k norms. The weight w is [dh], shared by
// the heads (Qwen3, Gemma 3; OLMo 2 as one head of H * dh), or [n_heads * dh],
// one per head (StableLM). Its reverse: d [N, n_heads * dh] = dL/d(the
// output) in, dL/d(the input) out; x_before: the input; dw (or null) += the
// weight's gradient.
void head_norm_forward(NormKind kind, MatrixRM& x, int n_heads, int dh, const RowVectorF& w, float eps);
void head_norm_backward(NormKind kind, MatrixRM& d, RowVectorF* dw, const MatrixRM& x_before, int n_heads, int dh,
                        const RowVectorF& w, float eps);

// Either, by kind (b and db are LayerNorm's only).
void norm_forward(NormKind kind, float eps, MatrixRM& out, const MatrixRM& x, const RowVectorF& w,
                  const RowVectorF& b);
void norm_backward(NormKind kind, float eps, MatrixRM& dx, RowVectorF* dw, RowVectorF* db,
                   const MatrixRM& dout, const MatrixRM& x, const RowVectorF& w);

// ---------------------------------------------------------------------------
// Activations
//   gelu_new, gelu_fast  x / (1 + e^{-2u}), u = sqrt(2/pi) (x + 0.044715 x^3)
//                        (the tanh form; gelu_tanh in kernels.hpp)
//   gelu                 x Phi(x), the exact (erf) form
//   silu                 x / (1 + e^{-x})
//   relu                 max(x, 0)

float activation(Activation act, float x);       // act(x)
float activation_grad(Activation act, float x);  // act'(x)
// x = act(x) in place ([N, M]; the GELU tanh form on its SIMD kernel).
void activation_forward(MatrixRM& x, Activation act);
// d = d act'(pre) in place, d and pre [N, M].
void activation_backward(MatrixRM& d, const MatrixRM& pre, Activation act);

// ---------------------------------------------------------------------------
// MLP of one layer, plain or gated:
//   plain  out = act(x W_in + b_in) W_out + b_out
//   gated  out = (act(x W_gate + b_gate) * (x W_in + b_in)) W_out + b_out  (LLaMA)

struct MlpTape {
  MatrixRM in;        // [N, d] x
  MatrixRM pre;       // [N, M] x W_in + b_in
  MatrixRM gate_pre;  // [N, M] x W_gate + b_gate (gated)
};

void mlp_forward(MatrixRM& out, const MatrixRM& x, const LayerWeights& L, Activation act, bool gated,
                 MlpTape* tape = nullptr);
// From the tape: dx [N, d] += dL/dx; dL (or null) += the MLP's weight
// gradients (W_in, b_in, W_gate, b_gate, W_out, b_out).
void mlp_backward(MatrixRM& dx, LayerWeights* dL, const MatrixRM& dout, const LayerWeights& L, Activation act,
                  bool gated, const MlpTape& tape);

// ---------------------------------------------------------------------------
// RoPE (rotate_half convention): in each head the first R dims rotate, dim c
// paired with c + R/2, by angle p inv_freq[c] at position p; the remaining
// dh - R pass through (NeoX partial rotary). Row i is at position i mod T.

struct Rope {
  int R = 0;          // rotary dims (0: none)
  MatrixRM cos, sin;  // [T, R/2]
};
// The tables for positions 0..T-1, frequencies rescaled as config.json's
// rope_scaling says (linear, llama3, longrope: its attention factor scales
// cos and sin, so the rotated dims' scores by its square); local: Gemma 3's sliding-window layers'
// tables (base rope_local_theta, no scaling; R = 0 when the model has none).
Rope rope_tables(const ModelConfig& config, int T, bool local = false);
// Layer l rotates with the local tables.
bool uses_local_rope(const ModelConfig& config, int layer);

// x [N, n_heads*dh] in place.
void rope_forward(MatrixRM& x, int n_heads, int dh, const Rope& rope);
// Its transpose (rotation by -angle), in place on dx [N, n_heads*dh].
void rope_backward(MatrixRM& dx, int n_heads, int dh, const Rope& rope);

// ---------------------------------------------------------------------------
// Attention's pattern and value mixing, per sequence and head h (KV head
// g = h / (H/G)):
//   pass 1  S = scale q_h k_g^T                    [T, T]
//           S = c tanh(S / c)                      (Gemma 2's soft-capping, when c > 0)
//   pass 2  P = softmax(S) over the allowed keys   (causal: j <= i; window w: i - w < j)
//   pass 3  Pg = gate_h P                          (transformers' head_mask)
//   pass 4  z_h = Pg v_g                           [T, dh]

struct AttentionSpec {
  int n_head = 0, n_kv_head = 0, d_head = 0;  // H, G, dh
  float scale = 0;
  bool causal = true;
  int window = 0;  // 0: global
  float softcap = 0;  // 0: none
};
// Layer `layer`'s spec (scale_attn_by_inverse_layer_idx and windows included).
AttentionSpec attention_spec(const ModelConfig& config, int layer);

// q [N, H*dh], k and v [N, G*dh] (biases and RoPE applied) -> z [N, H*dh].
// probs [n_seq, H, T, T] (or null): P, before the gate (what the backward
// reads); pattern [n_seq, H, T, T] (or null): Pg. gate [H] (or null: all 1).
void attention_forward(MatrixRM& z, float* probs, float* pattern, const MatrixRM& q, const MatrixRM& k,
                       const MatrixRM& v, int n_seq, const AttentionSpec& spec, const float* gate);

// Other paths that read a head's gated pattern (weight edits, forward.hpp's
// on_attn_view): called for sequence b and head h with Pg [T, T] and
// dL/dPg [T, T], to which it adds its share.
using PatternGradFn = std::function<void(int seq, int head, const MatrixRM& Pg, MatrixRM& dPg)>;

// From dz [N, H*dh] and the forward's q, k, v and probs: dq, dk, dv added
// (all three null: only dgate is wanted); dgate [H] (or null) += dL/dgate_h
// = sum_ij P_h dL/dPg_h, in double, over the sequences.
void attention_backward(MatrixRM* dq, MatrixRM* dk, MatrixRM* dv, double* dgate, const MatrixRM& dz,
                        const MatrixRM& q, const MatrixRM& k, const MatrixRM& v, const float* probs,
                        int n_seq, const AttentionSpec& spec, const float* gate,
                        const PatternGradFn& extra = {});

// ---------------------------------------------------------------------------
// Unembedding: logits [N, V] = x [N, d] W_U (+ b_U when it has V entries),
// W_U = W_E^T read in place when tied (unembed_tied); the packed GEMM either way.

void unembed_forward(MatrixRM& logits, const MatrixRM& x, const ModelWeights& w);
// dx [N, d] += dlogits W_U^T; dw (or null): tied, dw->W_E [V, d] += dlogits^T x,
// else dw->W_U [d, V] += x^T dlogits; dw->b_U += the column sums when the
// model has a b_U and dw holds one.
void unembed_backward(MatrixRM& dx, ModelWeights* dw, const MatrixRM& dlogits, const MatrixRM& x,
                      const ModelWeights& w);

// Gemma 2's final soft-capping, logits = c tanh(logits / c) in place (c =
// config.final_softcap; nothing when 0), and its reverse: dlogits *= 1 -
// (capped / c)^2, from the capped logits.
void logit_softcap_forward(MatrixRM& logits, float cap);
void logit_softcap_backward(MatrixRM& dlogits, const MatrixRM& capped, float cap);

// ---------------------------------------------------------------------------
// Cross-entropy of each row of logits [n, V] against targets[i] (< 0: no loss
// at that row)

// loss [n] (or null) = logsumexp(logits[i]) - logits[i, targets[i]], the sum
// in double over exp_fast terms (1e-7 relative each), 0 without a target;
// probs [n, V] (or null; may be &logits) = the softmax of each row.
void cross_entropy_forward(double* loss, MatrixRM* probs, const MatrixRM& logits, const int* targets);
// dlogits = scale (probs - onehot(targets[i])), in place over probs; rows
// without a target become 0. (scale: 1 / the number of rows in the mean.)
void cross_entropy_backward(MatrixRM& probs, const int* targets, float scale);

}  // namespace hs
