// Training passes for gpt2-family models: see train.hpp. The forward pass here
// mirrors the core's inference forward (run_model) but keeps its activations;
// tests/core/test_train.cpp checks that both give the same logits and that the
// backward pass agrees with finite differences.

#include "train.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include <nlohmann/json.hpp>

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
  for (int w : c.window)
    if (w != 0) return refuse("local attention windows");
  return Ok{};
}

namespace {

float attn_scale_of(const ModelConfig& c) {
  return c.attn_scale > 0 ? c.attn_scale : 1.0f / std::sqrt(static_cast<float>(c.d_head));
}

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
  fill_normal(rng, w.W_E.data(), static_cast<std::size_t>(w.W_E.size()), std_dev);
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
    fill_normal(rng, l.W_in.data(), static_cast<std::size_t>(l.W_in.size()), std_dev);
    fill_normal(rng, l.W_out.data(), static_cast<std::size_t>(l.W_out.size()), std_proj);
  }
  tie_unembedding(model);
  return model;
}

void tie_unembedding(Model& model) {
  model.weights.W_U = model.weights.W_E.transpose();
  model.weights.b_U = RowVectorF::Zero(model.weights.W_E.rows());
}

ModelWeights zeros_like(const ModelWeights& w) {
  auto z = [](const MatrixRM& m) { return MatrixRM::Zero(m.rows(), m.cols()).eval(); };
  auto zv = [](const RowVectorF& v) { return RowVectorF::Zero(v.size()).eval(); };
  ModelWeights g;
  g.W_E = z(w.W_E);
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
    o.W_in = z(l.W_in);
    o.b_in = zv(l.b_in);
    o.W_out = z(l.W_out);
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
  add_m("wte.weight", w.W_E);
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
    add_m(p + "mlp.c_fc.weight", l.W_in);
    add_v(p + "mlp.c_fc.bias", l.b_in);
    add_m(p + "mlp.c_proj.weight", l.W_out);
    add_v(p + "mlp.c_proj.bias", l.b_out);
  }
  add_v("ln_f.weight", w.ln_final_w);
  add_v("ln_f.bias", w.ln_final_b);
  return out;
}

// ---------------------------------------------------------------------------
// Layer pieces. Each works on all N rows at once.

namespace {

// y = (x - mean) / sqrt(var + eps) * w + b, row by row; keeps xhat and 1/std.
void layer_norm_forward(const MatrixRM& x, const RowVectorF& w, const RowVectorF& b, float eps, MatrixRM& xhat,
                        VectorF& rstd, MatrixRM& out) {
  const Eigen::Index n = x.rows(), d = x.cols();
  xhat.resize(n, d);
  out.resize(n, d);
  rstd.resize(n);
  for (Eigen::Index i = 0; i < n; ++i) {
    const float mean = x.row(i).mean();
    xhat.row(i) = x.row(i).array() - mean;
    const float var = xhat.row(i).squaredNorm() / static_cast<float>(d);
    const float r = 1.0f / std::sqrt(var + eps);
    rstd(i) = r;
    xhat.row(i) *= r;
    out.row(i) = xhat.row(i).cwiseProduct(w) + b;
  }
}

// dx = rstd * (g - mean(g) - xhat * mean(g . xhat)), with g = dy . w.
// Adds into dx; writes dw and db.
void layer_norm_backward(const MatrixRM& dy, const MatrixRM& xhat, const VectorF& rstd, const RowVectorF& w,
                         MatrixRM& dx, RowVectorF& dw, RowVectorF& db) {
  const Eigen::Index n = dy.rows(), d = dy.cols();
  dw = dy.cwiseProduct(xhat).colwise().sum();
  db = dy.colwise().sum();
  RowVectorF g(d);
  for (Eigen::Index i = 0; i < n; ++i) {
    g = dy.row(i).cwiseProduct(w);
    const float mean_g = g.mean();
    const float mean_gx = g.dot(xhat.row(i)) / static_cast<float>(d);
    dx.row(i) += rstd(i) * (g.array() - mean_g - xhat.row(i).array() * mean_gx).matrix();
  }
}

// Rows of queries per attention block (see train_forward).
constexpr int kAttnBlock = 64;

constexpr float kGeluC = 0.7978845608028654f;  // sqrt(2/pi)
constexpr float kGeluA = 0.044715f;

// gelu_new(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). Eigen's
// vectorised tanh: libm's tanhf alone took 13% of a training step.
void gelu_forward(const MatrixRM& x, MatrixRM& y) {
  const auto v = x.array();
  y = (0.5f * v * (1.0f + (kGeluC * (v + kGeluA * v.cube())).tanh())).matrix();
}

// dx = dy * gelu_new'(x), in place in dy.
void gelu_backward(const MatrixRM& x, MatrixRM& dy) {
  const auto v = x.array();
  const Eigen::Array<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> t = (kGeluC * (v + kGeluA * v.cube())).tanh();
  dy.array() *= 0.5f * (1.0f + t) + 0.5f * v * (1.0f - t.square()) * kGeluC * (1.0f + 3.0f * kGeluA * v.square());
}

}  // namespace

// ---------------------------------------------------------------------------
// Forward.

Result<double> train_forward(const Model& model, const std::vector<int>& tokens, const std::vector<int>& targets,
                             int n_seq, int n_tok, TrainCache& cache, const std::vector<float>& head_gate) {
  const ModelConfig& c = model.config;
  HS_TRY(check_trainable(c));
  const ModelWeights& w = model.weights;
  const int B = n_seq, T = n_tok, d = c.d_model, H = c.n_head, dh = c.d_head, V = c.d_vocab;
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
  cache.head_gate = head_gate;
  cache.layers.resize(static_cast<std::size_t>(c.n_layer));
  const float scale = attn_scale_of(c);

  // Embeddings: h0 = W_E[token] + W_pos[position].
  MatrixRM x(N, d);
  for (Eigen::Index i = 0; i < N; ++i) x.row(i) = w.W_E.row(tokens[i]) + w.W_pos.row(i % T);

  for (int l = 0; l < c.n_layer; ++l) {
    const LayerWeights& lw = w.layers[l];
    LayerCache& L = cache.layers[l];
    L.resid_pre = std::move(x);
    layer_norm_forward(L.resid_pre, lw.ln1_w, lw.ln1_b, c.norm_eps, L.ln1_xhat, L.ln1_rstd, L.ln1_out);

    // Projections: qkv = [ln1 W_Q + b_Q | ln1 W_K + b_K | ln1 W_V + b_V].
    L.qkv.resize(N, 3 * d);
    L.qkv.leftCols(d).noalias() = L.ln1_out * lw.W_Q;
    L.qkv.middleCols(d, d).noalias() = L.ln1_out * lw.W_K;
    L.qkv.rightCols(d).noalias() = L.ln1_out * lw.W_V;
    L.qkv.leftCols(d).rowwise() += lw.b_Q;
    L.qkv.middleCols(d, d).rowwise() += lw.b_K;
    L.qkv.rightCols(d).rowwise() += lw.b_V;

    // Per sequence and head: pass 1 scores, pass 2 causal softmax, pass 3 mix values.
    L.pattern.resize(static_cast<Eigen::Index>(B) * H * T, T);
    L.z.resize(N, d);
    for (int b = 0; b < B; ++b) {
      for (int h = 0; h < H; ++h) {
        const auto Q = L.qkv.block(static_cast<Eigen::Index>(b) * T, h * dh, T, dh);
        const auto K = L.qkv.block(static_cast<Eigen::Index>(b) * T, d + h * dh, T, dh);
        const auto Vv = L.qkv.block(static_cast<Eigen::Index>(b) * T, 2 * d + h * dh, T, dh);
        auto P = L.pattern.middleRows((static_cast<Eigen::Index>(b) * H + h) * T, T);
        auto Z = L.z.block(static_cast<Eigen::Index>(b) * T, h * dh, T, dh);
        // Causal: a block of query rows [r0, r0 + rb) sees keys [0, r0 + rb) only,
        // so the products skip most of the masked upper triangle.
        for (int r0 = 0; r0 < T; r0 += kAttnBlock) {
          const int rb = std::min(kAttnBlock, T - r0), nk = r0 + rb;
          P.block(r0, 0, rb, nk).noalias() = Q.middleRows(r0, rb) * K.topRows(nk).transpose();
          for (int i = r0; i < nk; ++i) {
            auto row = P.row(i);
            const float mx = row.head(i + 1).maxCoeff() * scale;
            row.head(i + 1) = (row.head(i + 1).array() * scale - mx).exp().matrix();
            row.head(i + 1) /= row.head(i + 1).sum();
            row.tail(T - i - 1).setZero();
          }
          Z.middleRows(r0, rb).noalias() = P.block(r0, 0, rb, nk) * Vv.topRows(nk);
        }
        if (!head_gate.empty()) Z *= head_gate[static_cast<std::size_t>(l) * H + h];
      }
    }

    L.resid_mid = L.resid_pre;
    L.resid_mid.noalias() += L.z * lw.W_O;
    L.resid_mid.rowwise() += lw.b_O;

    layer_norm_forward(L.resid_mid, lw.ln2_w, lw.ln2_b, c.norm_eps, L.ln2_xhat, L.ln2_rstd, L.ln2_out);
    L.mlp_pre.noalias() = L.ln2_out * lw.W_in;
    L.mlp_pre.rowwise() += lw.b_in;
    gelu_forward(L.mlp_pre, L.mlp_act);
    x = L.resid_mid;
    x.noalias() += L.mlp_act * lw.W_out;
    x.rowwise() += lw.b_out;
  }

  cache.resid_final = std::move(x);
  layer_norm_forward(cache.resid_final, w.ln_final_w, w.ln_final_b, c.norm_eps, cache.lnf_xhat, cache.lnf_rstd,
                     cache.lnf_out);
  cache.logits.noalias() = cache.lnf_out * w.W_E.transpose();

  // Softmax cross-entropy.
  cache.probs.resize(N, V);
  cache.row_loss.assign(static_cast<std::size_t>(N), 0.f);
  cache.n_targets = 0;
  double total = 0;
  for (Eigen::Index i = 0; i < N; ++i) {
    const float mx = cache.logits.row(i).maxCoeff();
    cache.probs.row(i) = (cache.logits.row(i).array() - mx).exp();
    const float sum = cache.probs.row(i).sum();
    cache.probs.row(i) /= sum;
    if (targets[i] >= 0) {
      const float loss = std::log(sum) + mx - cache.logits(i, targets[i]);
      cache.row_loss[i] = loss;
      total += loss;
      ++cache.n_targets;
    }
  }
  cache.loss = cache.n_targets > 0 ? total / cache.n_targets : 0.0;
  return cache.loss;
}

// ---------------------------------------------------------------------------
// Backward.

void train_backward(const Model& model, TrainCache& cache, ModelWeights& g) {
  const ModelConfig& c = model.config;
  const ModelWeights& w = model.weights;
  const int B = cache.n_seq, T = cache.n_tok, d = c.d_model, H = c.n_head, dh = c.d_head;
  const Eigen::Index N = static_cast<Eigen::Index>(B) * T;
  const float scale = attn_scale_of(c);

  // d loss / d logits = (p - onehot(target)) / n_targets, in place in probs.
  MatrixRM& dlogits = cache.probs;
  const float inv_n = cache.n_targets > 0 ? 1.0f / static_cast<float>(cache.n_targets) : 0.f;
  for (Eigen::Index i = 0; i < N; ++i) {
    if (cache.targets[i] < 0) {
      dlogits.row(i).setZero();
    } else {
      dlogits(i, cache.targets[i]) -= 1.0f;
      dlogits.row(i) *= inv_n;
    }
  }
  g.W_E.noalias() = dlogits.transpose() * cache.lnf_out;
  MatrixRM d_lnf = dlogits * w.W_E;  // [N, d]

  MatrixRM dx = MatrixRM::Zero(N, d);  // gradient of the residual stream
  layer_norm_backward(d_lnf, cache.lnf_xhat, cache.lnf_rstd, w.ln_final_w, dx, g.ln_final_w, g.ln_final_b);

  MatrixRM d_act, d_ln, dz, dqkv(N, 3 * d), dP(T, T);
  for (int l = c.n_layer - 1; l >= 0; --l) {
    const LayerWeights& lw = w.layers[l];
    LayerWeights& lg = g.layers[l];
    const LayerCache& L = cache.layers[l];

    // MLP: x_out = x_mid + gelu(ln2(x_mid) W_in + b_in) W_out + b_out.
    lg.b_out = dx.colwise().sum();
    lg.W_out.noalias() = L.mlp_act.transpose() * dx;
    d_act.noalias() = dx * lw.W_out.transpose();
    gelu_backward(L.mlp_pre, d_act);
    lg.b_in = d_act.colwise().sum();
    lg.W_in.noalias() = L.ln2_out.transpose() * d_act;
    d_ln.noalias() = d_act * lw.W_in.transpose();
    layer_norm_backward(d_ln, L.ln2_xhat, L.ln2_rstd, lw.ln2_w, dx, lg.ln2_w, lg.ln2_b);  // dx is now d x_mid

    // Attention output: x_mid = x_pre + z W_O + b_O.
    lg.b_O = dx.colwise().sum();
    lg.W_O.noalias() = L.z.transpose() * dx;
    dz.noalias() = dx * lw.W_O.transpose();

    for (int b = 0; b < B; ++b) {
      for (int h = 0; h < H; ++h) {
        const Eigen::Index r0 = static_cast<Eigen::Index>(b) * T;
        const auto Q = L.qkv.block(r0, h * dh, T, dh);
        const auto K = L.qkv.block(r0, d + h * dh, T, dh);
        const auto Vv = L.qkv.block(r0, 2 * d + h * dh, T, dh);
        const auto P = L.pattern.middleRows((static_cast<Eigen::Index>(b) * H + h) * T, T);
        const float gate = cache.head_gate.empty() ? 1.0f : cache.head_gate[static_cast<std::size_t>(l) * H + h];
        const auto dZ = dz.block(r0, h * dh, T, dh);
        auto dQ = dqkv.block(r0, h * dh, T, dh);
        auto dK = dqkv.block(r0, d + h * dh, T, dh);
        auto dV = dqkv.block(r0, 2 * d + h * dh, T, dh);
        // Z = gate P V: dV = gate P^T dZ, dP = gate dZ V^T; then the softmax,
        // dS = P . (dP - rowsum(P . dP)), and S = scale Q K^T. Blocks of query
        // rows as in the forward pass.
        dV.setZero();
        dK.setZero();
        for (int r0 = 0; r0 < T; r0 += kAttnBlock) {
          const int rb = std::min(kAttnBlock, T - r0), nk = r0 + rb;
          const auto Pb = P.block(r0, 0, rb, nk);
          auto dS = dP.block(0, 0, rb, nk);
          dS.noalias() = gate * (dZ.middleRows(r0, rb) * Vv.topRows(nk).transpose());
          dV.topRows(nk).noalias() += gate * (Pb.transpose() * dZ.middleRows(r0, rb));
          for (int ii = 0; ii < rb; ++ii) {
            const int i = r0 + ii;
            auto p_row = Pb.row(ii).head(i + 1);
            auto ds_row = dS.row(ii);
            const float sum = p_row.dot(ds_row.head(i + 1));
            ds_row.head(i + 1) = (p_row.array() * (ds_row.head(i + 1).array() - sum) * scale).matrix();
            ds_row.tail(nk - i - 1).setZero();
          }
          dQ.middleRows(r0, rb).noalias() = dS * K.topRows(nk);
          dK.topRows(nk).noalias() += dS.transpose() * Q.middleRows(r0, rb);
        }
      }
    }
    lg.b_Q = dqkv.leftCols(d).colwise().sum();
    lg.b_K = dqkv.middleCols(d, d).colwise().sum();
    lg.b_V = dqkv.rightCols(d).colwise().sum();
    lg.W_Q.noalias() = L.ln1_out.transpose() * dqkv.leftCols(d);
    lg.W_K.noalias() = L.ln1_out.transpose() * dqkv.middleCols(d, d);
    lg.W_V.noalias() = L.ln1_out.transpose() * dqkv.rightCols(d);
    d_ln.noalias() = dqkv.leftCols(d) * lw.W_Q.transpose();
    d_ln.noalias() += dqkv.middleCols(d, d) * lw.W_K.transpose();
    d_ln.noalias() += dqkv.rightCols(d) * lw.W_V.transpose();
    layer_norm_backward(d_ln, L.ln1_xhat, L.ln1_rstd, lw.ln1_w, dx, lg.ln1_w, lg.ln1_b);  // dx is now d x_pre
  }

  // Embeddings.
  g.W_pos.setZero();
  for (Eigen::Index i = 0; i < N; ++i) {
    g.W_E.row(cache.tokens[i]) += dx.row(i);
    g.W_pos.row(i % T) += dx.row(i);
  }
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
  tie_unembedding(model);
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

  add_m("wte.weight", w.W_E);
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
    add_m(p + "mlp.c_fc.weight", lw.W_in);
    add_v(p + "mlp.c_fc.bias", lw.b_in);
    add_m(p + "mlp.c_proj.weight", lw.W_out);
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
