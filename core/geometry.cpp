// Weight geometry analyses; see geometry.hpp.
//
// Shapes: d = d_model, dh = d_head, L layers, H heads, N = L*H heads, k = the
// columns of a per-head factor (dh). Per-head work is in double on dh x dh
// matrices (HeadReader, decompositions.hpp); the all-pairs products are float
// (pair_products.hpp), fed by the two builders here, which write each head's
// factor straight into the engine's panels.
#include "geometry.hpp"

#include "factored_matrix.hpp"
#include "kernels.hpp"
#include "pair_products.hpp"
#include "parallel.hpp"
#include "rng.hpp"

// GCC 12 reports -Wmaybe-uninitialized inside Eigen 3.4's triangular and
// selfadjoint matrix-vector kernels (a known false positive); keep the
// build's warnings meaningful.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <tuple>
#include <vector>

namespace hs {

// ---------------------------------------------------------------------------
// Spectra

namespace {

HeadSpectra empty_spectra(const Model& model, WeightVariant variant, int top_k) {
  const ModelConfig& c = model.config;
  const int L = static_cast<int>(model.weights.layers.size()), H = c.n_head, dh = c.d_head;
  HeadSpectra out;
  out.variant = variant;
  out.n_layer = L;
  out.n_head = H;
  out.d_head = dh;
  out.top_k = top_k;
  out.qk_ignores_rotary = is_rotary(c);
  out.qk_ignores_qk_norm = c.qk_norm != QkNorm::none;
  out.ov_ignores_post_norm = c.norm_after_sublayer;
  out.qk_ignores_softcap = c.attn_softcap > 0;
  for (CircuitSpectra* s : {&out.ov, &out.qk}) {
    s->sigma.assign(static_cast<std::size_t>(L) * H * dh, 0.0);
    s->frobenius.assign(static_cast<std::size_t>(L) * H, 0.0);
    s->effective_rank = s->frobenius;
    s->top1_share = s->frobenius;
    s->topk_share = s->frobenius;
  }
  return out;
}

void record_circuit(CircuitSpectra& s, int i, int dh, int top_k, const Eigen::VectorXd& sigma) {
  for (int j = 0; j < dh && j < sigma.size(); ++j) s.sigma[static_cast<std::size_t>(i) * dh + j] = sigma[j];
  s.frobenius[i] = sigma.norm();
  s.effective_rank[i] = effective_rank(sigma);
  s.top1_share[i] = top_k_energy_share(sigma, 1);
  s.topk_share[i] = top_k_energy_share(sigma, top_k);
}

// Head i's OV (A = W_V, B = W_O) and QK (A = W_Q, B = W_K^T) spectra.
void record_spectra(HeadSpectra& out, int i, const HeadWork& w) {
  record_circuit(out.ov, i, out.d_head, out.top_k, singular_values_from_factors(w.S_V, w.S_O));
  record_circuit(out.qk, i, out.d_head, out.top_k, singular_values_from_factors(w.S_Q, w.S_K));
}

}  // namespace

double effective_rank(const Eigen::VectorXd& sigma) {
  const double total = sigma.cwiseAbs().sum();
  if (!(total > 0)) return 0;
  double entropy = 0;
  for (Eigen::Index i = 0; i < sigma.size(); ++i) {
    const double p = std::abs(sigma[i]) / total;
    if (p > 0) entropy -= p * std::log(p);
  }
  return std::exp(entropy);
}

double top_k_energy_share(const Eigen::VectorXd& sigma, int k) {
  Eigen::VectorXd s2 = sigma.cwiseAbs2();
  const double total = s2.sum();
  if (!(total > 0) || k <= 0) return 0;
  std::sort(s2.data(), s2.data() + s2.size(), std::greater<double>());
  return s2.head(std::min<Eigen::Index>(k, s2.size())).sum() / total;
}

Result<HeadSpectra> head_spectra(const Model& model, WeightVariant variant, int top_k,
                                 const ProgressFn& progress) {
  HS_TRY(check_geometry(model, variant));
  if (top_k < 1) return make_error("head_spectra: top_k must be >= 1, got " + std::to_string(top_k));
  HeadSpectra out = empty_spectra(model, variant, top_k);
  HS_TRY(for_each_head(
      model, variant, [&](int i, HeadWork& w) { record_spectra(out, i, w); },
      [&](double done) { return report_progress(progress, done); }));
  return out;
}

// ---------------------------------------------------------------------------
// Pairs of heads

Result<HeadPairGeometry> head_pair_geometry(const Model& model, WeightVariant variant, int layer_a, int head_a,
                                            HeadSubspace kind_a, int layer_b, int head_b, HeadSubspace kind_b) {
  HS_TRY(check_heads(model));
  auto A = subspace_factor(model, variant, layer_a, head_a, kind_a);
  if (!A) return A.error();
  auto B = subspace_factor(model, variant, layer_b, head_b, kind_b);
  if (!B) return B.error();
  auto angles = principal_angles(*A, *B);
  if (!angles) return angles.error();
  HeadPairGeometry out;
  out.variant = variant;
  out.layer_a = layer_a;
  out.head_a = head_a;
  out.layer_b = layer_b;
  out.head_b = head_b;
  out.kind_a = kind_a;
  out.kind_b = kind_b;
  out.angles = std::move(*angles);
  out.overlap = out.angles.sum_cos2 / model.config.d_head;
  return out;
}

// ---------------------------------------------------------------------------
// All pairs of heads: the builders

namespace {

// Orthonormal basis of the column space of A [d, k] from the square-root
// factor of its Gram G = A^T A (psd_sqrt_factor: S, perm), with the rank cut
// where the pivots fall to (largest column norm * rcond)^2: close to an SVD's
// cut at sigma_max * rcond, since the largest column norm is within sqrt(k)
// of sigma_max. With L the pivoted Cholesky factor (row j of L is row
// perm[j] of S), Q = A[:, perm[:r]] L11^-T is orthonormal in exact
// arithmetic, to ~1e-16 * cond(A)^2 in double (which the rank cut bounds):
// good enough for the all-pairs overlaps (float products anyway), and
// several times cheaper than an eigensolver. Writes Q [d, k] (columns past r
// zero) into one lane of quads (factor_into_lane; its columns in reverse
// order, which spans the same subspace); returns r.
int gram_basis_into_lane(const BlockView& A, const MatrixRMd& S, const std::vector<int>& perm, double rcond,
                         float* out) {
  const int k = static_cast<int>(S.rows()), d = A.rows;
  const double gmax = k > 0 ? S(perm[0], 0) * S(perm[0], 0) : 0.0, tol = gmax * rcond * rcond;
  int r = 0;
  while (r < k && S(perm[r], r) * S(perm[r], r) > tol) ++r;
  // U = L11^-T is upper triangular: Q[:, c] = sum_{j <= c} A[:, perm[j]] U[j][c].
  // Reversed (j' = r-1-j, c' = r-1-c) that is factor_into_lane's lower triangle.
  // X = L11^-1, lower triangular, row by row: X[i][:i] = -(L[i][:i] X[:i][:i]) / L[i][i],
  // as row updates that vectorize (Eigen's triangular solve runs scalar in wasm).
  MatrixRMd X = MatrixRMd::Zero(std::max(r, 1), std::max(r, 1));
  for (int i = 0; i < r; ++i) {
    const double* Li = &S(perm[i], 0);  // row i of L11 is row perm[i] of S
    double* Xi = &X(i, 0);
    for (int j = 0; j < i; ++j) {
      const double* Xj = &X(j, 0);
      for (int c = 0; c <= j; ++c) Xi[c] -= Li[j] * Xj[c];
    }
    Xi[i] = 1.0;
    for (int c = 0; c <= i; ++c) Xi[c] /= Li[i];
  }
  // T(j, c) = U(r-1-j, r-1-c) = X(r-1-c, r-1-j).
  MatrixRM T(std::max(r, 1), std::max(r, 1));
  std::vector<int> rperm(std::max(r, 1), 0);
  for (int j = 0; j < r; ++j) {
    rperm[j] = perm[r - 1 - j];
    for (int c = 0; c < r; ++c) T(j, c) = static_cast<float>(X(r - 1 - c, r - 1 - j));
  }
  // Float is plenty for overlaps (the pair products are float).
  factor_into_lane(d, r, k, A.data, A.row_stride, A.col_stride, rperm.data(), T.data(), out);
  return r;
}

// Subspace redundancy in two phases: an orthonormal basis per head (add),
// then all pairs at once (finish).
class RedundancyBuilder {
 public:
  RedundancyBuilder(const Model& model, WeightVariant variant, HeadSubspace kind)
      : layout_(static_cast<int>(model.weights.layers.size()) * model.config.n_head, model.config.n_head,
                PairSet::symmetric, 0),
        panels_(layout_.head_x, model.config.d_model, model.config.d_head, band_rows(layout_.slots_x)) {
    const ModelConfig& c = model.config;
    out_.variant = variant;
    out_.kind = kind;
    out_.n_layer = static_cast<int>(model.weights.layers.size());
    out_.n_head = c.n_head;
    out_.d_head = c.d_head;
    out_.rank.assign(static_cast<std::size_t>(out_.n_layer) * c.n_head, 0);
    rcond_ = default_rank_rcond(c.d_model, c.d_head);
  }
  // Head i's subspace: the column space of A [d, dh], with S, perm the
  // square-root factor of A^T A (psd_sqrt_factor); its basis goes straight
  // into the projector products' panels.
  void add(int i, const BlockView& A, const MatrixRMd& S, const std::vector<int>& perm) {
    out_.rank[i] = gram_basis_into_lane(A, S, perm, rcond_, panels_.lane(layout_.x_slot[i]));
  }
  Result<RedundancyMatrix> finish(const ProgressFn& progress, double p0, double p1) {
    const int N = static_cast<int>(out_.rank.size()), dh = out_.d_head;
    auto sq = projector_products(layout_, panels_, panels_, progress, p0, p1);
    if (!sq) return sq.error();
    out_.overlap.resize(static_cast<std::size_t>(N) * N);
    for (int i = 0; i < N; ++i) {
      for (int j = 0; j < N; ++j) out_.overlap[static_cast<std::size_t>(i) * N + j] = (*sq)[0](i, j) / dh;
    }
    return std::move(out_);
  }

 private:
  RedundancyMatrix out_;
  PairLayout layout_;
  FactorPanels panels_;  // the bases, head i at slot i
  double rcond_ = 0;
};

// Composition scores in two phases. Per head (add), dh-column factors with
// F F^T = OV^T OV (left) and G G^T = R R^T for each right-hand circuit, each
// scaled to unit norm so that the batched products are the squared scores:
//   OV^T OV   = W_O^T G_V W_O   -> F   = W_O^T S(G_V)
//   QK QK^T   = W_Q G_K W_Q^T   -> G_q = W_Q S(G_K)
//   QK^T QK   = W_K G_Q W_K^T   -> G_k = W_K S(G_Q)
//   OV OV^T   = W_V G_O W_V^T   -> G_v = W_V S(G_O)
// straight into the projector products' panels, every head on both sides.
// Then ||F_i^T G_j||^2 for every ordered pair, the three kinds in one
// product (finish): l1 < l2 are the scores, the rest their null.
class CompositionBuilder {
 public:
  CompositionBuilder(const Model& model, WeightVariant variant)
      : H_(model.config.n_head),
        N_(static_cast<int>(model.weights.layers.size()) * H_),
        layout_(N_, H_, PairSet::ordered, 3),
        FX_(layout_.head_x, model.config.d_model, model.config.d_head,
            band_rows(layout_.slots_x + layout_.slots_y)),
        FY_(layout_.head_y, model.config.d_model, model.config.d_head, FX_.band) {
    out_.variant = variant;
    out_.n_layer = N_ / H_;
    out_.n_head = H_;
    out_.qk_ignores_rotary = is_rotary(model.config);
    out_.qk_ignores_qk_norm = model.config.qk_norm != QkNorm::none;
    out_.qk_ignores_softcap = model.config.attn_softcap > 0;
    const std::size_t total = static_cast<std::size_t>(N_) * N_;
    for (auto* a : {&out_.q, &out_.k, &out_.v, &out_.null_q, &out_.null_k, &out_.null_v}) a->assign(total, 0.0);
  }
  void add(int i, const HeadWork& w) {
    const HeadBlocks& b = w.b;
    // Each factor's squared norm, ||A S||^2 = tr(S^T A^T A S) = <A^T A, S S^T>,
    // is the circuit's ||OV||^2 = <G_V, G_O> or ||QK||^2 = <G_Q, G_K>.
    const double ov2 = b.G_V.cwiseProduct(b.G_O).sum(), qk2 = b.G_Q.cwiseProduct(b.G_K).sum();
    factor(b.W_Ot(), w.S_V, w.p_V, ov2, FX_.lane(layout_.x_slot[i]));
    factor(b.W_Q(), w.S_K, w.p_K, qk2, FY_.lane(layout_.y_slot(i, 0)));
    factor(b.W_K(), w.S_Q, w.p_Q, qk2, FY_.lane(layout_.y_slot(i, 1)));
    factor(b.W_V(), w.S_O, w.p_O, ov2, FY_.lane(layout_.y_slot(i, 2)));
  }
  Result<CompositionScores> finish(const ProgressFn& progress, double p0, double p1) {
    auto sq = projector_products(layout_, FX_, FY_, progress, p0, p1);
    if (!sq) return sq.error();
    std::vector<double>* scores[3] = {&out_.q, &out_.k, &out_.v};
    std::vector<double>* null[3] = {&out_.null_q, &out_.null_k, &out_.null_v};
    for (int y = 0; y < 3; ++y) {
      const MatrixRMd& s = (*sq)[y];
      for (int i = 0; i < N_; ++i) {
        for (int j = 0; j < N_; ++j) {
          if (i == j) continue;
          std::vector<double>& dst = i / H_ < j / H_ ? *scores[y] : *null[y];
          dst[static_cast<std::size_t>(i) * N_ + j] = std::sqrt(std::max(0.0, s(i, j)));
        }
      }
    }
    return std::move(out_);
  }

 private:
  // A S / ||A S|| (A [d, dh] float, S [dh, dh] with row permutation perm,
  // n2 = ||A S||^2) into one lane of a slot (`out`): S is scaled before the
  // product. Float from here on: it feeds float products, and the scores
  // come out within ~1e-7 of a double computation.
  // (Called for several heads at once: see for_each_head.)
  static void factor(const BlockView& A, const MatrixRMd& S, const std::vector<int>& perm, double n2, float* out) {
    const int k = static_cast<int>(S.rows());
    const double scale = n2 > 0 ? 1.0 / std::sqrt(n2) : 1.0;
    MatrixRM t = MatrixRM::Zero(k, k);  // the scaled triangle
    for (int j = 0; j < k; ++j)
      for (int c = 0; c <= j; ++c) t(j, c) = static_cast<float>(S(perm[j], c) * scale);
    factor_into_lane(A.rows, k, k, A.data, A.row_stride, A.col_stride, perm.data(), t.data(), out);
  }

  int H_, N_;
  PairLayout layout_;
  FactorPanels FX_, FY_;
  CompositionScores out_;
};

}  // namespace

// ---------------------------------------------------------------------------
// All pairs of heads: the analyses

Result<RedundancyMatrix> subspace_redundancy(const Model& model, WeightVariant variant, HeadSubspace kind,
                                             const ProgressFn& progress) {
  HS_TRY(check_geometry(model, variant));
  const int H = model.config.n_head, N = static_cast<int>(model.weights.layers.size()) * H;
  RedundancyBuilder builder(model, variant, kind);
  // Phase 1 (~15% of the work): an orthonormal basis per head, a layer's
  // heads shared over the threads.
  std::vector<Status> status(static_cast<std::size_t>(N), Ok{});
  for (int i0 = 0; i0 < N; i0 += H) {
    parallel_for(H, [&](std::ptrdiff_t h0, std::ptrdiff_t h1) {
      for (int i = i0 + static_cast<int>(h0); i < i0 + h1; ++i) {
        auto A = subspace_factor_f(model, variant, i / H, i % H, kind);
        if (!A) {
          status[i] = A.error();
          continue;
        }
        std::vector<int> perm;
        const MatrixRMd S = psd_sqrt_factor(gram_cols(*A), &perm);
        builder.add(i, view_of(*A), S, perm);
      }
    });
    for (int i = i0; i < i0 + H; ++i) HS_TRY(status[i]);
    if (!report_progress(progress, 0.15 * (i0 + H) / N)) return cancelled_error();
  }
  return builder.finish(progress, 0.15, 1.0);  // phase 2: all pairs at once
}

Result<CompositionScores> composition_scores(const Model& model, WeightVariant variant,
                                             const ProgressFn& progress) {
  HS_TRY(check_geometry(model, variant));
  CompositionBuilder builder(model, variant);
  HS_TRY(for_each_head(
      model, variant, [&](int i, HeadWork& w) { builder.add(i, w); },
      [&](double done) { return report_progress(progress, 0.1 * done); }));
  return builder.finish(progress, 0.1, 1.0);
}

Result<WeightGeometry> weight_geometry(const Model& model, WeightVariant variant, int top_k,
                                       const ProgressFn& progress) {
  HS_TRY(check_geometry(model, variant));
  if (top_k < 1) return make_error("weight_geometry: top_k must be >= 1, got " + std::to_string(top_k));
  WeightGeometry out;
  out.spectra = empty_spectra(model, variant, top_k);
  RedundancyBuilder write(model, variant, HeadSubspace::output_write);
  CompositionBuilder composition(model, variant);
  // Shares of the work (GPT-2-small in wasm): per head ~25%, redundancy's
  // pairs ~20%, composition's ~55%.
  constexpr double heads_done = 0.25, write_done = 0.45;
  HS_TRY(for_each_head(
      model, variant,
      [&](int i, HeadWork& w) {
        record_spectra(out.spectra, i, w);
        write.add(i, w.b.W_Ot(), w.S_O, w.p_O);
        composition.add(i, w);
      },
      [&](double done) { return report_progress(progress, heads_done * done); }));
  auto red = write.finish(progress, heads_done, write_done);
  if (!red) return red.error();
  out.write_redundancy = std::move(*red);
  auto comp = composition.finish(progress, write_done, 1.0);
  if (!comp) return comp.error();
  out.composition = std::move(*comp);
  return out;
}

// ---------------------------------------------------------------------------
// The composition of two factored matrices, and its random baseline

double composition_score(const Eigen::Ref<const MatrixRMd>& A1, const Eigen::Ref<const MatrixRMd>& B1,
                         const Eigen::Ref<const MatrixRMd>& A2, const Eigen::Ref<const MatrixRMd>& B2) {
  const MatrixRMd G1 = gram_cols(MatrixRMd(A1));
  const MatrixRMd M = B1 * A2;
  const MatrixRMd G2 = gram_rows(MatrixRMd(B2));
  const double num = (G1 * M * G2).cwiseProduct(M).sum();  // tr(G1 M G2 M^T)
  const double left = G1.cwiseProduct(gram_rows(MatrixRMd(B1))).sum();
  const double right = gram_cols(MatrixRMd(A2)).cwiseProduct(G2).sum();
  if (!(left > 0) || !(right > 0)) return 0;
  return std::sqrt(std::max(0.0, num) / (left * right));
}

Result<CompositionBaseline> composition_baseline(int d_model, int d_head, int n_samples, std::uint64_t seed,
                                                 const ProgressFn& progress) {
  if (d_model < 1 || d_head < 1 || n_samples < 2) {
    return make_error("composition_baseline: need d_model, d_head >= 1 and n_samples >= 2");
  }
  Rng rng(seed);
  const float bound = 1.0f / std::sqrt(static_cast<float>(d_head));
  MatrixRM X[4];
  std::vector<double> scores(n_samples);
  for (int s = 0; s < n_samples; ++s) {
    for (auto& x : X) {
      x.resize(d_model, d_head);
      for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = bound * static_cast<float>(rng.uniform() * 2.0 - 1.0);  // [-1, 1)
    }
    // W_A = X1 X2^T, W_B = X3 X4^T; the trace identity with float Grams.
    const MatrixRMd G1 = (X[0].transpose() * X[0]).cast<double>();
    const MatrixRMd G2t = (X[1].transpose() * X[1]).cast<double>();  // B1 B1^T
    const MatrixRMd M = (X[1].transpose() * X[2]).cast<double>();    // B1 A2
    const MatrixRMd G3 = (X[2].transpose() * X[2]).cast<double>();   // A2^T A2
    const MatrixRMd G4 = (X[3].transpose() * X[3]).cast<double>();   // B2 B2^T
    const double num = (G1 * M * G4).cwiseProduct(M).sum();
    const double den = G1.cwiseProduct(G2t).sum() * G3.cwiseProduct(G4).sum();
    scores[s] = den > 0 ? std::sqrt(std::max(0.0, num) / den) : 0;
    if (!report_progress(progress, double(s + 1) / n_samples)) return cancelled_error();
  }
  CompositionBaseline out;
  out.d_model = d_model;
  out.d_head = d_head;
  out.n_samples = n_samples;
  out.seed = seed;
  out.mean = std::accumulate(scores.begin(), scores.end(), 0.0) / n_samples;
  double ss = 0;
  for (double x : scores) ss += (x - out.mean) * (x - out.mean);
  out.std = std::sqrt(ss / (n_samples - 1));
  return out;
}

// ---------------------------------------------------------------------------
// Merge candidates

Result<MergeCandidates> merge_candidates(const Model& model, WeightVariant variant, const RedundancyMatrix& write,
                                         const RedundancyMatrix& read, int top_n) {
  if (write.kind != HeadSubspace::output_write || read.kind != HeadSubspace::value_read) {
    return make_error("merge_candidates: needs the O (write) and V (read) redundancy matrices");
  }
  const ModelConfig& c = model.config;
  if (write.variant != variant || read.variant != variant || write.n_layer != c.n_layer || write.n_head != c.n_head ||
      read.n_layer != c.n_layer || read.n_head != c.n_head) {
    return make_error("merge_candidates: the write and read matrices come from different models or variants");
  }
  const int H = c.n_head, N = c.n_layer * H;
  if (write.overlap.size() != static_cast<std::size_t>(N) * N || read.overlap.size() != write.overlap.size()) {
    return make_error("merge_candidates: overlap matrices have the wrong size");
  }
  std::vector<MergeCandidate> all;
  for (int l = 0; l < c.n_layer; ++l) {
    // <QK_a, QK_b>_F = sum of (W_Q[a]^T W_Q[b]) .* (W_K[a]^T W_K[b]): dh x dh Grams, no d x d product.
    std::vector<MatrixRMd> Q(H), K(H);
    for (int h = 0; h < H; ++h) {
      auto q = head_matrix(model, variant, l, h, HeadMatrix::W_Q);
      auto k = head_matrix(model, variant, l, h, HeadMatrix::W_K);
      if (!q.ok()) return q.error();
      if (!k.ok()) return k.error();
      Q[h] = std::move(q).value();
      K[h] = std::move(k).value();
    }
    auto inner = [&](int a, int b) { return ((Q[a].transpose() * Q[b]).array() * (K[a].transpose() * K[b]).array()).sum(); };
    std::vector<double> norm(H);
    for (int h = 0; h < H; ++h) norm[h] = std::sqrt(std::max(0.0, inner(h, h)));
    for (int a = 0; a < H; ++a) {
      for (int b = a + 1; b < H; ++b) {
        const std::size_t i = static_cast<std::size_t>(l) * H + a, j = static_cast<std::size_t>(l) * H + b;
        MergeCandidate m;
        m.layer = l;
        m.head_a = a;
        m.head_b = b;
        m.kv_siblings = c.n_kv_head < c.n_head && kv_head_of(c, a) == kv_head_of(c, b);
        m.write_overlap = write.overlap[i * N + j];
        m.read_overlap = read.overlap[i * N + j];
        m.qk_similarity = norm[a] > 0 && norm[b] > 0 ? inner(a, b) / (norm[a] * norm[b]) : 0.0;
        m.combined = m.kv_siblings ? 0.5 * (m.write_overlap + m.qk_similarity)
                                   : (m.write_overlap + m.read_overlap + m.qk_similarity) / 3.0;
        all.push_back(m);
      }
    }
  }
  const std::size_t n = std::min<std::size_t>(std::max(0, top_n), all.size());
  std::partial_sort(all.begin(), all.begin() + n, all.end(), [](const MergeCandidate& a, const MergeCandidate& b) {
    if (a.combined != b.combined) return a.combined > b.combined;
    return std::tie(a.layer, a.head_a, a.head_b) < std::tie(b.layer, b.head_a, b.head_b);
  });
  all.resize(n);
  MergeCandidates out;
  out.variant = variant;
  out.pairs = std::move(all);
  return out;
}

Result<MergeCandidates> merge_candidates(const Model& model, WeightVariant variant, int top_n,
                                         const ProgressFn& progress) {
  auto write = subspace_redundancy(model, variant, HeadSubspace::output_write, progress_range(progress, 0, 0.5));
  if (!write) return write.error();
  auto read = subspace_redundancy(model, variant, HeadSubspace::value_read, progress_range(progress, 0.5, 1));
  if (!read) return read.error();
  return merge_candidates(model, variant, *write, *read, top_n);
}

}  // namespace hs
