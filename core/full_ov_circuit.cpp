// The full OV circuit in token space; see full_ov_circuit.hpp.
#include "full_ov_circuit.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

#include "head_circuits.hpp"

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

}  // namespace hs
