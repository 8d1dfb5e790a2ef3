// Full circuits in token and position space; see full_circuits.hpp.
#include "full_circuits.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

#include "head_circuits.hpp"
#include "layers.hpp"
#include "rng.hpp"

namespace hs {

Result<MatrixRM> unembed_embed_product(const Model& model, WeightVariant variant, const ProgressFn& progress) {
  auto view = VocabView::make(model, variant);
  if (!view) return view.error();
  const int V = view->d_vocab(), d = view->d_model();
  MatrixRMd acc = MatrixRMd::Zero(d, d);
  const int block = 2048;
  MatrixRM part(d, d);
  for (int t0 = 0; t0 < V; t0 += block) {
    const int n = std::min(block, V - t0);
    const MatrixRM U = view->unembedding_cols(t0, n);  // [d, n]
    const MatrixRM E = view->embedding_rows(t0, n);    // [n, d]
    part.noalias() = U * E;
    acc += part.cast<double>();  // float within a block, double across blocks
    if (!report_progress(progress, double(t0 + n) / V)) return cancelled_error();
  }
  return MatrixRM(acc.cast<float>());
}

Result<OvCopying> ov_copying_scores(const Model& model, WeightVariant variant, const MatrixRM& unembed_embed,
                                    const ProgressFn& progress) {
  HS_TRY(check_heads(model));
  const ModelConfig& c = model.config;
  const int L = static_cast<int>(model.weights.layers.size()), H = c.n_head, dh = c.d_head, d = c.d_model;
  if (unembed_embed.rows() != d || unembed_embed.cols() != d) {
    return make_error("ov_copying_scores: W_U W_E must be [" + std::to_string(d) + ", " + std::to_string(d) +
                      "], got [" + std::to_string(unembed_embed.rows()) + ", " +
                      std::to_string(unembed_embed.cols()) + "]");
  }
  OvCopying out;
  out.variant = variant;
  out.n_layer = L;
  out.n_head = H;
  out.d_head = dh;
  out.eigenvalues.assign(static_cast<std::size_t>(L) * H * dh, {0.0, 0.0});
  out.copying_score.assign(static_cast<std::size_t>(L) * H, 0.0);
  out.positive_fraction = out.copying_score;
  MatrixRM W_O_layer(H * dh, d), P(H * dh, d);
  for (int l = 0; l < L; ++l) {
    for (int h = 0; h < H; ++h) {
      auto O = head_matrix(model, variant, l, h, HeadMatrix::W_O);
      if (!O) return O.error();
      W_O_layer.middleRows(h * dh, dh) = O->cast<float>();
    }
    P.noalias() = W_O_layer * unembed_embed;  // [H*dh, d]: one d x d product per layer
    for (int h = 0; h < H; ++h) {
      auto Wv = head_matrix(model, variant, l, h, HeadMatrix::W_V);
      if (!Wv) return Wv.error();
      const MatrixCd M = P.middleRows(h * dh, dh).cast<double>() * (*Wv);  // W_O W_U W_E W_V [dh, dh]
      Eigen::EigenSolver<MatrixCd> es(M, /*computeEigenvectors=*/false);
      std::vector<std::complex<double>> ev(es.eigenvalues().data(), es.eigenvalues().data() + dh);
      std::sort(ev.begin(), ev.end(),
                [](const std::complex<double>& a, const std::complex<double>& b) { return std::abs(a) > std::abs(b); });
      const int i = l * H + h;
      double sum_re = 0, sum_abs = 0, sum_pos = 0;
      for (int j = 0; j < dh; ++j) {
        out.eigenvalues[static_cast<std::size_t>(i) * dh + j] = ev[j];
        sum_re += ev[j].real();
        sum_abs += std::abs(ev[j]);
        if (ev[j].real() > 0) sum_pos += std::abs(ev[j]);
      }
      out.copying_score[i] = sum_abs > 0 ? sum_re / sum_abs : 0;
      out.positive_fraction[i] = sum_abs > 0 ? sum_pos / sum_abs : 0;
    }
    if (!report_progress(progress, double(l + 1) / L)) return cancelled_error();
  }
  return out;
}

Result<OvReadout> ov_token_readout(const Model& model, WeightVariant variant, int layer, int head, int n_directions,
                                   int top_n, ReadoutRank rank) {
  if (n_directions < 1 || top_n < 1) {
    return make_error("ov_token_readout: n_directions and top_n must be >= 1");
  }
  auto view = VocabView::make(model, variant);
  if (!view) return view.error();
  auto svd = head_circuit_svd(model, variant, layer, head, Circuit::ov);
  if (!svd) return svd.error();
  const FactoredSvd& f = svd->svd;
  const int n_dir = std::min<int>(n_directions, static_cast<int>(f.S.size()));
  const int V = view->d_vocab(), d = view->d_model();
  top_n = std::min(top_n, V);
  MatrixRM Ud(d, n_dir), Vd(d, n_dir);
  for (int k = 0; k < n_dir; ++k) {
    Eigen::Index arg = 0;
    f.V.col(k).cwiseAbs().maxCoeff(&arg);
    const double sign = f.V(arg, k) < 0 ? -1.0 : 1.0;
    Ud.col(k) = (sign * f.U.col(k)).cast<float>();
    Vd.col(k) = (sign * f.V.col(k)).cast<float>();
  }
  // Scores for every token: read [V, n_dir] from W_E rows, write from W_U columns.
  MatrixRMd read_dot(V, n_dir), write_dot(V, n_dir);
  Eigen::VectorXd e_norm(V), u_norm(V);
  const int block = 4096;
  for (int t0 = 0; t0 < V; t0 += block) {
    const int n = std::min(block, V - t0);
    const MatrixRM E = view->embedding_rows(t0, n);    // [n, d]
    const MatrixRM U = view->unembedding_cols(t0, n);  // [d, n]
    read_dot.middleRows(t0, n) = (E * Ud).cast<double>();
    write_dot.middleRows(t0, n) = (U.transpose() * Vd).cast<double>();
    e_norm.segment(t0, n) = E.rowwise().norm().cast<double>();
    u_norm.segment(t0, n) = U.colwise().norm().transpose().cast<double>();
  }
  OvReadout out;
  out.variant = variant;
  out.layer = layer;
  out.head = head;
  out.rank = rank;
  std::vector<int> ids(V);
  auto pick = [&](const MatrixRMd& dots, const Eigen::VectorXd& norms, int k, bool top) {
    auto key = [&](int t) {
      const double s = rank == ReadoutRank::dot ? dots(t, k) : (norms[t] > 0 ? dots(t, k) / norms[t] : 0.0);
      return top ? s : -s;
    };
    std::iota(ids.begin(), ids.end(), 0);
    std::partial_sort(ids.begin(), ids.begin() + top_n, ids.end(), [&](int a, int b) {
      const double ka = key(a), kb = key(b);
      return ka > kb || (ka == kb && a < b);
    });
    std::vector<TokenScore> r(top_n);
    for (int j = 0; j < top_n; ++j) {
      const int t = ids[j];
      r[j] = TokenScore{t, norms[t] > 0 ? dots(t, k) / norms[t] : 0.0, dots(t, k)};
    }
    return r;
  };
  for (int k = 0; k < n_dir; ++k) {
    OvDirectionReadout r;
    r.sigma = f.S[k];
    r.read_top = pick(read_dot, e_norm, k, true);
    r.read_bottom = pick(read_dot, e_norm, k, false);
    r.write_top = pick(write_dot, u_norm, k, true);
    r.write_bottom = pick(write_dot, u_norm, k, false);
    out.directions.push_back(std::move(r));
  }
  return out;
}

namespace {

// A head's block in the variant as float, for the token-space products.
Result<MatrixRM> block_f(const Model& model, WeightVariant variant, int head_index, HeadMatrix which) {
  const int H = model.config.n_head;
  return head_matrix_f(model, variant, head_index / H, head_index % H, which);
}

// The diagonal test of rows M[tokens[r], :] given in `rows` [S, V].
DiagonalTest diagonal_test(const MatrixRM& rows, const std::vector<int>& tokens) {
  const int S = static_cast<int>(tokens.size());
  std::vector<double> ranks(S);
  DiagonalTest t;
  for (int r = 0; r < S; ++r) {
    const float own = rows(r, tokens[r]);
    int above = 0;
    for (Eigen::Index j = 0; j < rows.cols(); ++j) above += rows(r, j) > own;
    ranks[r] = above;
    t.top1 += above == 0;
    t.top5 += above < 5;
    t.mean_rank += above;
  }
  t.top1 /= S;
  t.top5 /= S;
  t.mean_rank /= S;
  std::sort(ranks.begin(), ranks.end());
  t.median_rank = S % 2 ? ranks[S / 2] : 0.5 * (ranks[S / 2 - 1] + ranks[S / 2]);
  return t;
}

std::vector<int> all_heads_or(const ModelConfig& c, std::vector<int> heads) {
  if (heads.empty()) {
    heads.resize(static_cast<std::size_t>(c.n_layer) * c.n_head);
    std::iota(heads.begin(), heads.end(), 0);
  }
  return heads;
}

}  // namespace

Result<FullCircuitTests> full_circuit_tests(const Model& model, WeightVariant variant, const std::vector<int>& heads_in,
                                            int max_rows, std::uint64_t seed, const ProgressFn& progress) {
  const ModelConfig& c = model.config;
  if (max_rows < 1) return make_error("full circuits: max_rows must be at least 1");
  HS_TRY(check_head_list(c, heads_in));
  auto view = VocabView::make(model, variant);
  if (!view.ok()) return view.error();
  const int V = view->d_vocab();
  constexpr int kBlock = 4096;  // tokens per block of W_E or W_U

  FullCircuitTests res;
  res.variant = variant;
  res.n_layer = c.n_layer;
  res.n_head = c.n_head;
  res.d_vocab = V;
  res.heads = all_heads_or(c, heads_in);
  res.seed = seed;
  res.sampled = V > max_rows;
  if (res.sampled) {
    Rng rng(seed);
    res.tokens = random_order(V, rng);
    res.tokens.resize(max_rows);
    std::sort(res.tokens.begin(), res.tokens.end());
  } else {
    res.tokens.resize(V);
    std::iota(res.tokens.begin(), res.tokens.end(), 0);
  }
  const int S = static_cast<int>(res.tokens.size());
  MatrixRM E_rows(S, view->d_model());  // W_E[tokens]
  for (int r = 0; r < S; ++r) E_rows.row(r) = view->embedding_rows(res.tokens[r], 1);

  const int n = static_cast<int>(res.heads.size());
  for (int k = 0; k < n; ++k) {
    const int i = res.heads[k];
    auto W_Q = block_f(model, variant, i, HeadMatrix::W_Q);
    auto W_K = block_f(model, variant, i, HeadMatrix::W_K);
    auto W_V = block_f(model, variant, i, HeadMatrix::W_V);
    auto W_O = block_f(model, variant, i, HeadMatrix::W_O);
    for (const auto* r : {&W_Q, &W_K, &W_V, &W_O})
      if (!r->ok()) return r->error();
    // OV rows: (W_E[tokens] W_V) (W_O W_U); QK rows: (W_E[tokens] W_Q) (W_E W_K)^T.
    const MatrixRM ov_left = E_rows * *W_V;  // [S, dh]
    const MatrixRM qk_left = E_rows * *W_Q;  // [S, dh]
    MatrixRM ov(S, V), qk(S, V);
    for (int t0 = 0; t0 < V; t0 += kBlock) {
      const int m = std::min(kBlock, V - t0);
      const MatrixRM OU = *W_O * view->unembedding_cols(t0, m);   // [dh, m]
      const MatrixRM EK = view->embedding_rows(t0, m) * *W_K;     // [m, dh]
      ov.middleCols(t0, m).noalias() = ov_left * OU;
      qk.middleCols(t0, m).noalias() = qk_left * EK.transpose();
      if (!report_progress(progress, (k + static_cast<double>(t0 + m) / V) / n)) return cancelled_error();
    }
    res.ov.push_back(diagonal_test(ov, res.tokens));
    res.qk.push_back(diagonal_test(qk, res.tokens));
  }
  return res;
}

Result<PositionalQk> positional_qk(const Model& model, WeightVariant variant, const std::vector<int>& heads_in,
                                   int max_positions) {
  const ModelConfig& c = model.config;
  HS_TRY(check_head_list(c, heads_in));
  if (max_positions < 2) return make_error("the positional circuit needs at least 2 positions");
  const int available = static_cast<int>(model.weights.W_pos.rows()) - c.position_offset;
  const int P = std::min({max_positions, c.n_ctx, std::max(available, 0)});
  if (has_position_matrix(c) && P < 2) return make_error("the positional circuit needs at least 2 positions; this model has " + std::to_string(P));
  auto pos = position_rows(model, variant, 0, P);
  if (!pos.ok()) return pos.error();

  PositionalQk res;
  res.variant = variant;
  res.n_layer = c.n_layer;
  res.n_head = c.n_head;
  res.n_positions = P;
  res.heads = all_heads_or(c, heads_in);
  double chance = 0;
  for (int i = 1; i < P; ++i) chance += c.causal ? 1.0 / (i + 1) : 1.0 / P;
  res.previous_chance = chance / (P - 1);
  res.patterns.reserve(res.heads.size() * P * P);
  for (int i : res.heads) {
    auto W_Q = block_f(model, variant, i, HeadMatrix::W_Q);
    auto W_K = block_f(model, variant, i, HeadMatrix::W_K);
    if (!W_Q.ok()) return W_Q.error();
    if (!W_K.ok()) return W_K.error();
    const float scale = attention_spec(c, i / c.n_head).scale;
    MatrixRMd A = ((*pos * *W_Q) * (*pos * *W_K).transpose()).cast<double>() * scale;  // [P, P]
    double previous = 0, current = 0;
    for (int q = 0; q < P; ++q) {
      const int last = c.causal ? q : P - 1;
      const double top = A.row(q).head(last + 1).maxCoeff();
      double sum = 0;
      for (int k = 0; k <= last; ++k) sum += (A(q, k) = std::exp(A(q, k) - top));
      for (int k = 0; k < P; ++k) A(q, k) = k <= last ? A(q, k) / sum : 0.0;
      if (q > 0) previous += A(q, q - 1);
      current += A(q, q);
    }
    res.previous.push_back(previous / (P - 1));
    res.current.push_back(current / P);
    for (Eigen::Index k = 0; k < A.size(); ++k) res.patterns.push_back(static_cast<float>(A.data()[k]));
  }
  return res;
}

}  // namespace hs
