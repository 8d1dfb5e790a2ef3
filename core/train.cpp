// Training passes for gpt2-family models: see train.hpp. train_forward and
// train_backward run the inference forward's layers over a batch (forward.hpp,
// layers.hpp); tests/core/test_train.cpp checks that the training forward gives
// run_model's logits and that the backward pass agrees with finite differences.

#include "train.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include <nlohmann/json.hpp>

#include "layers.hpp"
#include "rng.hpp"

namespace hs {

// ---------------------------------------------------------------------------
// Configuration, initialisation, parameters.

ModelConfig gpt2_config(int n_layer, int d_model, int n_head, int d_mlp, int d_vocab, int n_ctx) {
  ModelConfig c;
  c.model_type = "gpt2";
  c.family = Family::gpt2;
  c.n_layer = n_layer;
  c.d_model = d_model;
  c.n_head = n_head;
  c.n_kv_head = n_head;
  c.d_head = n_head > 0 ? d_model / n_head : 0;
  c.d_mlp = d_mlp;
  c.d_vocab = d_vocab;
  c.n_ctx = n_ctx;
  c.norm = NormKind::layer_norm;
  c.norm_eps = 1e-5f;
  c.act = Activation::gelu_new;
  c.causal = true;
  c.attn_scale = c.d_head > 0 ? 1.0f / std::sqrt(static_cast<float>(c.d_head)) : 0.f;
  c.learned_positions = true;
  c.window.assign(static_cast<std::size_t>(std::max(n_layer, 0)), 0);
  c.tied_embeddings = true;
  c.has_lm_head = true;
  return c;
}

Status check_trainable(const ModelConfig& c) {
  auto refuse = [](const std::string& what) { return make_error("train: unsupported configuration: " + what); };
  if (c.family != Family::gpt2) return refuse("family (only gpt2)");
  if (c.n_layer < 1 || c.d_model < 1 || c.n_head < 1 || c.d_mlp < 1 || c.d_vocab < 1 || c.n_ctx < 1)
    return refuse("n_layer, d_model, n_head, d_mlp, d_vocab and n_ctx must be positive");
  if (c.n_kv_head != c.n_head) return refuse("n_kv_head != n_head (grouped-query attention)");
  if (c.d_head * c.n_head != c.d_model) return refuse("d_head * n_head != d_model");
  if (c.norm != NormKind::layer_norm) return refuse("norm must be LayerNorm");
  if (c.act != Activation::gelu_new) return refuse("activation must be gelu_new");
  if (c.gated_mlp || c.post_ln || c.parallel_residual || !c.causal) return refuse("block must be pre-LN, causal, sequential");
  if (!c.learned_positions || c.rotary_dim != 0 || c.position_offset != 0) return refuse("positions must be learned, offset 0");
  if (!c.tied_embeddings) return refuse("embeddings must be tied to the unembedding");
  if (c.scale_by_inverse_layer) return refuse("scale_attn_by_inverse_layer_idx");
  if (!(c.attn_scale > 0)) return refuse("attn_scale must be positive");
  for (int w : c.window)
    if (w != 0) return refuse("local attention windows");
  return Ok{};
}

namespace {

void fill_normal(Rng& rng, float* data, std::size_t n, double std_dev) {
  for (std::size_t i = 0; i < n; ++i) data[i] = static_cast<float>(rng.normal() * std_dev);
}

MatrixRM zeros(Eigen::Index rows, Eigen::Index cols) { return MatrixRM::Zero(rows, cols); }
RowVectorF zeros(Eigen::Index n) { return RowVectorF::Zero(n); }

}  // namespace

Result<Model> gpt2_init(const ModelConfig& config, std::uint64_t seed, const InitOptions& options) {
  HS_TRY(check_trainable(config));
  const int d = config.d_model, M = config.d_mlp, V = config.d_vocab;
  Model model;
  model.config = config;
  ModelWeights& w = model.weights;
  w.W_E = zeros(V, d);
  w.W_pos = zeros(config.n_ctx, d);
  w.layers.resize(static_cast<std::size_t>(config.n_layer));
  for (LayerWeights& l : w.layers) {
    l.W_Q = zeros(d, d);
    l.W_K = zeros(d, d);
    l.W_V = zeros(d, d);
    l.W_O = zeros(d, d);
    l.b_Q = zeros(d);
    l.b_K = zeros(d);
    l.b_V = zeros(d);
    l.b_O = zeros(d);
    l.ln1_w = RowVectorF::Ones(d);
    l.ln1_b = zeros(d);
    l.ln2_w = RowVectorF::Ones(d);
    l.ln2_b = zeros(d);
    l.W_in = zeros(d, M);
    l.b_in = zeros(M);
    l.W_out = zeros(M, d);
    l.b_out = zeros(d);
  }
  w.ln_final_w = RowVectorF::Ones(d);
  w.ln_final_b = zeros(d);

  Rng rng(seed);
  const double std_dev = options.std;
  const double std_proj = options.std / std::sqrt(2.0 * config.n_layer);
  fill_normal(rng, w.W_E.f32().data(), static_cast<std::size_t>(w.W_E.size()), std_dev);
  fill_normal(rng, w.W_pos.data(), static_cast<std::size_t>(w.W_pos.size()), std_dev);
  if (options.positions == PositionInit::sinusoidal) {
    const double amplitude = std_dev * std::sqrt(2.0);  // RMS of a sinusoid is amplitude / sqrt(2)
    for (int p = 0; p < config.n_ctx; ++p) {
      for (int k = 0; 2 * k < d; ++k) {
        const double angle = p * std::pow(10000.0, -2.0 * k / d);
        w.W_pos(p, 2 * k) = static_cast<float>(amplitude * std::sin(angle));
        if (2 * k + 1 < d) w.W_pos(p, 2 * k + 1) = static_cast<float>(amplitude * std::cos(angle));
      }
    }
  }
  for (LayerWeights& l : w.layers) {
    // c_attn is one [d, 3d] matrix in GPT-2: draw it column block by column
    // block in its own row-major order so the draw matches one fused tensor.
    for (int row = 0; row < d; ++row) {
      for (MatrixRM* m : {&l.W_Q, &l.W_K, &l.W_V}) fill_normal(rng, m->row(row).data(), static_cast<std::size_t>(d), std_dev);
    }
    fill_normal(rng, l.W_O.data(), static_cast<std::size_t>(l.W_O.size()), std_proj);
    fill_normal(rng, l.W_in.f32().data(), static_cast<std::size_t>(l.W_in.size()), std_dev);
    fill_normal(rng, l.W_out.f32().data(), static_cast<std::size_t>(l.W_out.size()), std_proj);
  }
  return model;
}

ModelWeights zeros_like(const ModelWeights& w) {
  auto z = [](const MatrixRM& m) { return MatrixRM::Zero(m.rows(), m.cols()).eval(); };
  auto zv = [](const RowVectorF& v) { return RowVectorF::Zero(v.size()).eval(); };
  ModelWeights g;
  g.W_E = z(w.W_E.f32());
  g.W_pos = z(w.W_pos);
  g.layers.resize(w.layers.size());
  for (std::size_t i = 0; i < w.layers.size(); ++i) {
    const LayerWeights& l = w.layers[i];
    LayerWeights& o = g.layers[i];
    o.W_Q = z(l.W_Q);
    o.W_K = z(l.W_K);
    o.W_V = z(l.W_V);
    o.W_O = z(l.W_O);
    o.b_Q = zv(l.b_Q);
    o.b_K = zv(l.b_K);
    o.b_V = zv(l.b_V);
    o.b_O = zv(l.b_O);
    o.ln1_w = zv(l.ln1_w);
    o.ln1_b = zv(l.ln1_b);
    o.ln2_w = zv(l.ln2_w);
    o.ln2_b = zv(l.ln2_b);
    o.W_in = z(l.W_in.f32());
    o.b_in = zv(l.b_in);
    o.W_out = z(l.W_out.f32());
    o.b_out = zv(l.b_out);
  }
  g.ln_final_w = zv(w.ln_final_w);
  g.ln_final_b = zv(w.ln_final_b);
  return g;
}

std::vector<ParamRef> trainable_params(ModelWeights& w) {
  std::vector<ParamRef> out;
  auto add_m = [&](const std::string& name, MatrixRM& m) {
    out.push_back({name, m.data(), static_cast<std::size_t>(m.size()), true});
  };
  auto add_v = [&](const std::string& name, RowVectorF& v) {
    out.push_back({name, v.data(), static_cast<std::size_t>(v.size()), false});
  };
  add_m("wte.weight", w.W_E.f32());
  add_m("wpe.weight", w.W_pos);
  for (std::size_t i = 0; i < w.layers.size(); ++i) {
    LayerWeights& l = w.layers[i];
    const std::string p = "h." + std::to_string(i) + ".";
    add_v(p + "ln_1.weight", l.ln1_w);
    add_v(p + "ln_1.bias", l.ln1_b);
    add_m(p + "attn.W_Q", l.W_Q);
    add_m(p + "attn.W_K", l.W_K);
    add_m(p + "attn.W_V", l.W_V);
    add_v(p + "attn.b_Q", l.b_Q);
    add_v(p + "attn.b_K", l.b_K);
    add_v(p + "attn.b_V", l.b_V);
    add_m(p + "attn.c_proj.weight", l.W_O);
    add_v(p + "attn.c_proj.bias", l.b_O);
    add_v(p + "ln_2.weight", l.ln2_w);
    add_v(p + "ln_2.bias", l.ln2_b);
    add_m(p + "mlp.c_fc.weight", l.W_in.f32());
    add_v(p + "mlp.c_fc.bias", l.b_in);
    add_m(p + "mlp.c_proj.weight", l.W_out.f32());
    add_v(p + "mlp.c_proj.bias", l.b_out);
  }
  add_v("ln_f.weight", w.ln_final_w);
  add_v("ln_f.bias", w.ln_final_b);
  return out;
}

// ---------------------------------------------------------------------------
// Forward.

Result<double> train_forward(const Model& model, const std::vector<int>& tokens, const std::vector<int>& targets,
                             int n_seq, int n_tok, TrainCache& cache, const std::vector<float>& head_gate) {
  const ModelConfig& c = model.config;
  HS_TRY(check_trainable(c));
  const ModelWeights& w = model.weights;
  const int B = n_seq, T = n_tok, d = c.d_model, H = c.n_head, V = c.d_vocab;
  const Eigen::Index N = static_cast<Eigen::Index>(B) * T;
  if (B < 1 || T < 1) return make_error("train_forward: empty batch");
  if (T > c.n_ctx) return make_error("train_forward: " + std::to_string(T) + " tokens > n_ctx " + std::to_string(c.n_ctx));
  if (tokens.size() != static_cast<std::size_t>(N) || targets.size() != static_cast<std::size_t>(N))
    return make_error("train_forward: tokens and targets must hold n_seq * n_tok = " + std::to_string(N) + " ids");
  if (!head_gate.empty() && head_gate.size() != static_cast<std::size_t>(c.n_layer) * H)
    return make_error("train_forward: head_gate must hold n_layer * n_head values");
  if (w.W_E.rows() != V || w.W_E.cols() != d || w.W_pos.rows() < T || w.layers.size() != static_cast<std::size_t>(c.n_layer))
    return make_error("train_forward: weights do not match the configuration");
  for (Eigen::Index i = 0; i < N; ++i) {
    if (tokens[i] < 0 || tokens[i] >= V)
      return make_error("train_forward: token " + std::to_string(tokens[i]) + " at row " + std::to_string(i) + " outside [0, " + std::to_string(V) + ")");
    if (targets[i] >= V)
      return make_error("train_forward: target " + std::to_string(targets[i]) + " at row " + std::to_string(i) + " >= vocabulary size");
  }

  cache.n_seq = B;
  cache.n_tok = T;
  cache.tokens = tokens;
  cache.targets = targets;

  // Embeddings: row i = W_E[token] + W_pos[i mod T].
  MatrixRM x;  // [N, d]
  embedding_forward(x, tokens, T, w.W_E, &w.W_pos);

  // Blocks and final norm, keeping the tape.
  RunOptions opt;
  opt.head_gate = head_gate;
  opt.want_patterns = opt.want_hidden = false;
  opt.tape = &cache.tape;
  blocks_forward(model, x, B, opt);

  // Unembedding (W_E^T) and cross-entropy.
  unembed_forward(cache.logits, x, w);  // [N, V]
  std::vector<double> loss(static_cast<std::size_t>(N));
  cross_entropy_forward(loss.data(), &cache.probs, cache.logits, targets.data());
  cache.row_loss.assign(static_cast<std::size_t>(N), 0.f);
  cache.n_targets = 0;
  double total = 0;
  for (Eigen::Index i = 0; i < N; ++i) {
    if (targets[i] < 0) continue;
    cache.row_loss[i] = static_cast<float>(loss[i]);
    total += loss[i];
    ++cache.n_targets;
  }
  cache.loss = cache.n_targets > 0 ? total / cache.n_targets : 0.0;
  return cache.loss;
}

// ---------------------------------------------------------------------------
// Backward.

void train_backward(const Model& model, TrainCache& cache, ModelWeights& g) {
  const ModelWeights& w = model.weights;
  for (ParamRef& p : trainable_params(g)) std::fill(p.data, p.data + p.size, 0.f);

  // Cross-entropy, mean over the rows with a target: dlogits in place in probs.
  const float scale = cache.n_targets > 0 ? 1.0f / static_cast<float>(cache.n_targets) : 0.f;
  cross_entropy_backward(cache.probs, cache.targets.data(), scale);

  // Unembedding (tied: gives dW_E), then the final norm and the blocks.
  MatrixRM dx = MatrixRM::Zero(cache.probs.rows(), model.config.d_model);  // [N, d]
  unembed_backward(dx, &g, cache.probs, cache.tape.head_in, w);
  BackwardOptions opt;
  opt.grads = &g;
  opt.want_input = true;
  dx = blocks_backward(model, cache.tape, std::move(dx), opt);

  // Embeddings.
  embedding_backward(&g.W_E.f32(), &g.W_pos, dx, cache.tokens, cache.n_tok);
}

// ---------------------------------------------------------------------------
// AdamW.

AdamWState adamw_init(const Model& model) {
  AdamWState s;
  s.m = zeros_like(model.weights);
  s.v = zeros_like(model.weights);
  return s;
}

double adamw_step(Model& model, const ModelWeights& grads, AdamWState& state, const AdamWConfig& config, float lr) {
  std::vector<ParamRef> p = trainable_params(model.weights);
  std::vector<ParamRef> g = trainable_params(const_cast<ModelWeights&>(grads));  // read only
  std::vector<ParamRef> m = trainable_params(state.m);
  std::vector<ParamRef> v = trainable_params(state.v);

  double norm2 = 0;
  for (const ParamRef& t : g)
    for (std::size_t i = 0; i < t.size; ++i) norm2 += static_cast<double>(t.data[i]) * t.data[i];
  const double norm = std::sqrt(norm2);
  const float clip = (config.grad_clip > 0 && norm > config.grad_clip) ? static_cast<float>(config.grad_clip / norm) : 1.0f;

  ++state.step;
  const float bc1 = 1.0f - static_cast<float>(std::pow(config.beta1, static_cast<double>(state.step)));
  const float bc2 = 1.0f - static_cast<float>(std::pow(config.beta2, static_cast<double>(state.step)));
  for (std::size_t k = 0; k < p.size(); ++k) {
    const float wd = p[k].decay ? config.weight_decay : 0.f;
    float* pw = p[k].data;
    const float* pg = g[k].data;
    float* pm = m[k].data;
    float* pv = v[k].data;
    for (std::size_t i = 0; i < p[k].size; ++i) {
      const float gi = pg[i] * clip;
      pm[i] = config.beta1 * pm[i] + (1.0f - config.beta1) * gi;
      pv[i] = config.beta2 * pv[i] + (1.0f - config.beta2) * gi * gi;
      const float mhat = pm[i] / bc1;
      const float vhat = pv[i] / bc2;
      pw[i] -= lr * (mhat / (std::sqrt(vhat) + config.eps) + wd * pw[i]);
    }
  }
  return norm;
}

// ---------------------------------------------------------------------------
// Export.

std::vector<NamedTensor> gpt2_state_dict(const Model& model) {
  const ModelConfig& c = model.config;
  const ModelWeights& w = model.weights;
  const int d = c.d_model;
  std::vector<NamedTensor> out;
  auto add = [&](const std::string& name, const float* data, std::vector<std::int64_t> shape) {
    std::size_t n = 1;
    for (std::int64_t s : shape) n *= static_cast<std::size_t>(s);
    out.push_back({"transformer." + name, std::move(shape), std::vector<float>(data, data + n)});
  };
  auto add_m = [&](const std::string& name, const MatrixRM& m) { add(name, m.data(), {m.rows(), m.cols()}); };
  auto add_v = [&](const std::string& name, const RowVectorF& v) { add(name, v.data(), {v.size()}); };

  add_m("wte.weight", w.W_E.widened());
  add_m("wpe.weight", w.W_pos);
  for (int l = 0; l < c.n_layer; ++l) {
    const LayerWeights& lw = w.layers[l];
    const std::string p = "h." + std::to_string(l) + ".";
    add_v(p + "ln_1.weight", lw.ln1_w);
    add_v(p + "ln_1.bias", lw.ln1_b);
    MatrixRM c_attn(d, 3 * d);  // Conv1D [in, out], columns [Q | K | V], each (head, dh)
    c_attn << lw.W_Q, lw.W_K, lw.W_V;
    RowVectorF c_attn_b(3 * d);
    c_attn_b << lw.b_Q, lw.b_K, lw.b_V;
    add_m(p + "attn.c_attn.weight", c_attn);
    add_v(p + "attn.c_attn.bias", c_attn_b);
    add_m(p + "attn.c_proj.weight", lw.W_O);  // rows (head, dh): already Conv1D [in, out]
    add_v(p + "attn.c_proj.bias", lw.b_O);
    add_v(p + "ln_2.weight", lw.ln2_w);
    add_v(p + "ln_2.bias", lw.ln2_b);
    add_m(p + "mlp.c_fc.weight", lw.W_in.widened());
    add_v(p + "mlp.c_fc.bias", lw.b_in);
    add_m(p + "mlp.c_proj.weight", lw.W_out.widened());
    add_v(p + "mlp.c_proj.bias", lw.b_out);
  }
  add_v("ln_f.weight", w.ln_final_w);
  add_v("ln_f.bias", w.ln_final_b);
  return out;
}

std::string gpt2_config_json(const ModelConfig& c, int bos_token_id, int eos_token_id) {
  nlohmann::json j;
  j["activation_function"] = "gelu_new";
  j["architectures"] = {"GPT2LMHeadModel"};
  j["attn_pdrop"] = 0.0;
  j["bos_token_id"] = bos_token_id;
  j["embd_pdrop"] = 0.0;
  j["eos_token_id"] = eos_token_id;
  j["initializer_range"] = 0.02;
  {
    // 1e-5f printed as a double is 9.99999974e-06: write the value GPT2Config holds.
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.7g", static_cast<double>(c.norm_eps));
    j["layer_norm_epsilon"] = std::strtod(buf, nullptr);
  }
  j["model_type"] = "gpt2";
  j["n_ctx"] = c.n_ctx;
  j["n_embd"] = c.d_model;
  j["n_head"] = c.n_head;
  if (c.d_mlp == 4 * c.d_model)
    j["n_inner"] = nullptr;
  else
    j["n_inner"] = c.d_mlp;
  j["n_layer"] = c.n_layer;
  j["n_positions"] = c.n_ctx;
  j["resid_pdrop"] = 0.0;
  j["scale_attn_by_inverse_layer_idx"] = false;
  j["scale_attn_weights"] = true;
  j["tie_word_embeddings"] = true;
  j["torch_dtype"] = "float32";
  j["vocab_size"] = c.d_vocab;
  return j.dump(2) + "\n";
}

}  // namespace hs
