// The forward pass and its reverse, llm.c style: run_model reads top to
// bottom (embeddings, blocks, final norm, unembedding, loss), the blocks are
// wired from layers.hpp's layers, and blocks_backward walks them back in the
// same order. Shape legend:
//   N = rows (T tokens, or n_seq sequences of T), d = d_model, H = query
//   heads, G = key/value heads, dh = head dim, M = d_mlp, V = vocabulary.
// Every product is a GEMM over all rows at once ([N, d] x [d, H*dh], and
// per head [T, dh] x [dh, T]); there are no per-token matrix loops.
#include "forward.hpp"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <limits>
#include <string>

namespace hs {

std::int64_t logits_block_values = 8000000;

namespace {

void copy_rows(std::vector<float>& dst, std::size_t slot, const MatrixRM& x) {
  std::copy(x.data(), x.data() + x.size(), dst.begin() + slot * x.size());
}

// The attention sublayer of one layer: layers.hpp's pattern and value mixing
// between the projections, with the hooks.
//   xn [N, d] the (normed) input; out [N, d]; gate [H] or null;
//   pattern [n_seq, H, T, T] or null: written with the post-softmax (gated) pattern;
//   tape or null: keeps the input, q, k, v, the pre-gate probabilities and z.
void attention_block_forward(const ModelConfig& c, const LayerWeights& L, int layer, const MatrixRM& xn, int n_seq,
                             const Rope& rope, const float* gate, float* pattern, const RunOptions& opt,
                             LayerTape* tape, MatrixRM& out) {
  const int T = static_cast<int>(xn.rows()) / n_seq, H = c.n_head, G = c.n_kv_head, dh = c.d_head;
  // on_attn_view reads the patterns even when the caller does not keep them.
  std::vector<float> local_pattern;
  if (!pattern && opt.on_attn_view) {
    local_pattern.resize(static_cast<std::size_t>(n_seq) * H * T * T);
    pattern = local_pattern.data();
  }

  // pass 1: projections, biases included (before RoPE, as NeoX and Qwen2 do)
  MatrixRM q, k, v;
  linear_forward(q, xn, L.W_Q, &L.b_Q);  // [N, H*dh]
  linear_forward(k, xn, L.W_K, &L.b_K);  // [N, G*dh]
  linear_forward(v, xn, L.W_V, &L.b_V);  // [N, G*dh]

  // pass 2: the q/k norm (Qwen3, Gemma 3, StableLM: per head; OLMo 2: over the projection),
  // then rotary positions on q and k (not in SmolLM3's NoPE layers)
  if (c.qk_norm != QkNorm::none) {
    if (tape) {
      tape->q_pre = q;
      tape->k_pre = k;
    }
    const bool whole = c.qk_norm == QkNorm::whole;  // one norm over all heads (OLMo 2)
    head_norm_forward(c.norm, q, whole ? 1 : H, whole ? H * dh : dh, L.q_norm_w, c.norm_eps);
    head_norm_forward(c.norm, k, whole ? 1 : G, whole ? G * dh : dh, L.k_norm_w, c.norm_eps);
  }
  if (rope.R > 0 && layer_uses_rope(c, layer)) {
    rope_forward(q, H, dh, rope);
    rope_forward(k, G, dh, rope);
  }
  if (opt.on_qkv) opt.on_qkv(layer, q, k, v);

  // pass 3: per head, scores -> mask -> softmax -> gate -> z_h = P v_g
  MatrixRM z;  // [N, H*dh]
  float* probs = nullptr;
  if (tape) {
    tape->attn_in = xn;
    tape->q = q;
    tape->k = k;
    tape->v = v;
    tape->probs.resize(static_cast<std::size_t>(n_seq) * H * T * T);
    probs = tape->probs.data();
  }
  attention_forward(z, probs, pattern, q, k, v, n_seq, attention_spec(c, layer), gate);

  // pass 4: hooks around the output projection
  if (opt.on_z) opt.on_z(layer, z);
  if (tape) tape->z = z;
  linear_forward(out, z, L.W_O, &L.b_O);  // [N, d]
  if (opt.on_attn_out) opt.on_attn_out(layer, z, out);
  if (opt.on_attn_view) opt.on_attn_view(layer, AttentionView{xn, pattern, z}, out);
}

// Its reverse: dout [N, d] = dL/d out -> dx [N, d] += dL/d xn (when
// need_input), and the gate and weight gradients the options want.
void attention_block_backward(MatrixRM& dx, const ModelConfig& c, const LayerWeights& L, int layer,
                              const ForwardTape& tape, const MatrixRM& dout, bool need_input,
                              const BackwardOptions& opt) {
  const LayerTape& tp = tape.layers[layer];
  const int N = static_cast<int>(dout.rows()), H = c.n_head, G = c.n_kv_head, dh = c.d_head;
  const float* gate = tape.head_gate.empty() ? nullptr : tape.head_gate.data() + static_cast<std::size_t>(layer) * H;
  double* dgate = opt.dgate ? opt.dgate + static_cast<std::size_t>(layer) * H : nullptr;
  LayerWeights* lg = opt.grads ? &opt.grads->layers[layer] : nullptr;

  // pass 4: out = z W_O + b_O
  MatrixRM dz = MatrixRM::Zero(N, H * dh);
  linear_backward(&dz, lg ? &lg->W_O : nullptr, lg ? &lg->b_O : nullptr, dout, tp.z, L.W_O);
  if (opt.on_dz) opt.on_dz(layer, dz);

  // pass 3: the heads
  const bool want_qkv = need_input || lg;
  MatrixRM dq, dk, dv;
  if (want_qkv) {
    dq.setZero(N, H * dh);
    dk.setZero(N, G * dh);
    dv.setZero(N, G * dh);
  }
  PatternGradFn extra;
  if (opt.on_attn_view)
    extra = [&](int, int h, const MatrixRM& Pg, MatrixRM& dPg) {
      opt.on_attn_view(layer, h, AttentionViewGrad{tp.attn_in, dout, Pg, dPg, need_input ? &dx : nullptr});
    };
  attention_backward(want_qkv ? &dq : nullptr, want_qkv ? &dk : nullptr, want_qkv ? &dv : nullptr, dgate, dz, tp.q,
                     tp.k, tp.v, tp.probs.data(), tape.n_seq, attention_spec(c, layer), gate, extra);
  if (!want_qkv) return;

  // pass 2: RoPE, the q/k norm; pass 1: the projections
  if (layer_uses_rope(c, layer)) {
    const Rope& rope = uses_local_rope(c, layer) ? tape.rope_local : tape.rope;
    rope_backward(dq, H, dh, rope);
    rope_backward(dk, G, dh, rope);
  }
  if (c.qk_norm != QkNorm::none) {
    const bool grads = lg && lg->q_norm_w.size() && lg->k_norm_w.size();
    const bool whole = c.qk_norm == QkNorm::whole;
    head_norm_backward(c.norm, dq, grads ? &lg->q_norm_w : nullptr, tp.q_pre, whole ? 1 : H, whole ? H * dh : dh,
                       L.q_norm_w, c.norm_eps);
    head_norm_backward(c.norm, dk, grads ? &lg->k_norm_w : nullptr, tp.k_pre, whole ? 1 : G, whole ? G * dh : dh,
                       L.k_norm_w, c.norm_eps);
  }
  MatrixRM* dxn = need_input ? &dx : nullptr;
  linear_backward(dxn, lg ? &lg->W_Q : nullptr, lg ? &lg->b_Q : nullptr, dq, tp.attn_in, L.W_Q);
  linear_backward(dxn, lg ? &lg->W_K : nullptr, lg ? &lg->b_K : nullptr, dk, tp.attn_in, L.W_K);
  linear_backward(dxn, lg ? &lg->W_V : nullptr, lg ? &lg->b_V : nullptr, dv, tp.attn_in, L.W_V);
}

// A norm's weight or bias gradient when the model has that parameter (LayerNorm's beta, a norm after a sublayer).
RowVectorF* sized_grad(RowVectorF& g) { return g.size() ? &g : nullptr; }

}  // namespace

void blocks_forward(const Model& model, MatrixRM& x, int n_seq, const RunOptions& opt, RunResult* out) {
  const ModelConfig& c = model.config;
  const ModelWeights& w = model.weights;
  const int T = static_cast<int>(x.rows()) / n_seq, L = c.n_layer, H = c.n_head;
  assert(T * n_seq == x.rows() && "blocks_forward: rows are not n_seq sequences of equal length");
  assert((n_seq == 1 || !(opt.on_z || opt.on_attn_out || opt.on_attn_view || opt.on_qkv || opt.on_mlp_out)) &&
         "blocks_forward: hooks need n_seq = 1");
  const bool want_patterns = out && opt.want_patterns, want_hidden = out && opt.want_hidden;
  const Rope rope = rope_tables(c, T), rope_local = rope_tables(c, T, /*local=*/true);
  auto rope_of = [&](int l) -> const Rope& { return uses_local_rope(c, l) ? rope_local : rope; };
  ForwardTape* tape = opt.tape;
  if (tape) {
    tape->n_seq = n_seq;
    tape->head_gate = opt.head_gate;
    tape->layers.assign(L, LayerTape{});
    tape->rope = rope;
    tape->rope_local = rope_local;
  }

  // 2. Blocks.
  MatrixRM xn, a, m;  // [N, d] scratch: normed input, attention out, MLP out
  for (int l = opt.first_layer; l < L; ++l) {
    const LayerWeights& lw = w.layers[l];
    const float* gate = opt.head_gate.empty() ? nullptr : opt.head_gate.data() + static_cast<std::size_t>(l) * H;
    float* pattern = want_patterns ? out->patterns.data() + static_cast<std::size_t>(l) * H * T * T : nullptr;
    LayerTape* lt = tape ? &tape->layers[l] : nullptr;
    MlpTape* mt = lt ? &lt->mlp : nullptr;
    if (c.post_ln) {
      // BERT: x = LN1(x + attn(x)); x = LN2(x + mlp(x)).
      attention_block_forward(c, lw, l, x, n_seq, rope_of(l), gate, pattern, opt, lt, a);
      a += x;
      if (lt) lt->ln1_in = a;
      layer_norm_forward(x, a, lw.ln1_w, lw.ln1_b, c.norm_eps);
      mlp_forward(m, x, lw, c.act, c.gated_mlp, mt);
      if (opt.on_mlp_out) opt.on_mlp_out(l, m);
      m += x;
      if (lt) lt->ln2_in = m;
      layer_norm_forward(x, m, lw.ln2_w, lw.ln2_b, c.norm_eps);
    } else if (c.parallel_residual) {
      // NeoX: x = x + attn(LN1 x) + mlp(LN2 x).
      if (lt) lt->ln1_in = lt->ln2_in = x;
      norm_forward(c.norm, c.norm_eps, xn, x, lw.ln1_w, lw.ln1_b);
      attention_block_forward(c, lw, l, xn, n_seq, rope_of(l), gate, pattern, opt, lt, a);
      norm_forward(c.norm, c.norm_eps, xn, x, lw.ln2_w, lw.ln2_b);
      mlp_forward(m, xn, lw, c.act, c.gated_mlp, mt);
      if (opt.on_mlp_out) opt.on_mlp_out(l, m);
      x += m + a;
    } else {
      // x = x + [N1p] attn([N1] x); x = x + [N2p] mlp([N2] x): the norms the config has.
      if (lt) lt->ln1_in = x;
      if (c.pre_norm) norm_forward(c.norm, c.norm_eps, xn, x, lw.ln1_w, lw.ln1_b);
      attention_block_forward(c, lw, l, c.pre_norm ? xn : x, n_seq, rope_of(l), gate, pattern, opt, lt, a);
      if (c.norm_after_sublayer) {
        if (lt) lt->ln1_post_in = a;
        norm_forward(c.norm, c.norm_eps, xn, a, lw.ln1_post_w, lw.ln1_post_b);
        a.swap(xn);
      }
      x += a;
      if (lt) lt->ln2_in = x;
      if (c.pre_norm) norm_forward(c.norm, c.norm_eps, xn, x, lw.ln2_w, lw.ln2_b);
      mlp_forward(m, c.pre_norm ? xn : x, lw, c.act, c.gated_mlp, mt);
      if (c.norm_after_sublayer) {
        if (lt) lt->ln2_post_in = m;
        norm_forward(c.norm, c.norm_eps, xn, m, lw.ln2_post_w, lw.ln2_post_b);
        m.swap(xn);
      }
      if (opt.on_mlp_out) opt.on_mlp_out(l, m);
      x += m;
    }
    if (want_hidden) copy_rows(out->hidden, l + 1, x);
  }

  // 3. Final norm: HF reports it as the last hidden state.
  if (c.final_norm) {
    if (tape) tape->final_norm_in = x;
    norm_forward(c.norm, c.norm_eps, xn, x, w.ln_final_w, w.ln_final_b);
    x.swap(xn);
    if (want_hidden) copy_rows(out->hidden, L, x);
  }
  if (tape) tape->head_in = x;
}

MatrixRM blocks_backward(const Model& model, const ForwardTape& tape, MatrixRM dx, const BackwardOptions& opt) {
  const ModelConfig& c = model.config;
  const ModelWeights& w = model.weights;
  ModelWeights* g = opt.grads;
  const Eigen::Index N = dx.rows(), d = dx.cols();

  // 3. Final norm.
  if (c.final_norm) {
    MatrixRM dn = MatrixRM::Zero(N, d);
    norm_backward(c.norm, c.norm_eps, dn, g ? &g->ln_final_w : nullptr, g ? sized_grad(g->ln_final_b) : nullptr, dx,
                  tape.final_norm_in, w.ln_final_w);
    dx.swap(dn);
  }

  // 2. Blocks, last first.
  for (int l = c.n_layer - 1; l >= 0; --l) {
    const LayerWeights& lw = w.layers[l];
    const LayerTape& tp = tape.layers[l];
    LayerWeights* lg = g ? &g->layers[l] : nullptr;
    RowVectorF* dln1_w = lg ? &lg->ln1_w : nullptr;
    RowVectorF* dln1_b = lg ? sized_grad(lg->ln1_b) : nullptr;
    RowVectorF* dln2_w = lg ? &lg->ln2_w : nullptr;
    RowVectorF* dln2_b = lg ? sized_grad(lg->ln2_b) : nullptr;
    const bool need_input = l > 0 || opt.want_input;  // dL/d(this block's input) is read
    MatrixRM da = MatrixRM::Zero(N, d), dm = MatrixRM::Zero(N, d);  // dL/d(attention input), dL/d(MLP input)
    if (c.post_ln) {
      // x' = LN1(x + attn(x)); out = LN2(x' + mlp(x'))
      MatrixRM dw = MatrixRM::Zero(N, d);
      layer_norm_backward(dw, dln2_w, dln2_b, dx, tp.ln2_in, lw.ln2_w, c.norm_eps);
      MatrixRM dxp = dw;
      mlp_backward(dxp, lg, dw, lw, c.act, c.gated_mlp, tp.mlp);
      MatrixRM du = MatrixRM::Zero(N, d);
      layer_norm_backward(du, dln1_w, dln1_b, dxp, tp.ln1_in, lw.ln1_w, c.norm_eps);
      attention_block_backward(da, c, lw, l, tape, du, need_input, opt);
      dx = du + da;
    } else if (c.parallel_residual) {
      // out = x + attn(LN1 x) + mlp(LN2 x)
      mlp_backward(dm, lg, dx, lw, c.act, c.gated_mlp, tp.mlp);
      attention_block_backward(da, c, lw, l, tape, dx, need_input, opt);
      if (need_input || lg) {
        norm_backward(c.norm, c.norm_eps, dx, dln1_w, dln1_b, da, tp.ln1_in, lw.ln1_w);
        norm_backward(c.norm, c.norm_eps, dx, dln2_w, dln2_b, dm, tp.ln2_in, lw.ln2_w);
      }
    } else {
      // x' = x + [N1p] attn([N1] x); out = x' + [N2p] mlp([N2] x')
      // dL/d(a sublayer's output before its norm after), when there is one.
      MatrixRM dmo_pre, dao_pre;
      if (c.norm_after_sublayer) {
        dmo_pre.setZero(N, d);
        norm_backward(c.norm, c.norm_eps, dmo_pre, lg ? sized_grad(lg->ln2_post_w) : nullptr,
                      lg ? sized_grad(lg->ln2_post_b) : nullptr, dx, tp.ln2_post_in, lw.ln2_post_w);
      }
      mlp_backward(dm, lg, c.norm_after_sublayer ? dmo_pre : dx, lw, c.act, c.gated_mlp, tp.mlp);
      if (c.pre_norm) norm_backward(c.norm, c.norm_eps, dx, dln2_w, dln2_b, dm, tp.ln2_in, lw.ln2_w);
      else dx += dm;
      if (c.norm_after_sublayer) {
        dao_pre.setZero(N, d);
        norm_backward(c.norm, c.norm_eps, dao_pre, lg ? sized_grad(lg->ln1_post_w) : nullptr,
                      lg ? sized_grad(lg->ln1_post_b) : nullptr, dx, tp.ln1_post_in, lw.ln1_post_w);
      }
      attention_block_backward(da, c, lw, l, tape, c.norm_after_sublayer ? dao_pre : dx, need_input, opt);
      if (!c.pre_norm) dx += da;
      else if (need_input || lg) norm_backward(c.norm, c.norm_eps, dx, dln1_w, dln1_b, da, tp.ln1_in, lw.ln1_w);
    }
  }
  return dx;
}

void lm_head_transform(const Model& model, MatrixRM& x, ForwardTape* tape) {
  const ModelConfig& c = model.config;
  const ModelWeights& w = model.weights;
  if (c.family != Family::bert) return;
  MatrixRM tr = x * w.mlm_dense_W;
  tr.rowwise() += w.mlm_dense_b;
  if (tape) tape->mlm_pre = tr;
  activation_forward(tr, c.act);
  layer_norm_forward(x, tr, w.mlm_ln_w, w.mlm_ln_b, c.norm_eps);
}

Result<RunResult> run_model(const Model& model, const std::vector<int>& ids, const RunOptions& opt) {
  const ModelConfig& c = model.config;
  const ModelWeights& w = model.weights;
  const int T = static_cast<int>(ids.size()), L = c.n_layer, H = c.n_head, d = c.d_model, V = c.d_vocab;

  // Checks on the input.
  if (c.attention_only) return make_error(kAttentionOnlyMessage);
  if (T == 0) return make_error("run_model: no tokens to run");
  if (T > c.n_ctx)
    return make_error(ErrorCode::too_large,
                      "text is " + std::to_string(T) + " tokens; this model's context is " + std::to_string(c.n_ctx));
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
  if (opt.first_layer < 0 || opt.first_layer >= L || (opt.first_layer > 0 && !opt.resid_in))
    return make_error("run_model: first_layer " + std::to_string(opt.first_layer) + " needs a resid_in and must be in [0, " +
                      std::to_string(L) + ")");
  if (opt.resid_in && (opt.resid_in->rows() != T || opt.resid_in->cols() != d))
    return make_error("run_model: resid_in is " + std::to_string(opt.resid_in->rows()) + " x " +
                      std::to_string(opt.resid_in->cols()) + ", expected " + std::to_string(T) + " x " + std::to_string(d));
  // The outputs asked for, refused before they are allocated when too large.
  const double output_bytes = 4.0 * T * ((opt.want_patterns ? static_cast<double>(L) * H * T : 0.0) +
                                         (opt.want_hidden ? (L + 1.0) * d : 0.0) + (opt.want_logits ? V : 0.0));
  if (output_bytes > static_cast<double>(run_output_limit))
    return make_error(ErrorCode::too_large,
                      "the outputs of " + std::to_string(L * H) + " heads over " + std::to_string(T) + " tokens take " +
                          std::to_string(static_cast<long long>(output_bytes / 1e6)) + " MB, over the limit of " +
                          std::to_string(run_output_limit / 1000000) + " MB: run fewer tokens");

  RunResult res;
  res.n_layer = L;
  res.n_head = H;
  res.n_tokens = T;
  res.d_model = d;
  res.d_vocab = V;
  if (opt.want_patterns) res.patterns.assign(static_cast<std::size_t>(L) * H * T * T, 0.f);
  if (opt.want_hidden) res.hidden.assign(static_cast<std::size_t>(L + 1) * T * d, 0.f);

  // 1. Embeddings: x [T, d] (or the residual a resumed run starts from).
  MatrixRM x;
  if (opt.resid_in) {
    x = *opt.resid_in;
  } else {
    embedding_forward(x, ids, T, w.W_E, c.learned_positions ? &w.W_pos : nullptr, c.position_offset);
    if (c.type_vocab_size > 0)
      for (int t = 0; t < T; ++t) x.row(t) += w.W_type.row(opt.token_type_ids.empty() ? 0 : opt.token_type_ids[t]);
    if (c.family == Family::bert) {
      MatrixRM e;
      layer_norm_forward(e, x, w.ln_embed_w, w.ln_embed_b, c.norm_eps);
      x.swap(e);
    }
  }
  if (c.embed_scale != 1.f && !opt.resid_in) x *= c.embed_scale;
  if (opt.want_hidden) copy_rows(res.hidden, opt.first_layer, x);

  // 2. Blocks and 3. the final norm.
  blocks_forward(model, x, 1, opt, &res);

  // 4. Unembedding: logits [T, V]; BERT's MLM head transforms first. In
  // blocks of rows of at most logits_block_values logits (159 rows of GPT-2's
  // 50 257-token vocabulary, 52 of Qwen's 151 936), so that a run that wants
  // only the loss never holds [T, V] at once; 5. the next-token loss (causal
  // LMs): cross-entropy of token t+1 at position t.
  res.loss = std::numeric_limits<float>::quiet_NaN();
  if (!has_unembedding(model) || (!opt.want_logits && !opt.want_loss)) return res;
  lm_head_transform(model, x, opt.tape);
  const bool loss = opt.want_loss && c.causal && T >= 2;
  std::vector<int> next;
  std::vector<double> nll;
  if (loss) {
    next.assign(ids.begin() + 1, ids.end());
    next.push_back(-1);  // the last position predicts nothing
    nll.assign(static_cast<std::size_t>(T), 0.0);
  }
  if (opt.want_logits) res.logits.resize(static_cast<std::size_t>(T) * V);
  const int block = static_cast<int>(std::clamp<std::int64_t>(logits_block_values / std::max(1, V), 1, T));
  MatrixRM rows, logits;
  for (int t0 = 0; t0 < T; t0 += block) {
    const int n = std::min(block, T - t0);
    rows = x.middleRows(t0, n);
    unembed_forward(logits, rows, w);  // [n, V]
    logit_softcap_forward(logits, c.final_softcap);
    if (loss) cross_entropy_forward(nll.data() + t0, nullptr, logits, next.data() + t0);
    if (opt.want_logits) std::copy(logits.data(), logits.data() + logits.size(), res.logits.begin() + static_cast<std::size_t>(t0) * V);
  }
  if (loss) {
    res.token_loss.resize(T - 1);
    double total = 0;
    for (int t = 0; t + 1 < T; ++t) {
      res.token_loss[t] = static_cast<float>(nll[t]);
      total += nll[t];
    }
    res.loss = static_cast<float>(total / (T - 1));
  }
  return res;
}

}  // namespace hs
