// The forward pass, llm.c style: one free function per layer kind, each with
// its shapes, and run_model reading top to bottom. Shape legend:
//   T = tokens, d = d_model, H = query heads, G = key/value heads,
//   dh = head dim, R = rotary dims, M = d_mlp, V = vocabulary.
// Every product is a GEMM over all tokens at once ([T, d] x [d, H*dh], and
// per head [T, dh] x [dh, T]); there are no per-token matrix loops.
#include "forward.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "kernels.hpp"

namespace hs {

float activation_apply(Activation act, float x) {
  switch (act) {
    case Activation::gelu_new: {
      const float k = 0.7978845608028654f;  // sqrt(2/pi)
      return 0.5f * x * (1.f + std::tanh(k * (x + 0.044715f * x * x * x)));
    }
    case Activation::gelu: return 0.5f * x * (1.f + std::erf(x * 0.7071067811865476f));
    case Activation::gelu_fast: return 0.5f * x * (1.f + std::tanh(x * 0.7978845608f * (1.f + 0.044715f * x * x)));
    case Activation::silu: return x / (1.f + std::exp(-x));
    case Activation::relu: return x > 0.f ? x : 0.f;
  }
  return x;
}

// x [T, d] -> out [T, d]: (x - mean) / sqrt(var + eps) * w + b, biased variance.
void layer_norm_forward(MatrixRM& out, const MatrixRM& x, const RowVectorF& w, const RowVectorF& b, float eps) {
  const Eigen::Index T = x.rows(), d = x.cols();
  out.resize(T, d);
  for (Eigen::Index t = 0; t < T; ++t) {
    double mean = 0, var = 0;
    for (Eigen::Index m = 0; m < d; ++m) mean += x(t, m);
    mean /= d;
    for (Eigen::Index m = 0; m < d; ++m) var += (x(t, m) - mean) * (x(t, m) - mean);
    var /= d;
    const float mu = static_cast<float>(mean);
    const float rstd = static_cast<float>(1.0 / std::sqrt(var + eps));
    for (Eigen::Index m = 0; m < d; ++m) out(t, m) = (x(t, m) - mu) * rstd * w[m] + (b.size() ? b[m] : 0.f);
  }
}

namespace {

// x [T, d] -> out [T, d]: x / sqrt(mean(x^2) + eps) * w (LlamaRMSNorm, fp32).
void rms_norm_forward(MatrixRM& out, const MatrixRM& x, const RowVectorF& w, float eps) {
  const Eigen::Index T = x.rows(), d = x.cols();
  out.resize(T, d);
  for (Eigen::Index t = 0; t < T; ++t) {
    double ms = 0;
    for (Eigen::Index m = 0; m < d; ++m) ms += double(x(t, m)) * x(t, m);
    const float rstd = static_cast<float>(1.0 / std::sqrt(ms / d + eps));
    for (Eigen::Index m = 0; m < d; ++m) out(t, m) = w[m] * (x(t, m) * rstd);
  }
}

void norm_forward(const ModelConfig& c, MatrixRM& out, const MatrixRM& x, const RowVectorF& w, const RowVectorF& b) {
  if (c.norm == NormKind::rms_norm) rms_norm_forward(out, x, w, c.norm_eps);
  else layer_norm_forward(out, x, w, b, c.norm_eps);
}

void activation_forward(MatrixRM& x, Activation act) {
  float* p = x.data();
  const Eigen::Index n = x.size();
  // gelu_new and gelu_fast are the same function; libm's tanhf costs ~150 ms
  // per GPT-2-small forward in wasm, the SIMD form (kernels.hpp) a few ms.
  if (act == Activation::gelu_new || act == Activation::gelu_fast) return gelu_tanh_inplace(p, static_cast<std::size_t>(n));
  for (Eigen::Index i = 0; i < n; ++i) p[i] = activation_apply(act, p[i]);
}

// RoPE tables for positions 0..T-1: cos, sin [T, R/2] (rotate_half convention).
struct Rope {
  int R = 0;
  MatrixRM cos, sin;
};

Rope rope_tables(const ModelConfig& c, int T) {
  Rope r;
  r.R = c.rotary_dim;
  if (r.R == 0) return r;
  const int half = r.R / 2;
  std::vector<float> inv_freq(half);
  for (int j = 0; j < half; ++j)
    inv_freq[j] = 1.f / std::pow(c.rope_theta, static_cast<float>(2 * j) / static_cast<float>(r.R));
  if (c.rope_scaling == RopeScaling::linear) {
    for (float& f : inv_freq) f /= c.rope_factor;
  } else if (c.rope_scaling == RopeScaling::llama3) {
    // transformers _compute_llama3_parameters: divide low frequencies by
    // factor, keep high ones, interpolate in between.
    const double pi = 3.14159265358979323846;
    const double low_wavelen = c.rope_original_ctx / c.rope_low_freq_factor;
    const double high_wavelen = c.rope_original_ctx / c.rope_high_freq_factor;
    for (float& f : inv_freq) {
      const double wavelen = 2 * pi / f;
      double out = wavelen > low_wavelen ? f / c.rope_factor : f;
      if (!(wavelen < high_wavelen) && !(wavelen > low_wavelen)) {
        const double smooth = (c.rope_original_ctx / wavelen - c.rope_low_freq_factor) /
                              (c.rope_high_freq_factor - c.rope_low_freq_factor);
        out = (1 - smooth) * out / c.rope_factor + smooth * out;
      }
      f = static_cast<float>(out);
    }
  }
  r.cos.resize(T, half);
  r.sin.resize(T, half);
  for (int t = 0; t < T; ++t)
    for (int j = 0; j < half; ++j) {
      const float angle = static_cast<float>(t) * inv_freq[j];
      r.cos(t, j) = std::cos(angle);
      r.sin(t, j) = std::sin(angle);
    }
  return r;
}

// x [T, n_heads*dh], in place: the first R dims of each head rotate, dim c
// paired with c + R/2; the remaining dh - R pass through (NeoX partial rotary).
void rope_forward(MatrixRM& x, int n_heads, int dh, const Rope& r) {
  const int half = r.R / 2;
  for (Eigen::Index t = 0; t < x.rows(); ++t)
    for (int h = 0; h < n_heads; ++h) {
      float* v = &x(t, h * dh);
      for (int j = 0; j < half; ++j) {
        const float x1 = v[j], x2 = v[j + half], cs = r.cos(t, j), sn = r.sin(t, j);
        v[j] = x1 * cs - x2 * sn;
        v[j + half] = x2 * cs + x1 * sn;
      }
    }
}

// Self-attention of one layer.
//   xn [T, d] the (normed) input; out [T, d]; gate [H] or null;
//   pattern [H, T, T] or null: written with the post-softmax (gated) pattern;
//   tape or null: keeps q, k, v and the pre-gate probabilities.
void attention_forward(const ModelConfig& c, const LayerWeights& L, int layer, const MatrixRM& xn, const Rope& rope,
                       const float* gate, float* pattern, const RunOptions& opt, LayerTape* tape, MatrixRM& out) {
  const int T = static_cast<int>(xn.rows()), H = c.n_head, G = c.n_kv_head, dh = c.d_head;
  const int group = H / G;
  // on_attn_view reads the patterns even when the caller does not keep them.
  std::vector<float> local_pattern;
  if (!pattern && opt.on_attn_view) {
    local_pattern.resize(static_cast<std::size_t>(H) * T * T);
    pattern = local_pattern.data();
  }
  if (tape) {
    tape->attn_in = xn;
    tape->probs.assign(static_cast<std::size_t>(H) * T * T, 0.f);
  }

  // pass 1: projections, biases included (before RoPE, as NeoX and Qwen2 do)
  MatrixRM q, k, v;
  matmul(q, xn, L.W_Q, &L.b_Q);  // [T, H*dh]
  matmul(k, xn, L.W_K, &L.b_K);  // [T, G*dh]
  matmul(v, xn, L.W_V, &L.b_V);  // [T, G*dh]

  // pass 2: rotary positions on q and k
  if (rope.R > 0) {
    rope_forward(q, H, dh, rope);
    rope_forward(k, G, dh, rope);
  }
  if (tape) {
    tape->q = q;
    tape->k = k;
    tape->v = v;
  }

  // pass 3: per head, scores -> mask -> softmax -> gate; pass 4: z_h = P v_g
  const float scale = c.scale_by_inverse_layer ? c.attn_scale / static_cast<float>(layer + 1) : c.attn_scale;
  const int window = c.window.empty() ? 0 : c.window[layer];
  MatrixRM z(T, H * dh);  // [T, H*dh]
  MatrixRM P(T, T);       // [T, T] scores, then probabilities
  const MatrixRM kT = k.transpose();  // [G*dh, T]: head g's keys are rows [g*dh, (g+1)*dh)
  for (int h = 0; h < H; ++h) {
    const int g = h / group;
    gemm(T, T, dh, q.data() + h * dh, H * dh, kT.data() + static_cast<std::ptrdiff_t>(g) * dh * T, T, P.data(), T);
    const float gh = gate ? gate[h] : 1.f;
    for (int i = 0; i < T; ++i) {
      // Allowed keys: [lo, hi]. Causal: j <= i; window w: i - w < j.
      const int hi = c.causal ? i : T - 1;
      const int lo = (c.causal && window > 0) ? std::max(0, i - window + 1) : 0;
      float* row = &P(i, 0);
      float mx = -std::numeric_limits<float>::infinity();
      for (int j = lo; j <= hi; ++j) {
        row[j] *= scale;
        mx = std::max(mx, row[j]);
      }
      for (int j = lo; j <= hi; ++j) row[j] -= mx;
      exp_inplace(row + lo, static_cast<std::size_t>(hi - lo + 1));
      float sum = 0;
      for (int j = lo; j <= hi; ++j) sum += row[j];
      const float inv = 1.f / sum;
      for (int j = 0; j < lo; ++j) row[j] = 0.f;
      if (tape) {
        float* kept = tape->probs.data() + (static_cast<std::size_t>(h) * T + i) * T;
        for (int j = lo; j <= hi; ++j) kept[j] = row[j] * inv;
      }
      for (int j = lo; j <= hi; ++j) row[j] = row[j] * inv * gh;
      for (int j = hi + 1; j < T; ++j) row[j] = 0.f;
    }
    gemm(T, dh, T, P.data(), T, v.data() + g * dh, G * dh, z.data() + h * dh, H * dh);  // z_h = P v_g
    if (pattern) std::copy(P.data(), P.data() + static_cast<std::size_t>(T) * T, pattern + static_cast<std::size_t>(h) * T * T);
  }

  // pass 5: hooks around the output projection
  if (opt.on_z) opt.on_z(layer, z);
  matmul(out, z, L.W_O, &L.b_O);  // [T, d]
  if (opt.on_attn_out) opt.on_attn_out(layer, z, out);
  if (opt.on_attn_view) opt.on_attn_view(layer, AttentionView{xn, pattern, z}, out);
}

// xn [T, d] -> out [T, d]: W_out act(xn W_in + b_in) + b_out, or the gated
// form W_out (act(xn W_gate + b_gate) * (xn W_in + b_in)) + b_out.
void mlp_forward(const ModelConfig& c, const LayerWeights& L, const MatrixRM& xn, LayerTape* tape, MatrixRM& out) {
  MatrixRM hid;
  matmul(hid, xn, L.W_in, &L.b_in);  // [T, M]
  if (tape) {
    tape->mlp_in = xn;
    tape->mlp_pre = hid;
  }
  if (c.gated_mlp) {
    MatrixRM gate;
    matmul(gate, xn, L.W_gate, L.b_gate.size() ? &L.b_gate : nullptr);  // [T, M]
    if (tape) tape->mlp_gate_pre = gate;
    activation_forward(gate, c.act);
    hid.array() *= gate.array();
  } else {
    activation_forward(hid, c.act);
  }
  matmul(out, hid, L.W_out, &L.b_out);  // [T, d]
}

void copy_rows(std::vector<float>& dst, std::size_t slot, const MatrixRM& x) {
  std::copy(x.data(), x.data() + x.size(), dst.begin() + slot * x.size());
}

}  // namespace

void unembed_logits(MatrixRM& logits, const MatrixRM& x, const ModelWeights& w) {
  if (!unembed_tied(w)) {
    matmul(logits, x, w.W_U, &w.b_U);
    return;
  }
  // x W_E^T as (W_E x^T)^T: W_E [V, d] is the packed GEMM's A as stored.
  // Blocks of 4096 tokens keep the transposed product's buffer small.
  const int T = static_cast<int>(x.rows()), V = static_cast<int>(w.W_E.rows()), d = static_cast<int>(x.cols());
  const MatrixRM xt = x.transpose();  // [d, T]
  logits.resize(T, V);
  const int block = 4096;
  MatrixRM lt(std::min(block, V), T);
  for (int v0 = 0; v0 < V; v0 += block) {
    const int n = std::min(block, V - v0);
    gemm(n, T, d, w.W_E.data() + static_cast<std::size_t>(v0) * d, d, xt.data(), T, lt.data(), T);
    logits.middleCols(v0, n) = lt.topRows(n).transpose();
  }
  if (w.b_U.size() == V) logits.rowwise() += w.b_U;
}

MatrixRM unembed_backward(const MatrixRM& dlogits, const ModelWeights& w) {
  if (unembed_tied(w)) {
    MatrixRM dx;
    matmul(dx, dlogits, w.W_E);  // dlogits (W_E^T)^T
    return dx;
  }
  // dlogits W_U^T as (W_U dlogits^T)^T: W_U [d, V] is A as stored.
  const int T = static_cast<int>(dlogits.rows()), V = static_cast<int>(w.W_U.cols()), d = static_cast<int>(w.W_U.rows());
  const MatrixRM gt = dlogits.transpose();  // [V, T]
  MatrixRM dxt(d, T);
  gemm(d, T, V, w.W_U.data(), V, gt.data(), T, dxt.data(), T);
  return dxt.transpose();
}

Result<RunResult> run_model(const Model& model, const std::vector<int>& ids, const RunOptions& opt) {
  const ModelConfig& c = model.config;
  const ModelWeights& w = model.weights;
  const int T = static_cast<int>(ids.size()), L = c.n_layer, H = c.n_head, d = c.d_model, V = c.d_vocab;

  // Checks on the input.
  if (c.attention_only) return make_error(kAttentionOnlyMessage);
  if (T == 0) return make_error("run_model: no tokens to run");
  if (T > c.n_ctx)
    return make_error("text is " + std::to_string(T) + " tokens; this model's context is " + std::to_string(c.n_ctx));
  for (int t = 0; t < T; ++t)
    if (ids[t] < 0 || ids[t] >= V)
      return make_error("token id " + std::to_string(ids[t]) + " at position " + std::to_string(t) +
                        " is out of range (the vocabulary has " + std::to_string(V) + " tokens)");
  if (!opt.head_gate.empty() && static_cast<int>(opt.head_gate.size()) != L * H)
    return make_error("run_model: head_gate has " + std::to_string(opt.head_gate.size()) + " entries, expected n_layer x n_head = " +
                      std::to_string(L * H));
  if (!opt.token_type_ids.empty()) {
    if (static_cast<int>(opt.token_type_ids.size()) != T)
      return make_error("run_model: token_type_ids has " + std::to_string(opt.token_type_ids.size()) + " entries for " +
                        std::to_string(T) + " tokens");
    const int n_types = std::max(1, c.type_vocab_size);
    for (int t = 0; t < T; ++t)
      if (opt.token_type_ids[t] < 0 || opt.token_type_ids[t] >= n_types)
        return make_error("token type id " + std::to_string(opt.token_type_ids[t]) + " at position " + std::to_string(t) +
                          " is out of range (the model has " + std::to_string(n_types) + " token types)");
  }
  if (static_cast<int>(w.layers.size()) != L) return make_error("run_model: the model has no weights loaded");

  RunResult res;
  res.n_layer = L;
  res.n_head = H;
  res.n_tokens = T;
  res.d_model = d;
  res.d_vocab = V;
  if (opt.want_patterns) res.patterns.assign(static_cast<std::size_t>(L) * H * T * T, 0.f);
  if (opt.want_hidden) res.hidden.assign(static_cast<std::size_t>(L + 1) * T * d, 0.f);

  // 1. Embeddings: x [T, d].
  MatrixRM x(T, d);
  for (int t = 0; t < T; ++t) {
    x.row(t) = w.W_E.row(ids[t]);
    if (c.learned_positions) x.row(t) += w.W_pos.row(t + c.position_offset);
    if (c.type_vocab_size > 0) x.row(t) += w.W_type.row(opt.token_type_ids.empty() ? 0 : opt.token_type_ids[t]);
  }
  if (c.family == Family::bert) {
    MatrixRM e;
    layer_norm_forward(e, x, w.ln_embed_w, w.ln_embed_b, c.norm_eps);
    x.swap(e);
  }
  if (opt.want_hidden) copy_rows(res.hidden, 0, x);

  // 2. Blocks.
  const Rope rope = rope_tables(c, T);
  ForwardTape* tape = opt.tape;
  if (tape) {
    tape->layers.assign(L, LayerTape{});
    tape->rope_cos = rope.cos;
    tape->rope_sin = rope.sin;
  }
  MatrixRM xn, a, m;  // [T, d] scratch: normed input, attention out, MLP out
  for (int l = 0; l < L; ++l) {
    const LayerWeights& lw = w.layers[l];
    const float* gate = opt.head_gate.empty() ? nullptr : opt.head_gate.data() + static_cast<std::size_t>(l) * H;
    float* pattern = opt.want_patterns ? res.patterns.data() + static_cast<std::size_t>(l) * H * T * T : nullptr;
    LayerTape* lt = tape ? &tape->layers[l] : nullptr;
    if (c.post_ln) {
      // BERT: x = LN1(x + attn(x)); x = LN2(x + mlp(x)).
      attention_forward(c, lw, l, x, rope, gate, pattern, opt, lt, a);
      a += x;
      if (lt) lt->ln1_in = a;
      layer_norm_forward(x, a, lw.ln1_w, lw.ln1_b, c.norm_eps);
      mlp_forward(c, lw, x, lt, m);
      m += x;
      if (lt) lt->ln2_in = m;
      layer_norm_forward(x, m, lw.ln2_w, lw.ln2_b, c.norm_eps);
    } else if (c.parallel_residual) {
      // NeoX: x = x + attn(LN1 x) + mlp(LN2 x).
      if (lt) lt->ln1_in = lt->ln2_in = x;
      norm_forward(c, xn, x, lw.ln1_w, lw.ln1_b);
      attention_forward(c, lw, l, xn, rope, gate, pattern, opt, lt, a);
      norm_forward(c, xn, x, lw.ln2_w, lw.ln2_b);
      mlp_forward(c, lw, xn, lt, m);
      x += m + a;
    } else {
      if (lt) lt->ln1_in = x;
      norm_forward(c, xn, x, lw.ln1_w, lw.ln1_b);
      attention_forward(c, lw, l, xn, rope, gate, pattern, opt, lt, a);
      x += a;
      if (lt) lt->ln2_in = x;
      norm_forward(c, xn, x, lw.ln2_w, lw.ln2_b);
      mlp_forward(c, lw, xn, lt, m);
      x += m;
    }
    if (opt.want_hidden) copy_rows(res.hidden, l + 1, x);
  }

  // 3. Final norm: HF reports it as the last hidden state.
  if (c.final_norm) {
    if (tape) tape->final_norm_in = x;
    norm_forward(c, xn, x, w.ln_final_w, w.ln_final_b);
    x.swap(xn);
    if (opt.want_hidden) copy_rows(res.hidden, L, x);
  }

  // 4. Unembedding: logits [T, V]; BERT's MLM head transforms first.
  if (tape) tape->head_in = x;
  res.loss = std::numeric_limits<float>::quiet_NaN();
  if (!has_unembedding(model) || (!opt.want_logits && !opt.want_loss)) return res;
  if (c.family == Family::bert) {
    MatrixRM tr = x * w.mlm_dense_W;
    tr.rowwise() += w.mlm_dense_b;
    if (tape) tape->mlm_pre = tr;
    activation_forward(tr, c.act);
    layer_norm_forward(x, tr, w.mlm_ln_w, w.mlm_ln_b, c.norm_eps);
  }
  MatrixRM logits;
  unembed_logits(logits, x, w);  // [T, V]

  // 5. Next-token loss (causal LMs): cross-entropy of token t+1 at position t.
  if (opt.want_loss && c.causal && T >= 2) {
    res.token_loss.resize(T - 1);
    double total = 0;
    std::vector<float> e(static_cast<std::size_t>(V));  // row - max, then its exp (float exp: 1e-7 relative per term)
    for (int t = 0; t + 1 < T; ++t) {
      const float* row = &logits(t, 0);
      const float mx = *std::max_element(row, row + V);
      for (int j = 0; j < V; ++j) e[j] = row[j] - mx;
      exp_inplace(e.data(), e.size());
      double sum = 0;
      for (int j = 0; j < V; ++j) sum += e[j];
      const double nll = mx + std::log(sum) - row[ids[t + 1]];
      res.token_loss[t] = static_cast<float>(nll);
      total += nll;
    }
    res.loss = static_cast<float>(total / (T - 1));
  }
  if (opt.want_logits) res.logits.assign(logits.data(), logits.data() + logits.size());
  return res;
}

}  // namespace hs
