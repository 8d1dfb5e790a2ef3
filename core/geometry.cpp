// Weight geometry of attention heads; see geometry.hpp.
//
// Shapes: d = d_model, dh = d_head, L layers, H heads, N = L*H heads, k = the
// columns of a per-head factor (dh). Per-head work is in double on dh x dh
// matrices; the all-pairs products are float GEMMs.
#include "geometry.hpp"

#include "kernels.hpp"

// GCC 12 reports -Wmaybe-uninitialized inside Eigen 3.4's triangular and
// selfadjoint matrix-vector kernels (a known false positive); keep the
// build's warnings meaningful.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <numeric>
#include <string>
#include <tuple>

namespace hs {

namespace {

using MatrixCd = Eigen::MatrixXd;  // column-major, for Eigen's decompositions

Error cancelled() { return make_error("cancelled"); }

bool keep_going(const GeometryProgress& progress, double fraction) {
  return !progress || progress(std::min(1.0, std::max(0.0, fraction)));
}

// G = A^T A for A [d, k] (kernels.hpp's gram_f64: upper tiles, mirrored).
template <class Mat>
MatrixRMd gram_cols(const Mat& A) {
  MatrixRMd G(A.cols(), A.cols());
  gram_f64(static_cast<int>(A.rows()), static_cast<int>(A.cols()), A.data(), static_cast<int>(A.cols()), G.data());
  return G;
}

// G = A^T A for a float block read in place.
MatrixRMd gram_cols(const BlockView& A) {
  MatrixRMd G(A.cols, A.cols);
  gram_f64(A.rows, A.cols, A.data, A.row_stride, A.col_stride, G.data());
  return G;
}

BlockView view_of(const MatrixRM& M) {
  return {M.data(), M.cols(), 1, static_cast<int>(M.rows()), static_cast<int>(M.cols())};
}

// G = B B^T for B [k, d].
MatrixRMd gram_rows(const MatrixRMd& B) { return gram_cols(MatrixRMd(B.transpose())); }

// Singular values (descending) of a factor given its Gram-like core: the
// square roots of the eigenvalues of the symmetric PSD matrix C.
// (Householder tridiagonalization, tridiagonalize_f64, of C scaled to its
// largest entry like Eigen's solver, then detail::tridiagonal_eigenvalues;
// Eigen's solver if that ever fails to converge.)
Eigen::VectorXd sqrt_eigenvalues_desc(const MatrixRMd& C) {
  const Eigen::Index k = C.rows();
  const double scale = k > 0 ? C.cwiseAbs().maxCoeff() : 0.0;
  if (!(scale > 0)) return Eigen::VectorXd::Zero(k);
  MatrixRMd A = C / scale;
  std::vector<double> d(k), e(std::max<Eigen::Index>(k - 1, 0));
  tridiagonalize_f64(static_cast<int>(k), A.data(), d.data(), e.data());
  Eigen::VectorXd s(k);
  if (detail::tridiagonal_eigenvalues(d, e)) {
    for (Eigen::Index i = 0; i < k; ++i) s[i] = d[static_cast<std::size_t>(i)];  // ascending
  } else {
    s = Eigen::SelfAdjointEigenSolver<MatrixCd>(MatrixCd(C / scale), Eigen::EigenvaluesOnly).eigenvalues();
  }
  return (s * scale).cwiseMax(0.0).cwiseSqrt().reverse();
}

// Thin Householder QR of A [l, m]: A = Q R, Q [l, min(l,m)], R [min(l,m), m].
void thin_qr(const MatrixCd& A, MatrixCd& Q, MatrixCd& R) {
  const Eigen::Index l = A.rows(), m = A.cols(), n = std::min(l, m);
  Eigen::HouseholderQR<MatrixCd> qr(A);
  Q = qr.householderQ() * MatrixCd::Identity(l, n);
  R = qr.matrixQR().topRows(n).triangularView<Eigen::Upper>();
}

double clamp_unit(double x) { return std::min(1.0, std::max(-1.0, x)); }

// Pivoted Cholesky of a symmetric PSD G [k, k] (LAPACK's dpstrf, unblocked):
// G[p, p] ~= L L^T with L [k, r] lower trapezoidal, pivoting on the largest
// diagonal of the remaining Schur complement and stopping once it is <= tol,
// so that r is the numerical rank. (Eigen's LDLT pivots on the original
// diagonal and does not reveal rank.) Returns r; L and p are outputs. The
// column updates are plain loops over contiguous columns, which the
// compilers vectorize (Eigen's matrix-vector product runs scalar in wasm).
int pivoted_cholesky(const MatrixRMd& G, double tol, MatrixCd& L, std::vector<int>& p) {
  const int k = static_cast<int>(G.rows());
  MatrixCd a = G;  // lower columns [0, j) become L as they are computed
  Eigen::VectorXd diag = G.diagonal();
  p.resize(k);
  std::iota(p.begin(), p.end(), 0);
  int r = 0;
  for (int j = 0; j < k; ++j, ++r) {
    Eigen::Index m;
    const double dmax = diag.tail(k - j).maxCoeff(&m);
    m += j;
    if (!(dmax > tol)) break;
    if (m != j) {
      a.row(j).swap(a.row(m));
      a.col(j).swap(a.col(m));
      std::swap(diag[j], diag[m]);
      std::swap(p[j], p[m]);
    }
    const double ljj = std::sqrt(dmax);
    a(j, j) = ljj;
    const int rest = k - j - 1;
    if (rest == 0) continue;
    double* col = a.data() + std::ptrdiff_t(j) * k + j + 1;  // a(j+1.., j)
    for (int c = 0; c < j; ++c) {
      const double f = a(j, c);
      const double* lc = a.data() + std::ptrdiff_t(c) * k + j + 1;
      for (int i = 0; i < rest; ++i) col[i] -= f * lc[i];
    }
    const double inv = 1.0 / ljj;
    for (int i = 0; i < rest; ++i) {
      col[i] *= inv;
      diag[j + 1 + i] -= col[i] * col[i];
    }
  }
  L = a.leftCols(r).triangularView<Eigen::Lower>();
  return r;
}

// S [k, k] with S S^T = G for symmetric positive semidefinite G, from the
// pivoted Cholesky (G[p, p] = L L^T, so S = P^T L, padded with zero columns
// past the rank), stopping at LAPACK's default tolerance k eps max(diag G):
// what remains is rounding noise. S is a lower triangle with its rows
// permuted: row perm[j] of S is row j of L (factor_into_lane multiplies by
// it at half a GEMM's cost), and its pivots S(perm[j], j)^2 decrease from
// the largest diagonal of G (gram_basis_into_lane cuts the rank on them).
MatrixRMd psd_sqrt_factor(const MatrixRMd& G, std::vector<int>* perm = nullptr) {
  const Eigen::Index k = G.rows();
  if (k == 0) return MatrixRMd(0, 0);
  const double tol = double(k) * std::numeric_limits<double>::epsilon() * std::max(0.0, G.diagonal().maxCoeff());
  MatrixCd L;
  std::vector<int> p;
  const int r = pivoted_cholesky(G, tol, L, p);
  MatrixRMd S = MatrixRMd::Zero(k, k);
  for (int j = 0; j < k; ++j)
    for (int c = 0; c < r && c <= j; ++c) S(p[j], c) = L(j, c);
  if (perm) *perm = std::move(p);
  return S;
}

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

// The block behind each subspace kind: its columns span the subspace.
HeadMatrix subspace_matrix(HeadSubspace kind) {
  switch (kind) {
    case HeadSubspace::query_read: return HeadMatrix::W_Q;
    case HeadSubspace::key_read: return HeadMatrix::W_K;
    case HeadSubspace::value_read: return HeadMatrix::W_V;
    case HeadSubspace::output_write: break;
  }
  return HeadMatrix::W_O;  // [dh, d]: transposed below
}

// The analysis factor of each subspace kind as [d, dh] columns, in double
// (head_matrix) for the single-pair angles and in float (head_matrix_f) for
// the all-pairs redundancy, like the one pass's blocks.
Result<MatrixRMd> subspace_factor(const Model& model, WeightVariant variant, int layer, int head,
                                  HeadSubspace kind) {
  auto M = head_matrix(model, variant, layer, head, subspace_matrix(kind));
  if (!M || kind != HeadSubspace::output_write) return M;
  return MatrixRMd(M->transpose());
}
Result<MatrixRM> subspace_factor_f(const Model& model, WeightVariant variant, int layer, int head,
                                   HeadSubspace kind) {
  auto M = head_matrix_f(model, variant, layer, head, subspace_matrix(kind));
  if (!M || kind != HeadSubspace::output_write) return M;
  return MatrixRM(M->transpose());
}

Status check_heads(const Model& model) {
  const ModelConfig& c = model.config;
  if (c.n_head <= 0 || c.d_head <= 0 || c.d_model <= 0 || c.n_kv_head <= 0 || c.n_head % c.n_kv_head != 0) {
    return make_error("model config has no valid head layout (n_head " + std::to_string(c.n_head) + ", n_kv_head " +
                      std::to_string(c.n_kv_head) + ", d_head " + std::to_string(c.d_head) + ")");
  }
  if (model.weights.layers.empty()) return make_error("model has no layers");
  return Ok{};
}

// The model has heads, and the variant can be derived from it.
Status check_geometry(const Model& model, WeightVariant variant) {
  HS_TRY(check_heads(model));
  if (variant == WeightVariant::processed) HS_TRY(check_weight_processing(model.config));
  return Ok{};
}

bool is_rotary(const ModelConfig& c) { return c.rotary_dim > 0; }

// Per head: the four blocks in float, and their Grams in double. W_O is
// viewed transposed, [d, dh] like the others: its row space is the head's
// write subspace, and its Gram is W_O W_O^T. In the raw variant W_O's block
// is read where it is stored (raw_head_block: dh whole rows), and W_Q, W_K,
// W_V are read from copies of the whole layer's blocks (LayerBlocks: their
// rows are strided in the layer's matrices; reading them in place measured
// slower, the strided rows then being read twice, by the Gram and the
// factors). The processed variant's blocks are computed (head_matrix_f).
struct HeadBlocks {
  MatrixRM Q, K, V, O;           // the blocks computed for this head (processed variant)
  BlockView q, k, v, o;          // W_Q, W_K, W_V [d, dh]; W_O [dh, d]: those, or read in place or in copies
  MatrixRMd G_Q, G_K, G_V, G_O;  // dh x dh: W^T W for Q, K, V; W_O W_O^T
  BlockView W_Q() const { return q; }
  BlockView W_K() const { return k; }
  BlockView W_V() const { return v; }
  BlockView W_Ot() const { return o.transposed(); }  // [d, dh]
  HeadBlocks() = default;
  HeadBlocks(HeadBlocks&&) = default;  // (a move keeps the matrices' buffers, which the views may point into)
  HeadBlocks(const HeadBlocks&) = delete;
};

// The raw variant's W_Q, W_K, W_V blocks of one layer's heads, copied a
// layer at a time (raw_layer_blocks).
struct LayerBlocks {
  int layer = -1;
  std::vector<MatrixRM> q, k, v;  // by block: head, or KV head
  Status read(const Model& model, int l) {
    layer = -1;
    HS_TRY(raw_layer_blocks(model, l, HeadMatrix::W_Q, q));
    HS_TRY(raw_layer_blocks(model, l, HeadMatrix::W_K, k));
    HS_TRY(raw_layer_blocks(model, l, HeadMatrix::W_V, v));
    layer = l;
    return Ok{};
  }
};

// Head (l, h)'s blocks; in the raw variant from `layer`, which must hold
// layer l.
Result<HeadBlocks> head_blocks(const Model& model, WeightVariant variant, int l, int h, const LayerBlocks& layer) {
  HeadBlocks b;
  if (variant == WeightVariant::raw) {
    const int kv = kv_head_of(model.config, h);
    b.q = view_of(layer.q[h]);
    b.k = view_of(layer.k[kv]);
    b.v = view_of(layer.v[kv]);
    auto o = raw_head_block(model, l, h, HeadMatrix::W_O);
    if (!o) return o.error();
    b.o = *o;
  } else {
    MatrixRM* blocks[4] = {&b.Q, &b.K, &b.V, &b.O};
    const HeadMatrix which[4] = {HeadMatrix::W_Q, HeadMatrix::W_K, HeadMatrix::W_V, HeadMatrix::W_O};
    for (int m = 0; m < 4; ++m) {
      auto M = head_matrix_f(model, variant, l, h, which[m]);
      if (!M) return M.error();
      *blocks[m] = std::move(*M);
    }
    b.q = view_of(b.Q);
    b.k = view_of(b.K);
    b.v = view_of(b.V);
    b.o = view_of(b.O);
  }
  b.G_Q = gram_cols(b.W_Q());
  b.G_K = gram_cols(b.W_K());
  b.G_V = gram_cols(b.W_V());
  b.G_O = gram_cols(b.W_Ot());
  return b;
}

// sigma(A B) from square-root factors of the two Grams, S_a S_a^T = A^T A and
// S_b S_b^T = B B^T: A = Q_a S_a^T and B = S_b Q_b^T with orthonormal Q_a,
// Q_b, so A B = Q_a (S_a^T S_b) Q_b^T and sigma^2 = eig(M^T M), M = S_a^T S_b.
// The eigenvalues carry an absolute error ~ eps * sigma_max^2, so sigma below
// ~sqrt(k eps) sigma_max is rounding noise: a rank-deficient factor would
// otherwise show ~1e-8 "singular values" and a slightly inflated effective
// rank. Those are zeroed, as an SVD of the explicit product would show.
Eigen::VectorXd singular_values_from_factors(const MatrixRMd& S_a, const MatrixRMd& S_b) {
  MatrixRMd M(S_a.cols(), S_b.cols());
  cross_f64(static_cast<int>(S_a.rows()), static_cast<int>(S_a.cols()), static_cast<int>(S_b.cols()), S_a.data(),
            static_cast<int>(S_a.cols()), S_b.data(), static_cast<int>(S_b.cols()), M.data());
  Eigen::VectorXd sigma = sqrt_eigenvalues_desc(gram_cols(M));
  if (sigma.size() > 0) {
    const double floor2 = 4.0 * sigma.size() * std::numeric_limits<double>::epsilon() * sigma[0] * sigma[0];
    for (Eigen::Index i = 0; i < sigma.size(); ++i) {
      if (sigma[i] * sigma[i] <= floor2) sigma[i] = 0;
    }
  }
  return sigma;
}

// What the all-heads analyses share from one head: its blocks and Grams
// (head_blocks) and the square-root factors of the four Grams, which the
// spectra (OV, QK) and the composition factors use.
struct HeadWork {
  HeadBlocks b;
  MatrixRMd S_Q, S_K, S_V, S_O;  // S S^T = G_Q, G_K, G_V, G_O
  std::vector<int> p_Q, p_K, p_V, p_O;  // their row permutations (psd_sqrt_factor)
};

// The heads' HeadWork, head after head (the all-heads passes), reading each
// layer's raw blocks once.
class HeadReader {
 public:
  HeadReader(const Model& model, WeightVariant variant) : model_(model), variant_(variant) {}
  Result<HeadWork> work(int l, int h);

 private:
  const Model& model_;
  WeightVariant variant_;
  LayerBlocks layer_;
};

Result<HeadWork> HeadReader::work(int l, int h) {
  if (variant_ == WeightVariant::raw && layer_.layer != l) HS_TRY(layer_.read(model_, l));
  auto b = head_blocks(model_, variant_, l, h, layer_);
  if (!b) return b.error();
  HeadWork w{std::move(*b), {}, {}, {}, {}, {}, {}, {}, {}};
  w.S_Q = psd_sqrt_factor(w.b.G_Q, &w.p_Q);
  w.S_K = psd_sqrt_factor(w.b.G_K, &w.p_K);
  w.S_V = psd_sqrt_factor(w.b.G_V, &w.p_V);
  w.S_O = psd_sqrt_factor(w.b.G_O, &w.p_O);
  return w;
}

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

// ---------------------------------------------------------------------------

const char* circuit_name(Circuit circuit) { return circuit == Circuit::ov ? "OV" : "QK"; }

const char* head_subspace_name(HeadSubspace kind) {
  switch (kind) {
    case HeadSubspace::query_read: return "Q";
    case HeadSubspace::key_read: return "K";
    case HeadSubspace::value_read: return "V";
    case HeadSubspace::output_write: return "O";
  }
  return "?";
}

Result<FactoredSvd> factored_svd(const Eigen::Ref<const MatrixRMd>& A, const Eigen::Ref<const MatrixRMd>& B) {
  if (A.cols() != B.rows()) {
    return make_error("factored_svd: A is [" + std::to_string(A.rows()) + ", " + std::to_string(A.cols()) +
                      "] but B is [" + std::to_string(B.rows()) + ", " + std::to_string(B.cols()) + "]");
  }
  if (!A.allFinite() || !B.allFinite()) return make_error("factored_svd: a factor contains NaN or Inf");
  FactoredSvd out;
  if (A.size() == 0 || B.size() == 0) {
    out.U = MatrixRMd::Zero(A.rows(), 0);
    out.V = MatrixRMd::Zero(B.cols(), 0);
    return out;
  }
  // M = Qa Ra (Qb Rb)^T = Qa (Ra Rb^T) Qb^T, and Ra Rb^T is small.
  MatrixCd Qa, Ra, Qb, Rb;
  thin_qr(MatrixCd(A), Qa, Ra);
  thin_qr(MatrixCd(B.transpose()), Qb, Rb);
  MatrixCd core = Ra * Rb.transpose();  // [ka, kb]
  Eigen::BDCSVD<MatrixCd> svd(core, Eigen::ComputeThinU | Eigen::ComputeThinV);
  out.S = svd.singularValues();
  out.U = Qa * svd.matrixU();
  out.V = Qb * svd.matrixV();
  return out;
}

Eigen::VectorXd factored_singular_values(const MatrixRMd& gram_a, const MatrixRMd& gram_b) {
  return singular_values_from_factors(psd_sqrt_factor(gram_a), psd_sqrt_factor(gram_b));
}

Result<HeadCircuitSvd> head_circuit_svd(const Model& model, WeightVariant variant, int layer, int head,
                                        Circuit circuit) {
  HS_TRY(check_heads(model));
  HeadCircuitSvd out;
  out.variant = variant;
  out.circuit = circuit;
  out.layer = layer;
  out.head = head;
  const HeadMatrix a = circuit == Circuit::ov ? HeadMatrix::W_V : HeadMatrix::W_Q;
  const HeadMatrix b = circuit == Circuit::ov ? HeadMatrix::W_O : HeadMatrix::W_K;
  auto A = head_matrix(model, variant, layer, head, a);
  if (!A) return A.error();
  auto B = head_matrix(model, variant, layer, head, b);
  if (!B) return B.error();
  // OV = W_V W_O; QK = W_Q W_K^T.
  auto svd = circuit == Circuit::ov ? factored_svd(*A, *B) : factored_svd(*A, B->transpose());
  if (!svd) return svd.error();
  out.svd = std::move(*svd);
  return out;
}

// ---------------------------------------------------------------------------

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
                                 const GeometryProgress& progress) {
  HS_TRY(check_geometry(model, variant));
  if (top_k < 1) return make_error("head_spectra: top_k must be >= 1, got " + std::to_string(top_k));
  HeadSpectra out = empty_spectra(model, variant, top_k);
  const int N = out.n_layer * out.n_head;
  HeadReader heads(model, variant);
  for (int i = 0; i < N; ++i) {
    auto w = heads.work(i / out.n_head, i % out.n_head);
    if (!w) return w.error();
    record_spectra(out, i, *w);
    if (!keep_going(progress, double(i + 1) / N)) return cancelled();
  }
  return out;
}

// ---------------------------------------------------------------------------

Result<MatrixRM> unembed_embed_product(const Model& model, WeightVariant variant, const GeometryProgress& progress) {
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
    if (!keep_going(progress, double(t0 + n) / V)) return cancelled();
  }
  return MatrixRM(acc.cast<float>());
}

Result<OvCopying> ov_copying_scores(const Model& model, WeightVariant variant, const MatrixRM& unembed_embed,
                                    const GeometryProgress& progress) {
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
    if (!keep_going(progress, double(l + 1) / L)) return cancelled();
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

// ---------------------------------------------------------------------------

double default_rank_rcond(Eigen::Index rows, Eigen::Index cols) {
  return static_cast<double>(std::numeric_limits<float>::epsilon()) * static_cast<double>(std::max(rows, cols));
}

MatrixRMd orthonormal_basis(const Eigen::Ref<const MatrixRMd>& A, double rcond) {
  const Eigen::Index d = A.rows(), k = A.cols();
  if (rcond < 0) rcond = default_rank_rcond(d, k);
  if (d == 0 || k == 0) return MatrixRMd(d, 0);
  // Householder QR then an SVD of the small R: as accurate as an SVD of A
  // (backward stable), at the cost of a QR.
  MatrixCd Q, R;
  thin_qr(MatrixCd(A), Q, R);
  Eigen::BDCSVD<MatrixCd> svd(R, Eigen::ComputeThinU);
  const Eigen::VectorXd& s = svd.singularValues();
  if (s.size() == 0 || !(s[0] > 0)) return MatrixRMd(d, 0);
  const double tol = s[0] * rcond;
  Eigen::Index r = 0;
  while (r < s.size() && s[r] > tol) ++r;
  return MatrixRMd(Q * svd.matrixU().leftCols(r));
}

Result<PrincipalAngles> principal_angles(const Eigen::Ref<const MatrixRMd>& A, const Eigen::Ref<const MatrixRMd>& B,
                                         double rcond) {
  if (A.rows() != B.rows()) {
    return make_error("principal_angles: A has " + std::to_string(A.rows()) + " rows but B has " +
                      std::to_string(B.rows()));
  }
  if (!A.allFinite() || !B.allFinite()) return make_error("principal_angles: input contains NaN or Inf");
  const MatrixRMd QA = orthonormal_basis(A, rcond), QB = orthonormal_basis(B, rcond);
  PrincipalAngles out;
  out.rank_a = static_cast<int>(QA.cols());
  out.rank_b = static_cast<int>(QB.cols());
  const int k = std::min(out.rank_a, out.rank_b);
  if (k == 0) return out;
  const MatrixCd C = QA.transpose() * QB;  // [ra, rb]
  out.sum_cos2 = C.squaredNorm();
  const Eigen::VectorXd cos = Eigen::BDCSVD<MatrixCd>(C).singularValues();  // descending, k values
  // The sines of the same angles: the component of the smaller basis outside
  // the larger subspace.
  const MatrixCd Bp = out.rank_a >= out.rank_b ? MatrixCd(QB - QA * C) : MatrixCd(QA - QB * C.transpose());
  const Eigen::VectorXd sin = Eigen::BDCSVD<MatrixCd>(Bp).singularValues();  // descending
  out.theta.resize(k);
  for (int i = 0; i < k; ++i) {  // i-th smallest angle: i-th largest cosine, i-th smallest sine
    const double c = cos[i];
    const double s = k - 1 - i < sin.size() ? sin[k - 1 - i] : 0.0;
    out.theta[i] = c * c >= 0.5 ? std::asin(clamp_unit(s)) : std::acos(clamp_unit(c));
  }
  std::sort(out.theta.begin(), out.theta.end());
  return out;
}

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
// The batched kernel

namespace detail {

namespace {

// An uninitialized float buffer whose data starts on a 64-byte boundary
// (wasm's malloc aligns to 8): the kernels' 16-byte loads then never straddle
// cache lines. Uninitialized because the buffers are large (~100 MB of
// factors) and written before they are read.
class AlignedFloats {
 public:
  explicit AlignedFloats(std::size_t n) : buffer_(new float[n + 16]) {
    const auto address = reinterpret_cast<std::uintptr_t>(buffer_.get());
    data_ = buffer_.get() + (64 - address % 64) % 64 / sizeof(float);
  }
  float* data() { return data_; }
  const float* data() const { return data_; }

 private:
  std::unique_ptr<float[]> buffer_;
  float* data_;
};

// The projector products go over the upper triangle of the d x d
// coordinates in bands of `band` rows (see projector_products). Each block of
// coordinates reads every slot's factor rows for its rows and columns, from
// memory (the ~100 MB of factors do not stay in cache): wider bands read
// them fewer times. In wasm, forming GPT-2-small's composition projectors
// took ~12 % less time with 96 rows than with 48, and a little less again
// with 128, which also divides the usual d (768, 1024, 2048...). A block
// holds at least band^2 coordinates per slot, so the band halves for models
// with many heads, to keep the block within kBlockBytes (GPT-2-small's 528
// composition slots: 128 rows, 35 MB; GPT-2-medium's 1472: 64 rows, 24 MB).
constexpr int kMaxBand = 128;
constexpr double kBlockBytes = 48e6;
int band_rows(int slots) {
  int band = kMaxBand;
  while (band > 16 && double(slots) * band * band * sizeof(float) > kBlockBytes) band /= 2;
  return band;
}

// Heads' factors [d, k], one per slot, in groups of 4 slots: quad (g, r, t)
// holds entry (r, t) of the factors of slots 4g .. 4g+3 (lane = slot % 4),
// so that one vector product forms the same coordinate of 4 projectors. The
// rows are d padded with zeros to a multiple of the band. `head` gives each
// slot's head, -1 for padding: padding slots are zero, and every other slot
// must be written before use (set(), or factor_into_lane into its lane()).
struct FactorPanels {
  int band = 0, rows = 0, k = 0;
  AlignedFloats data;
  FactorPanels(const std::vector<int>& head, int d, int k_, int band_)
      : band(band_), rows((d + band - 1) / band * band), k(k_), data((head.size() + 3) / 4 * 4 * rows * k) {
    const int groups = static_cast<int>(head.size() + 3) / 4;
    for (int g = 0; g < groups; ++g) {
      std::fill(data.data() + (std::size_t(g) * rows + d) * k * 4, data.data() + std::size_t(g + 1) * rows * k * 4, 0.0f);
      for (int lane = 0; lane < 4; ++lane) {
        const std::size_t slot = std::size_t(g) * 4 + lane;
        if (slot < head.size() && head[slot] >= 0) continue;
        float* p = data.data() + std::size_t(g) * rows * k * 4 + lane;
        for (int e = 0; e < d * k; ++e) p[std::size_t(e) * 4] = 0.0f;
      }
    }
  }
  // Row r of group g: k quads.
  const float* row(int g, int r) const { return data.data() + (std::size_t(g) * rows + r) * k * 4; }
  // Slot `slot` as one lane of quads (factor_into_lane's output).
  float* lane(int slot) { return data.data() + std::size_t(slot / 4) * rows * k * 4 + slot % 4; }
  // Slot `slot` := X's columns [col0, col0 + k).
  void set(int slot, const MatrixRM& X, Eigen::Index col0) {
    float* dst = data.data() + std::size_t(slot / 4) * rows * k * 4 + slot % 4;
    for (Eigen::Index r = 0; r < X.rows(); ++r) {
      const float* src = X.data() + r * X.cols() + col0;
      float* p = dst + std::size_t(r) * k * 4;
      for (int c = 0; c < k; ++c) p[c * 4] = src[c];
    }
  }
};

// Reads one float in every 64-byte line of [p, p + n) in `steps` parts,
// part `step` now: a software prefetch (wasm has no prefetch instruction).
// The forming kernels read each group's factor rows from memory (the
// panels do not stay in cache); touching the next group's rows a part per
// kernel call lets those loads overlap the arithmetic, where the next
// group's first tiles would otherwise wait for them (forming measured ~4 %
// faster). The sum only keeps the loads alive.
volatile float prefetch_sink;
struct Prefetch {
  const float* p = nullptr;
  std::size_t n = 0;
  int steps = 1;
  float touch(int step) const {
    if (!p) return 0.0f;
    const std::size_t part = (n / steps + 15) / 16 * 16, end = std::min(n, part * (step + 1));
    float sum = 0.0f;
    for (std::size_t i = part * step; i < end; i += 16) sum += p[i];
    return sum;
  }
};

// Forms the coordinates rows [r0, r0+rows) x columns [c0, c0+cols) of P_s =
// F_s F_s^T for the 4 slots s of group g, into `out` [rows * cols] quads
// (coordinate (r - r0) * cols + (c - c0), lane s % 4), so that the pair
// products read 4 slots' coordinates as one vector. rows and cols are
// multiples of 2 and 4. `next_rows` and `next_cols` (one part per 4
// columns) are the next group's factor rows for the same block; returns
// the touched sum.
float form_projector_block(const FactorPanels& F, int g, int r0, int rows, int c0, int cols,
                           const Prefetch& next_rows, const Prefetch& next_cols, float* out) {
  float touched = 0.0f;
  for (int c = c0; c < c0 + cols; c += 4) {  // 4 column rows stay in L1 while the rows go by
    touched += next_rows.touch((c - c0) / 4) + next_cols.touch((c - c0) / 4);
    quad_dot_2x4(F.k, rows / 2, F.row(g, r0), F.row(g, c), std::ptrdiff_t(F.k) * 4, out + std::size_t(c - c0) * 4,
                 std::ptrdiff_t(cols) * 4);
  }
  return touched;
}

// The diagonal square [r0, r0 + band)^2 of the projectors of group g's 4
// slots, as its upper triangle only: row by row, coordinates (a, b) with
// a <= b packed into `out` [band (band + 1) / 2] quads, those off the
// diagonal scaled by sqrt(2) so that their products count twice, as the
// band's coordinates right of the square do. (Formed whole, the squares
// would add band / d to the coordinates: 17 % for GPT-2's d 768.)
// `scratch` holds band^2 quads; kernel tiles wholly below the diagonal are
// not formed. `next` as for form_projector_block.
float form_projector_diagonal(const FactorPanels& F, int g, int r0, const Prefetch& next, float* scratch,
                              float* out) {
  const int band = F.band;
  float touched = 0.0f;
  for (int c = 0; c < band; c += 4) {  // rows r <= c + 3, in pairs
    touched += next.touch(c / 4);
    quad_dot_2x4(F.k, std::min(band, c + 4) / 2, F.row(g, r0), F.row(g, r0 + c), std::ptrdiff_t(F.k) * 4,
                 scratch + std::size_t(c) * 4, std::ptrdiff_t(band) * 4);
  }
  const float root2 = std::sqrt(2.0f);
  for (int a = 0; a < band; ++a) {
    const float* row = scratch + std::size_t(a) * band * 4;
    for (int lane = 0; lane < 4; ++lane) out[lane] = row[a * 4 + lane];
    out += 4;
    for (int q = (a + 1) * 4; q < band * 4; ++q) *out++ = root2 * row[q];
  }
  return touched;
}

// The pairs l1 < l2 of layers [begin, end) as a few large rectangles,
// layers [begin, mid) x [mid, end), then each half recursively: L - 1
// products that cover exactly the needed pairs (one product per later layer
// would re-pack the left operand L - 1 times and run narrow GEMMs).
struct LayerBlock {
  int begin, mid, end;
};
void later_layer_blocks(int begin, int end, std::vector<LayerBlock>& out) {
  if (end - begin < 2) return;
  const int mid = (begin + end) / 2;
  out.push_back({begin, mid, end});
  later_layer_blocks(begin, mid, out);
  later_layer_blocks(mid, end, out);
}

// A rectangle of pair products, as head ranges [i0, i0 + ni) x [j0, j0 + nj).
struct Tile {
  int i0, ni, j0, nj;
};

// Where each head's factor goes in the projector products: "slots", 4 per
// quad. The symmetric set puts head i at slot i. later_layer puts layer l's
// left heads (l < L - 1: the last layer never composes forward) at
// l * Hx + h and its right (head, kind) rows (l >= 1) at
// (l - 1) * Hy + h * n_y + y, with Hx, Hy the layer's counts rounded up to
// 4 so that every layer rectangle starts on a quad. Padding slots stay zero.
struct PairLayout {
  bool sym = false;
  int n = 0, L = 1, n_y = 0, Hx = 0, Hy = 0, slots_x = 0, slots_y = 0;
  std::vector<int> head_x, head_y, kind_y;  // by slot, -1 for padding
  std::vector<int> x_slot, y_base;          // by head, -1 for none
  PairLayout(int n_heads, int group, PairSet set, int kinds) : sym(set == PairSet::symmetric), n(n_heads) {
    auto round4 = [](int x) { return (x + 3) / 4 * 4; };
    if (!sym) {
      L = n / group;
      n_y = kinds;
      Hx = round4(group);
      Hy = round4(group * n_y);
    }
    slots_x = sym ? round4(n) : (L - 1) * Hx;
    slots_y = sym ? 0 : (L - 1) * Hy;
    head_x.assign(slots_x, -1);
    head_y.assign(slots_y, -1);
    kind_y.assign(slots_y, -1);
    x_slot.assign(n, -1);
    y_base.assign(n, -1);
    for (int i = 0; i < n; ++i) {
      const int l = sym ? 0 : i / group, h = sym ? i : i % group;
      if (sym || l < L - 1) {
        x_slot[i] = sym ? i : l * Hx + h;
        head_x[x_slot[i]] = i;
      }
      if (!sym && l >= 1) {
        y_base[i] = (l - 1) * Hy + h * n_y;
        for (int y = 0; y < n_y; ++y) {
          head_y[y_base[i] + y] = i;
          kind_y[y_base[i] + y] = y;
        }
      }
    }
  }
  int y_slot(int i, int y) const { return y_base[i] < 0 ? -1 : y_base[i] + y; }
};

// The projector kernel: n_ij = <P_i, Q_j> with P_i = X_i X_i^T, Q_j = Y_j Y_j^T
// over the upper triangle's coordinates. Every needed projector is formed
// block by block of coordinates, as quads: PX holds the left sides (4 slots
// per quad), PY the right sides, so that the pair products PX PY^T over the
// coordinates run in a few large rectangles, one per layer block, serving
// every kind at once; nothing is packed, both phases read the panels and the
// quads as they are. The triangle goes in blocks (below), so that only one
// block of formed coordinates exists at a time: band^2 per slot at least
// (band_rows), up to the budget.
Result<std::vector<MatrixRMd>> projector_products(const PairLayout& layout, const FactorPanels& FX,
                                                  const FactorPanels& FY, const GeometryProgress& progress, double p0,
                                                  double p1) {
  const bool sym = layout.sym;
  const int L = layout.L, Hx = layout.Hx, Hy = layout.Hy, slots_x = layout.slots_x, slots_y = layout.slots_y;
  const int rows_q = FX.rows, band = FX.band;
  const std::vector<int>&head_x = layout.head_x, &head_y = layout.head_y, &kind_y = layout.kind_y;
  std::vector<MatrixRMd> out(sym ? 1 : layout.n_y, MatrixRMd::Zero(layout.n, layout.n));
  if (slots_x == 0 || (!sym && slots_y == 0)) return out;  // no pairs (e.g. a single layer)
  // In slots. The symmetric set is one square, its kernel tiles on and above
  // the diagonal only (below).
  std::vector<Tile> tiles;
  if (sym) {
    tiles.push_back({0, slots_x, 0, slots_x});
  } else {
    std::vector<LayerBlock> blocks;
    later_layer_blocks(0, L, blocks);
    for (const LayerBlock& b : blocks) {
      tiles.push_back({b.begin * Hx, (b.mid - b.begin) * Hx, (b.mid - 1) * Hy, (b.end - b.mid) * Hy});
    }
  }
  // The triangle in bands of `band` rows [r0, r0 + band): first the square
  // [r0, r0 + band)^2, its upper triangle packed with the weights of
  // <P_i, P_j> folded in (form_projector_diagonal); then the rest of the
  // band, strictly above the diagonal, in blocks of `width` columns (sized
  // to the budget) whose sums count twice. Within a
  // block the products run KB coordinates at a time for every rectangle, so
  // that the formed quads are read from memory once and then from cache, and
  // each float sum has KB terms (accumulated in double).
  constexpr int KB = 512;
  const double budget = 2.0e6;  // floats of formed coordinates per block (8 MB), when band^2 per slot is less
  const int width =
      std::max(band, static_cast<int>(budget / (double(slots_x + slots_y) * band)) / band * band);
  // Progress: the share of the coordinates done.
  const double coords = 0.5 * double(rows_q) * (rows_q + 1);
  const std::size_t K_diagonal = std::size_t(band) * (band + 1) / 2;
  AlignedFloats scratch(std::size_t(band) * band * 4);
  double done = 0;
  AlignedFloats PX(std::size_t(slots_x) * band * width), PY(std::size_t(slots_y) * band * width);
  // Sums by slot, [slots_x, slots_right] in double: each kernel tile (float
  // sums over KB coordinates) is added to it, then copied out by head.
  const int slots_right = sym ? slots_x : slots_y;
  std::vector<double> acc(std::size_t(slots_x) * slots_right, 0.0);
  for (int r0 = 0; r0 < rows_q; r0 += band) {
    for (int c0 = r0; c0 < rows_q;) {
      const bool diagonal = c0 == r0;
      const int cols = diagonal ? band : std::min(width, rows_q - c0);
      const double weight = diagonal ? 1.0 : 2.0;
      const std::size_t K = diagonal ? K_diagonal : std::size_t(band) * cols;
      // This block of every projector, group by group (FX's, then FY's),
      // into PX and PY, each group prefetching the next one's factor rows.
      const int groups_x = slots_x / 4, groups = groups_x + slots_y / 4;
      auto panel = [&](int q) -> const FactorPanels& { return q < groups_x ? FX : FY; };
      auto group = [&](int q) { return q < groups_x ? q : q - groups_x; };  // within its panel
      float touched = 0.0f;
      for (int q = 0; q < groups; ++q) {
        const int g = group(q);
        float* P = (q < groups_x ? PX.data() : PY.data()) + g * K * 4;
        Prefetch next_rows, next_cols;
        if (q + 1 < groups) {
          const FactorPanels& F = panel(q + 1);
          const std::size_t row_floats = std::size_t(F.k) * 4;
          next_rows = {F.row(group(q + 1), r0), band * row_floats, (diagonal ? band : cols) / 4};
          if (!diagonal) next_cols = {F.row(group(q + 1), c0), cols * row_floats, cols / 4};
        }
        if (diagonal)
          touched += form_projector_diagonal(panel(q), g, r0, next_rows, scratch.data(), P);
        else
          touched += form_projector_block(panel(q), g, r0, band, c0, cols, next_rows, next_cols, P);
      }
      prefetch_sink = touched;
      const float* right = sym ? PX.data() : PY.data();
      for (std::size_t kb = 0; kb < K; kb += KB) {
        const int kk = static_cast<int>(std::min<std::size_t>(KB, K - kb));
        for (const Tile& tile : tiles) {
          for (int j = tile.j0; j < tile.j0 + tile.nj; j += 8) {
            const int nb = std::min(8, tile.j0 + tile.nj - j);
            const float* b0 = right + ((j / 4) * K + kb) * 4;
            // (The symmetric square's kernel tiles wholly below its diagonal
            // are pairs i > j, which the mirror below does not read.)
            const int i_end = sym ? std::min(tile.i0 + tile.ni, j + nb) : tile.i0 + tile.ni;
            for (int i = tile.i0; i < i_end; i += 4) {
              const float* a = PX.data() + ((i / 4) * K + kb) * 4;
              double* sums = acc.data() + std::size_t(i) * slots_right + j;
              if (nb == 8)
                quad_outer_4x8_add(kk, a, b0, b0 + K * 4, weight, sums, slots_right);
              else
                quad_outer_4x4_add(kk, a, b0, weight, sums, slots_right);
            }
          }
        }
      }
      done += double(K);
      c0 += cols;
      if (!keep_going(progress, p0 + (p1 - p0) * done / coords)) return cancelled();
    }
  }
  // By head. The symmetric square holds every pair of groups gi <= gj
  // (and a few gi > gj, in the diagonal's kernel tiles, unused): mirror those.
  for (int i = 0; i < slots_x; ++i) {
    const int hi = head_x[i];
    if (hi < 0) continue;
    for (int j = sym ? i / 4 * 4 : 0; j < slots_right; ++j) {
      const double v = acc[std::size_t(i) * slots_right + j];
      if (sym) {
        const int hj = head_x[j];
        if (hj >= 0) out[0](hi, hj) = out[0](hj, hi) = v;
      } else if (head_y[j] >= 0) {
        out[kind_y[j]](hi, head_y[j]) = v;
      }
    }
  }
  return out;
}

}  // namespace

namespace {

// Eigenvalues of [[a, b], [b, c]], rt1 the one of larger absolute value
// (LAPACK's dlae2).
void eig2(double a, double b, double c, double& rt1, double& rt2) {
  const double sm = a + c, df = a - c, adf = std::fabs(df), tb = b + b, ab = std::fabs(tb);
  const double acmx = std::fabs(a) > std::fabs(c) ? a : c, acmn = std::fabs(a) > std::fabs(c) ? c : a;
  double rt;
  if (adf > ab) rt = adf * std::sqrt(1.0 + (ab / adf) * (ab / adf));
  else if (adf < ab) rt = ab * std::sqrt(1.0 + (adf / ab) * (adf / ab));
  else rt = ab * std::sqrt(2.0);
  if (sm < 0) {
    rt1 = 0.5 * (sm - rt);
    rt2 = (acmx / rt1) * acmn - (b / rt1) * b;
  } else if (sm > 0) {
    rt1 = 0.5 * (sm + rt);
    rt2 = (acmx / rt1) * acmn - (b / rt1) * b;
  } else {
    rt1 = 0.5 * rt;
    rt2 = -0.5 * rt;
  }
}

}  // namespace

bool tridiagonal_eigenvalues(std::vector<double>& dv, std::vector<double>& ev) {
  const int n = static_cast<int>(dv.size());
  if (n <= 1) return true;
  // 1-based, as in LAPACK: d(1..n), e(1..n-1) (e(i) couples d(i), d(i+1)).
  auto d = [&dv](int i) -> double& { return dv[static_cast<std::size_t>(i - 1)]; };
  auto e = [&ev](int i) -> double& { return ev[static_cast<std::size_t>(i - 1)]; };
  const double eps = std::numeric_limits<double>::epsilon() / 2, eps2 = eps * eps;
  const double safmin = std::numeric_limits<double>::min(), safmax = 1.0 / safmin;
  const double ssfmax = std::sqrt(safmax) / 3.0, ssfmin = std::sqrt(safmin) / eps2;
  const int nmaxit = n * 30;
  int jtot = 0;
  int l1 = 1;
  const int nm1 = n - 1;
  while (l1 <= n) {
    if (l1 > 1) e(l1 - 1) = 0.0;
    int m = l1;
    for (; m <= nm1; ++m) {
      const double tst = std::fabs(e(m));
      if (tst == 0.0) break;
      if (tst <= std::sqrt(std::fabs(d(m))) * std::sqrt(std::fabs(d(m + 1))) * eps) {
        e(m) = 0.0;
        break;
      }
    }
    if (m > nm1) m = n;
    int l = l1;
    const int lsv = l;
    int lend = m;
    const int lendsv = lend;
    l1 = m + 1;
    if (lend == l) continue;
    // Scale the block [l, lend] if its norm is near over- or underflow.
    double anorm = 0;
    for (int i = l; i <= lend; ++i) anorm = std::max(anorm, std::fabs(d(i)));
    for (int i = l; i < lend; ++i) anorm = std::max(anorm, std::fabs(e(i)));
    double scale = 1.0;
    if (anorm > ssfmax) scale = ssfmax / anorm;
    else if (anorm < ssfmin && anorm > 0) scale = ssfmin / anorm;
    if (scale != 1.0) {
      for (int i = l; i <= lend; ++i) d(i) *= scale;
      for (int i = l; i < lend; ++i) e(i) *= scale;
    }
    for (int i = l; i < lend; ++i) e(i) *= e(i);
    // QL or QR, whichever end of the block has the smaller diagonal.
    if (std::fabs(d(lend)) < std::fabs(d(l))) {
      lend = lsv;
      l = lendsv;
    }
    if (lend >= l) {  // QL
      while (true) {
        int mm = l;
        if (l != lend) {
          for (mm = l; mm <= lend - 1; ++mm)
            if (std::fabs(e(mm)) <= eps2 * std::fabs(d(mm) * d(mm + 1))) break;
        }
        if (l == lend || mm > lend - 1) mm = lend;
        if (mm < lend) e(mm) = 0.0;
        double p = d(l);
        if (mm == l) {  // d(l) is an eigenvalue
          if (++l <= lend) continue;
          break;
        }
        if (mm == l + 1) {  // a 2 x 2 block
          double rt1, rt2;
          eig2(d(l), std::sqrt(e(l)), d(l + 1), rt1, rt2);
          d(l) = rt1;
          d(l + 1) = rt2;
          e(l) = 0.0;
          l += 2;
          if (l <= lend) continue;
          break;
        }
        if (jtot == nmaxit) break;
        ++jtot;
        const double rte = std::sqrt(e(l));
        double sigma = (d(l + 1) - p) / (rte * 2.0);
        const double r0 = std::hypot(sigma, 1.0);
        sigma = p - rte / (sigma + std::copysign(r0, sigma));
        double c = 1.0, s = 0.0, gamma = d(mm) - sigma;
        p = gamma * gamma;
        for (int i = mm - 1; i >= l; --i) {
          const double bb = e(i), r = p + bb;
          if (i != mm - 1) e(i + 1) = s * r;
          const double oldc = c;
          c = p / r;
          s = bb / r;
          const double oldgam = gamma, alpha = d(i);
          gamma = c * (alpha - sigma) - s * oldgam;
          d(i + 1) = oldgam + (alpha - gamma);
          p = c != 0.0 ? gamma * gamma / c : oldc * bb;
        }
        e(l) = s * p;
        d(l) = sigma + gamma;
      }
    } else {  // QR
      while (true) {
        int mm = l;
        if (l != lend) {
          for (mm = l; mm >= lend + 1; --mm)
            if (std::fabs(e(mm - 1)) <= eps2 * std::fabs(d(mm) * d(mm - 1))) break;
        }
        if (l == lend || mm < lend + 1) mm = lend;
        if (mm > lend) e(mm - 1) = 0.0;
        double p = d(l);
        if (mm == l) {  // d(l) is an eigenvalue
          if (--l >= lend) continue;
          break;
        }
        if (mm == l - 1) {
          double rt1, rt2;
          eig2(d(l), std::sqrt(e(l - 1)), d(l - 1), rt1, rt2);
          d(l) = rt1;
          d(l - 1) = rt2;
          e(l - 1) = 0.0;
          l -= 2;
          if (l >= lend) continue;
          break;
        }
        if (jtot == nmaxit) break;
        ++jtot;
        const double rte = std::sqrt(e(l - 1));
        double sigma = (d(l - 1) - p) / (rte * 2.0);
        const double r0 = std::hypot(sigma, 1.0);
        sigma = p - rte / (sigma + std::copysign(r0, sigma));
        double c = 1.0, s = 0.0, gamma = d(mm) - sigma;
        p = gamma * gamma;
        for (int i = mm; i <= l - 1; ++i) {
          const double bb = e(i), r = p + bb;
          if (i != mm) e(i - 1) = s * r;
          const double oldc = c;
          c = p / r;
          s = bb / r;
          const double oldgam = gamma, alpha = d(i + 1);
          gamma = c * (alpha - sigma) - s * oldgam;
          d(i) = oldgam + (alpha - gamma);
          p = c != 0.0 ? gamma * gamma / c : oldc * bb;
        }
        e(l - 1) = s * p;
        d(l) = sigma + gamma;
      }
    }
    if (scale != 1.0)
      for (int i = lsv; i <= lendsv; ++i) d(i) /= scale;
    if (jtot == nmaxit) return false;
  }
  std::sort(dv.begin(), dv.end());
  return true;
}

// One X against several Ys (composition: Q, K and V share the left factor).
Result<std::vector<MatrixRMd>> block_frobenius_products_multi(const MatrixRM& X, const std::vector<const MatrixRM*>& Ys,
                                                              int k, PairSet set, int group, PairKernel kernel,
                                                              const GeometryProgress& progress, double p0, double p1,
                                                              int band) {
  const int d = static_cast<int>(X.rows());
  if (k <= 0 || X.cols() % k != 0) return make_error("block_frobenius_products: X columns are not blocks of k");
  const int n = static_cast<int>(X.cols() / k);
  const int n_y = set == PairSet::symmetric ? 0 : static_cast<int>(Ys.size());
  for (int y = 0; y < n_y; ++y) {
    if (Ys[y]->rows() != d || Ys[y]->cols() != X.cols()) return make_error("block_frobenius_products: Y shape differs from X");
  }
  if (set == PairSet::later_layer && (group <= 0 || n % group != 0)) {
    return make_error("block_frobenius_products: heads are not whole layers");
  }
  const int n_out = set == PairSet::symmetric ? 1 : n_y;
  std::vector<MatrixRMd> out(n_out, MatrixRMd::Zero(n, n));
  if (n == 0 || d == 0) return out;
  const int L = set == PairSet::symmetric ? 1 : n / group;
  if (kernel == PairKernel::direct) {
    if (set == PairSet::symmetric) {
      MatrixRM G = MatrixRM::Zero(n * k, n * k);
      G.selfadjointView<Eigen::Lower>().rankUpdate(X.transpose());
      G = G.selfadjointView<Eigen::Lower>();  // the diagonal blocks need both halves
      for (int i = 0; i < n; ++i) {
        for (int j = 0; j <= i; ++j) out[0](i, j) = out[0](j, i) = G.block(i * k, j * k, k, k).cast<double>().squaredNorm();
      }
      if (!keep_going(progress, p1)) return cancelled();
      return out;
    }
    for (int y = 0; y < n_y; ++y) {
      for (int l2 = 1; l2 < L; ++l2) {
        const int left = l2 * group;  // heads in earlier layers
        const MatrixRM G = X.leftCols(left * k).transpose() * Ys[y]->middleCols(left * k, group * k);
        for (int i = 0; i < left; ++i) {
          for (int j = 0; j < group; ++j) out[y](i, left + j) = G.block(i * k, j * k, k, k).cast<double>().squaredNorm();
        }
        if (!keep_going(progress, p0 + (p1 - p0) * (y * (L - 1) + l2) / double(n_y * (L - 1)))) return cancelled();
      }
    }
    return out;
  }

  // Projector kernel (projector_products): the blocks as panels, by slot.
  const PairLayout layout(n, group, set, n_y);
  if (band <= 0) band = band_rows(layout.slots_x + layout.slots_y);
  if (band % 4 != 0) return make_error("block_frobenius_products: band must be a multiple of 4");
  FactorPanels FX(layout.head_x, d, k, band), FY(layout.head_y, d, k, band);
  for (int i = 0; i < n; ++i) {
    if (layout.x_slot[i] >= 0) FX.set(layout.x_slot[i], X, Eigen::Index(i) * k);
    for (int y = 0; y < n_y; ++y) {
      if (layout.y_slot(i, y) >= 0) FY.set(layout.y_slot(i, y), *Ys[y], Eigen::Index(i) * k);
    }
  }
  return projector_products(layout, FX, FY, progress, p0, p1);
}

Result<MatrixRMd> block_frobenius_products(const MatrixRM& X, const MatrixRM& Y, int k, PairSet set, int group,
                                           PairKernel kernel, const GeometryProgress& progress, double progress_from,
                                           double progress_to, int band) {
  auto r = block_frobenius_products_multi(X, {&Y}, k, set, group, kernel, progress, progress_from, progress_to, band);
  if (!r) return r.error();
  return std::move(r->front());
}

}  // namespace detail

// ---------------------------------------------------------------------------

namespace {

// A progress callback for the part [a, b] of a longer computation.
GeometryProgress sub_progress(const GeometryProgress& progress, double a, double b) {
  if (!progress) return {};
  return [&progress, a, b](double f) { return progress(a + (b - a) * f); };
}

// Subspace redundancy in two phases: an orthonormal basis per head (add),
// then all pairs at once (finish).
class RedundancyBuilder {
 public:
  RedundancyBuilder(const Model& model, WeightVariant variant, HeadSubspace kind)
      : layout_(static_cast<int>(model.weights.layers.size()) * model.config.n_head, model.config.n_head,
                detail::PairSet::symmetric, 0),
        panels_(layout_.head_x, model.config.d_model, model.config.d_head, detail::band_rows(layout_.slots_x)) {
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
  Result<RedundancyMatrix> finish(const GeometryProgress& progress, double p0, double p1) {
    const int N = static_cast<int>(out_.rank.size()), dh = out_.d_head;
    auto sq = detail::projector_products(layout_, panels_, panels_, progress, p0, p1);
    if (!sq) return sq.error();
    out_.overlap.resize(static_cast<std::size_t>(N) * N);
    for (int i = 0; i < N; ++i) {
      for (int j = 0; j < N; ++j) out_.overlap[static_cast<std::size_t>(i) * N + j] = (*sq)[0](i, j) / dh;
    }
    return std::move(out_);
  }

 private:
  RedundancyMatrix out_;
  detail::PairLayout layout_;
  detail::FactorPanels panels_;  // the bases, head i at slot i
  double rcond_ = 0;
};

// Composition scores in two phases. Per head (add), dh-column factors with
// F F^T = OV^T OV (left) and G G^T = R R^T for each right-hand circuit, each
// scaled to unit norm so that the batched products are the squared scores:
//   OV^T OV   = W_O^T G_V W_O   -> F   = W_O^T S(G_V)
//   QK QK^T   = W_Q G_K W_Q^T   -> G_q = W_Q S(G_K)
//   QK^T QK   = W_K G_Q W_K^T   -> G_k = W_K S(G_Q)
//   OV OV^T   = W_V G_O W_V^T   -> G_v = W_V S(G_O)
// straight into the projector products' panels: F for every layer but the
// last, the G for every layer but the first. Then ||F_i^T G_j||^2 for all
// l1 < l2, the three kinds in one product (finish).
class CompositionBuilder {
 public:
  CompositionBuilder(const Model& model, WeightVariant variant)
      : H_(model.config.n_head),
        N_(static_cast<int>(model.weights.layers.size()) * H_),
        layout_(N_, H_, detail::PairSet::later_layer, 3),
        FX_(layout_.head_x, model.config.d_model, model.config.d_head,
            detail::band_rows(layout_.slots_x + layout_.slots_y)),
        FY_(layout_.head_y, model.config.d_model, model.config.d_head, FX_.band),
        t_(model.config.d_head, model.config.d_head) {
    out_.variant = variant;
    out_.n_layer = N_ / H_;
    out_.n_head = H_;
    out_.qk_ignores_rotary = is_rotary(model.config);
    const std::size_t total = static_cast<std::size_t>(N_) * N_;
    out_.q.assign(total, 0.0);
    out_.k.assign(total, 0.0);
    out_.v.assign(total, 0.0);
  }
  void add(int i, const HeadWork& w) {
    const HeadBlocks& b = w.b;
    // Each factor's squared norm, ||A S||^2 = tr(S^T A^T A S) = <A^T A, S S^T>,
    // is the circuit's ||OV||^2 = <G_V, G_O> or ||QK||^2 = <G_Q, G_K>.
    const double ov2 = b.G_V.cwiseProduct(b.G_O).sum(), qk2 = b.G_Q.cwiseProduct(b.G_K).sum();
    if (layout_.x_slot[i] >= 0) factor(b.W_Ot(), w.S_V, w.p_V, ov2, FX_.lane(layout_.x_slot[i]));
    if (layout_.y_slot(i, 0) >= 0) {
      factor(b.W_Q(), w.S_K, w.p_K, qk2, FY_.lane(layout_.y_slot(i, 0)));
      factor(b.W_K(), w.S_Q, w.p_Q, qk2, FY_.lane(layout_.y_slot(i, 1)));
      factor(b.W_V(), w.S_O, w.p_O, ov2, FY_.lane(layout_.y_slot(i, 2)));
    }
  }
  Result<CompositionScores> finish(const GeometryProgress& progress, double p0, double p1) {
    auto sq = detail::projector_products(layout_, FX_, FY_, progress, p0, p1);
    if (!sq) return sq.error();
    std::vector<double>* dst[3] = {&out_.q, &out_.k, &out_.v};
    for (int y = 0; y < 3; ++y) {
      const MatrixRMd& s = (*sq)[y];
      for (int i = 0; i < N_; ++i) {
        for (int j = 0; j < N_; ++j) {
          if (i / H_ < j / H_) (*dst[y])[static_cast<std::size_t>(i) * N_ + j] = std::sqrt(std::max(0.0, s(i, j)));
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
  void factor(const BlockView& A, const MatrixRMd& S, const std::vector<int>& perm, double n2, float* out) {
    const int k = static_cast<int>(S.rows());
    const double scale = n2 > 0 ? 1.0 / std::sqrt(n2) : 1.0;
    for (int j = 0; j < k; ++j)
      for (int c = 0; c <= j; ++c) t_(j, c) = static_cast<float>(S(perm[j], c) * scale);
    factor_into_lane(A.rows, k, k, A.data, A.row_stride, A.col_stride, perm.data(), t_.data(), out);
  }

  int H_, N_;
  detail::PairLayout layout_;
  detail::FactorPanels FX_, FY_;
  MatrixRM t_;  // [dh, dh]: the scaled triangle of a factor
  CompositionScores out_;
};

}  // namespace

Result<RedundancyMatrix> subspace_redundancy(const Model& model, WeightVariant variant, HeadSubspace kind,
                                             const GeometryProgress& progress) {
  HS_TRY(check_geometry(model, variant));
  const int H = model.config.n_head, N = static_cast<int>(model.weights.layers.size()) * H;
  RedundancyBuilder builder(model, variant, kind);
  // Phase 1 (~15% of the work): an orthonormal basis per head.
  for (int i = 0; i < N; ++i) {
    auto A = subspace_factor_f(model, variant, i / H, i % H, kind);
    if (!A) return A.error();
    std::vector<int> perm;
    const MatrixRMd S = psd_sqrt_factor(gram_cols(*A), &perm);
    builder.add(i, view_of(*A), S, perm);
    if (!keep_going(progress, 0.15 * (i + 1) / N)) return cancelled();
  }
  return builder.finish(progress, 0.15, 1.0);  // phase 2: all pairs at once
}

Result<CompositionScores> composition_scores(const Model& model, WeightVariant variant,
                                             const GeometryProgress& progress) {
  HS_TRY(check_geometry(model, variant));
  const int H = model.config.n_head, N = static_cast<int>(model.weights.layers.size()) * H;
  CompositionBuilder builder(model, variant);
  HeadReader heads(model, variant);
  for (int i = 0; i < N && N > H; ++i) {  // a single layer composes with nothing
    auto w = heads.work(i / H, i % H);
    if (!w) return w.error();
    builder.add(i, *w);
    if (!keep_going(progress, 0.1 * (i + 1) / N)) return cancelled();
  }
  return builder.finish(progress, 0.1, 1.0);
}

Result<WeightGeometry> weight_geometry(const Model& model, WeightVariant variant, int top_k,
                                       const GeometryProgress& progress) {
  HS_TRY(check_geometry(model, variant));
  if (top_k < 1) return make_error("weight_geometry: top_k must be >= 1, got " + std::to_string(top_k));
  const int H = model.config.n_head, N = static_cast<int>(model.weights.layers.size()) * H;
  WeightGeometry out;
  out.spectra = empty_spectra(model, variant, top_k);
  RedundancyBuilder write(model, variant, HeadSubspace::output_write);
  CompositionBuilder composition(model, variant);
  // Shares of the work (GPT-2-small in wasm): per head ~25%, redundancy's
  // pairs ~20%, composition's ~55%.
  constexpr double heads_done = 0.25, write_done = 0.45;
  HeadReader heads(model, variant);
  for (int i = 0; i < N; ++i) {
    auto w = heads.work(i / H, i % H);
    if (!w) return w.error();
    record_spectra(out.spectra, i, *w);
    write.add(i, w->b.W_Ot(), w->S_O, w->p_O);
    composition.add(i, *w);
    if (!keep_going(progress, heads_done * (i + 1) / N)) return cancelled();
  }
  auto red = write.finish(progress, heads_done, write_done);
  if (!red) return red.error();
  out.write_redundancy = std::move(*red);
  auto comp = composition.finish(progress, write_done, 1.0);
  if (!comp) return comp.error();
  out.composition = std::move(*comp);
  return out;
}

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

namespace {

// xoshiro256** (Blackman & Vigna), seeded through splitmix64.
struct Xoshiro256 {
  std::uint64_t s[4];
  explicit Xoshiro256(std::uint64_t seed) {
    for (auto& x : s) {
      seed += 0x9e3779b97f4a7c15ULL;
      std::uint64_t z = seed;
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
      x = z ^ (z >> 31);
    }
  }
  static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  std::uint64_t next() {
    const std::uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
  }
  float uniform_pm1() { return static_cast<float>((next() >> 40) * (1.0 / 16777216.0) * 2.0 - 1.0); }  // [-1, 1)
};

}  // namespace

Result<CompositionBaseline> composition_baseline(int d_model, int d_head, int n_samples, std::uint64_t seed,
                                                 const GeometryProgress& progress) {
  if (d_model < 1 || d_head < 1 || n_samples < 2) {
    return make_error("composition_baseline: need d_model, d_head >= 1 and n_samples >= 2");
  }
  Xoshiro256 rng(seed);
  const float bound = 1.0f / std::sqrt(static_cast<float>(d_head));
  MatrixRM X[4];
  std::vector<double> scores(n_samples);
  for (int s = 0; s < n_samples; ++s) {
    for (auto& x : X) {
      x.resize(d_model, d_head);
      for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = bound * rng.uniform_pm1();
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
    if (!keep_going(progress, double(s + 1) / n_samples)) return cancelled();
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

Result<MergeCandidates> merge_candidates(const RedundancyMatrix& write, const RedundancyMatrix& read, int top_n) {
  if (write.kind != HeadSubspace::output_write || read.kind != HeadSubspace::value_read) {
    return make_error("merge_candidates: needs the O (write) and V (read) redundancy matrices");
  }
  if (write.variant != read.variant || write.n_layer != read.n_layer || write.n_head != read.n_head) {
    return make_error("merge_candidates: the write and read matrices come from different models or variants");
  }
  const int H = write.n_head, N = write.n_layer * H;
  if (write.overlap.size() != static_cast<std::size_t>(N) * N || read.overlap.size() != write.overlap.size()) {
    return make_error("merge_candidates: overlap matrices have the wrong size");
  }
  std::vector<MergeCandidate> all;
  all.reserve(static_cast<std::size_t>(N) * (N - 1) / 2);
  for (int i = 0; i < N; ++i) {
    for (int j = i + 1; j < N; ++j) {
      MergeCandidate m;
      m.layer_a = i / H;
      m.head_a = i % H;
      m.layer_b = j / H;
      m.head_b = j % H;
      m.write_overlap = write.overlap[static_cast<std::size_t>(i) * N + j];
      m.read_overlap = read.overlap[static_cast<std::size_t>(i) * N + j];
      m.combined = 0.5 * (m.write_overlap + m.read_overlap);
      all.push_back(m);
    }
  }
  const std::size_t n = std::min<std::size_t>(std::max(0, top_n), all.size());
  std::partial_sort(all.begin(), all.begin() + n, all.end(), [](const MergeCandidate& a, const MergeCandidate& b) {
    if (a.combined != b.combined) return a.combined > b.combined;
    return std::tie(a.layer_a, a.head_a, a.layer_b, a.head_b) < std::tie(b.layer_a, b.head_a, b.layer_b, b.head_b);
  });
  all.resize(n);
  MergeCandidates out;
  out.variant = write.variant;
  out.pairs = std::move(all);
  return out;
}

Result<MergeCandidates> merge_candidates(const Model& model, WeightVariant variant, int top_n,
                                         const GeometryProgress& progress) {
  auto write = subspace_redundancy(model, variant, HeadSubspace::output_write, sub_progress(progress, 0, 0.5));
  if (!write) return write.error();
  auto read = subspace_redundancy(model, variant, HeadSubspace::value_read, sub_progress(progress, 0.5, 1));
  if (!read) return read.error();
  return merge_candidates(*write, *read, top_n);
}

}  // namespace hs
