// Weight geometry of attention heads: what each head's matrices do, and how
// heads relate to each other, computed from the weights alone (SPEC §5).
// One module shared by the page, the CLI and the tests.
//
// Per head (TransformerLens vocabulary, row vectors, y = x W):
//   OV[h] = W_V[h] W_O[h]    [d, d], rank <= dh: what the head writes
//   QK[h] = W_Q[h] W_K[h]^T  [d, d], rank <= dh: the unscaled score bilinear form
// Both are factored matrices A B; nothing here forms a d x d product. Spectra
// come from dh x dh problems built from the factors' Gram matrices, in double
// precision; the all-pairs quantities (subspace redundancy, composition) are
// batched into large float products (see all_pairs_cost below).
//
// Every analysis takes the weight variant explicitly (raw, or TL-processed:
// processing.hpp) and every result records it. The model passed in is always
// the raw model as loaded; the processed variant is derived per head on the
// fly. For rotary models QK ignores the rotation (the form at relative offset
// 0) and results say so.
//
// Long computations take a GeometryProgress callback, called with the
// fraction done; returning false cancels and the function returns
// Error{"cancelled"}.
#pragma once

#include <complex>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "linalg.hpp"
#include "model.hpp"
#include "processing.hpp"
#include "result.hpp"

namespace hs {

using GeometryProgress = std::function<bool(double fraction)>;

// ---------------------------------------------------------------------------
// Factored matrices

// M = U diag(S) V^T for M = A B, never forming M. U [l, k] and V [r, k] have
// orthonormal columns, S [k] is descending, k = min(l, m, r). (V is V, not
// V^T: TL's deprecated `Vh` returned V.)
struct FactoredSvd {
  MatrixRMd U;        // [l, k]
  Eigen::VectorXd S;  // [k]
  MatrixRMd V;        // [r, k]
};

// A [l, m], B [m, r]. Thin Householder QR of A and of B^T, then a Jacobi SVD
// of the m x m core R_A R_B^T: O((l + r) m^2), backward stable, U and V
// orthonormal even when A or B is rank-deficient. Error on a shape mismatch
// or non-finite input.
Result<FactoredSvd> factored_svd(const Eigen::Ref<const MatrixRMd>& A, const Eigen::Ref<const MatrixRMd>& B);

// Singular values only, from the Gram matrices G_A = A^T A and G_B = B B^T
// (both m x m): sigma(M) for M = S_A^T S_B with S S^T = G (pivoted LDL^T
// square roots), through the eigenvalues of M^T M. Cheap when the
// Grams are already there; absolute error ~1e-16 * sigma_max^2 / sigma, so
// values below sqrt(4 m eps) sigma_max (~1e-7 for m = 64) are returned as 0.
Eigen::VectorXd factored_singular_values(const MatrixRMd& gram_a, const MatrixRMd& gram_b);

enum class Circuit { ov, qk };
const char* circuit_name(Circuit circuit);  // "OV", "QK"

// The head's OV (A = W_V[h], B = W_O[h]) or QK (A = W_Q[h], B = W_K[h]^T)
// circuit as a factored SVD: U [d, dh], S [dh], V [d, dh].
struct HeadCircuitSvd {
  WeightVariant variant = WeightVariant::raw;
  Circuit circuit = Circuit::ov;
  int layer = 0, head = 0;
  FactoredSvd svd;
};
Result<HeadCircuitSvd> head_circuit_svd(const Model& model, WeightVariant variant, int layer, int head,
                                        Circuit circuit);

// ---------------------------------------------------------------------------
// Spectral summaries of singular values sigma (any order, >= 0)

// Roy & Vetterli 2007: exp(-sum p ln p), p = sigma / sum(sigma) (L1, not
// sigma^2). In [1, rank]; 0 for an all-zero spectrum (undefined there).
double effective_rank(const Eigen::VectorXd& sigma);
// Share of the squared spectrum (of ||M||_F^2) in the k largest values:
// sum_{i<k} sigma_i^2 / sum sigma^2; 0 for an all-zero spectrum.
double top_k_energy_share(const Eigen::VectorXd& sigma, int k);

struct CircuitSpectra {
  std::vector<double> sigma;           // [L, H, dh], descending per head
  std::vector<double> frobenius;       // [L, H] ||M||_F = sqrt(sum sigma^2)
  std::vector<double> effective_rank;  // [L, H]
  std::vector<double> top1_share;      // [L, H] sigma_1^2 / sum sigma^2
  std::vector<double> topk_share;      // [L, H] sum_{i<top_k} sigma_i^2 / sum sigma^2
};

struct HeadSpectra {
  WeightVariant variant = WeightVariant::raw;
  int n_layer = 0, n_head = 0, d_head = 0, top_k = 0;
  bool qk_ignores_rotary = false;  // rotary model: QK is the offset-0 form
  CircuitSpectra ov, qk;
};

// All heads' OV and QK spectra. Error: top_k < 1, bad weights, cancelled.
Result<HeadSpectra> head_spectra(const Model& model, WeightVariant variant, int top_k = 4,
                                 const GeometryProgress& progress = {});

// ---------------------------------------------------------------------------
// The full OV circuit W_E OV W_U [V, V] and what it copies

// W_U W_E [d, d] in the variant: the "direct path" product that the full OV
// circuit's eigenvalues need (V x d x d multiply-adds: 30 G for GPT-2, so it
// is its own, cancellable step; keep the result for the copying scores).
Result<MatrixRM> unembed_embed_product(const Model& model, WeightVariant variant,
                                       const GeometryProgress& progress = {});

// Eigenvalues of the full OV circuit W_E W_V W_O W_U of each head, computed in
// the small space as eig(W_O (W_U W_E) W_V) [dh x dh] (the nonzero
// eigenvalues are the same; the other V - dh are 0). Per head:
//   copying_score     = Re(sum lambda) / sum |lambda|, in [-1, 1] (Elhage et
//                       al. 2021; TL's demo "full_OV_copying_score"): near 1
//                       for a head that copies the token it attends to.
//   positive_fraction = sum over Re(lambda) > 0 of |lambda| / sum |lambda|, in
//                       [0, 1]; equals (1 + copying_score) / 2 when every
//                       eigenvalue is real.
struct OvCopying {
  WeightVariant variant = WeightVariant::raw;
  int n_layer = 0, n_head = 0, d_head = 0;
  std::vector<std::complex<double>> eigenvalues;  // [L, H, dh], by descending |lambda|
  std::vector<double> copying_score;              // [L, H]
  std::vector<double> positive_fraction;          // [L, H]
};
// unembed_embed: the output of unembed_embed_product for the same variant.
Result<OvCopying> ov_copying_scores(const Model& model, WeightVariant variant, const MatrixRM& unembed_embed,
                                    const GeometryProgress& progress = {});

// Tokens read and written by the top singular directions of a head's OV
// circuit, OV = U diag(S) V^T: input x contributes (x . U_k) S_k V_k. A token t
// is read by direction k when its embedding row W_E[t] aligns with U_k, and
// written when its unembedding column W_U[:, t] aligns with V_k. Each
// (U_k, V_k) pair is defined up to a joint sign; it is fixed so that the
// largest-magnitude entry of V_k is positive. Both ends are returned: tokens
// at the top of the read list feed the top of the write list, bottom feeds
// bottom. Token ids only; the tokenizer names them.
enum class ReadoutRank { cosine, dot };
struct TokenScore {
  int token = 0;
  double cosine = 0;  // cos(W_E[t], U_k) or cos(W_U[:, t], V_k)
  double dot = 0;     // W_E[t] . U_k or W_U[:, t] . V_k (the logit the direction adds, per unit)
};
struct OvDirectionReadout {
  double sigma = 0;
  std::vector<TokenScore> read_top, read_bottom;    // top_n each, best first
  std::vector<TokenScore> write_top, write_bottom;  // top_n each, best first
};
struct OvReadout {
  WeightVariant variant = WeightVariant::raw;
  int layer = 0, head = 0;
  ReadoutRank rank = ReadoutRank::cosine;
  std::vector<OvDirectionReadout> directions;  // n_directions, by descending sigma
};
Result<OvReadout> ov_token_readout(const Model& model, WeightVariant variant, int layer, int head,
                                   int n_directions, int top_n, ReadoutRank rank = ReadoutRank::cosine);

// ---------------------------------------------------------------------------
// Subspaces and principal angles

// The subspaces of R^d a head reads from (column spaces of W_Q[h], W_K[h],
// W_V[h]) or writes to (the row space of W_O[h]).
enum class HeadSubspace { query_read, key_read, value_read, output_write };
const char* head_subspace_name(HeadSubspace kind);  // "Q", "K", "V", "O"

// The rank tolerance used throughout: singular values at or below
// sigma_max * rcond count as zero, with rcond = eps * max(rows, cols) as in
// scipy.linalg.orth, taking eps of float32 because weights are float32 (what
// scipy's orth would use on the weights themselves).
double default_rank_rcond(Eigen::Index rows, Eigen::Index cols);

// An orthonormal basis [d, r] of the column space of A [d, k]: Householder QR,
// then an SVD of R; r = the number of singular values above sigma_max * rcond
// (rcond < 0: default_rank_rcond).
MatrixRMd orthonormal_basis(const Eigen::Ref<const MatrixRMd>& A, double rcond = -1);

// Principal angles between the column spaces of A [d, ka] and B [d, kb]
// (Bjorck & Golub 1973), accurate for small angles as in
// scipy.linalg.subspace_angles (Knyazev & Argentati 2002): each angle with
// cos^2 >= 1/2 comes from arcsin of a singular value of Q_B - Q_A Q_A^T Q_B,
// the others from arccos. Angles are ascending (scipy returns them reversed),
// k = min(rank_A, rank_B) of them.
struct PrincipalAngles {
  std::vector<double> theta;  // radians, ascending
  int rank_a = 0, rank_b = 0;
  double sum_cos2 = 0;  // sum cos^2 theta = ||Q_A^T Q_B||_F^2
};
Result<PrincipalAngles> principal_angles(const Eigen::Ref<const MatrixRMd>& A, const Eigen::Ref<const MatrixRMd>& B,
                                         double rcond = -1);

// Two heads' subspaces (any layers, any kinds: e.g. L0H3 O against L1H5 Q).
// overlap = sum cos^2 theta / d_head, in [0, 1]; 1 for identical full-rank
// subspaces (a rank-deficient head overlaps itself by rank / d_head).
struct HeadPairGeometry {
  WeightVariant variant = WeightVariant::raw;
  int layer_a = 0, head_a = 0, layer_b = 0, head_b = 0;
  HeadSubspace kind_a = HeadSubspace::output_write, kind_b = HeadSubspace::output_write;
  PrincipalAngles angles;
  double overlap = 0;
};
Result<HeadPairGeometry> head_pair_geometry(const Model& model, WeightVariant variant, int layer_a, int head_a,
                                            HeadSubspace kind_a, int layer_b, int head_b, HeadSubspace kind_b);

// ---------------------------------------------------------------------------
// All pairs of heads

// overlap[i, j] = ||Q_i^T Q_j||_F^2 / d_head for every pair of the N = L*H
// heads (index l*H + h), Q_i an orthonormal basis of head i's subspace of
// `kind`. Symmetric; the diagonal is rank_i / d_head. Float products: about
// 1e-6 absolute. rank [N] is each basis' rank.
struct RedundancyMatrix {
  WeightVariant variant = WeightVariant::raw;
  HeadSubspace kind = HeadSubspace::output_write;
  int n_layer = 0, n_head = 0, d_head = 0;
  std::vector<double> overlap;  // [N, N]
  std::vector<int> rank;        // [N]
};
Result<RedundancyMatrix> subspace_redundancy(const Model& model, WeightVariant variant, HeadSubspace kind,
                                             const GeometryProgress& progress = {});

// Composition scores (SPEC §5.4, TL all_composition_scores) for every pair of
// heads with l1 < l2, as [L, H, L, H] (index ((l1*H + h1)*L + l2)*H + h2);
// entries with l1 >= l2 are 0 as in TL:
//   q: ||OV1 QK2||   / (||OV1|| ||QK2||)     (Q-composition)
//   k: ||OV1 QK2^T|| / (||OV1|| ||QK2^T||)   (K-composition)
//   v: ||OV1 OV2||   / (||OV1|| ||OV2||)     (V-composition)
// all Frobenius norms, each score in [0, 1]; a zero circuit scores 0.
// ||L R||^2 = tr(L^T L R R^T) is computed from dh-column factors
// (L^T L = F F^T, R R^T = G G^T) as ||F^T G||_F^2, batched.
struct CompositionScores {
  WeightVariant variant = WeightVariant::raw;
  int n_layer = 0, n_head = 0;
  bool qk_ignores_rotary = false;
  std::vector<double> q, k, v;  // [L, H, L, H]
};
Result<CompositionScores> composition_scores(const Model& model, WeightVariant variant,
                                             const GeometryProgress& progress = {});

// The three all-heads analyses a first look at a model's weights needs, in
// one pass: head_spectra, subspace_redundancy(output_write) and
// composition_scores, the same numbers as the three calls. Each head's
// weights are read, and their Grams and square-root factors computed, once
// for all three instead of once per call (for GPT-2-small in wasm, ~0.3 s of
// the ~0.9 s of per-head work).
struct WeightGeometry {
  HeadSpectra spectra;
  RedundancyMatrix write_redundancy;
  CompositionScores composition;
};
Result<WeightGeometry> weight_geometry(const Model& model, WeightVariant variant, int top_k = 4,
                                       const GeometryProgress& progress = {});

// One composition score of factored matrices L = A1 B1 and R = A2 B2 (A [d, m],
// B [m, d]) by the exact trace identity of SPEC §5.4 (all m x m):
// ||LR||^2 = tr(G1 M G2 M^T), G1 = A1^T A1, M = B1 A2, G2 = B2 B2^T.
double composition_score(const Eigen::Ref<const MatrixRMd>& A1, const Eigen::Ref<const MatrixRMd>& B1,
                         const Eigen::Ref<const MatrixRMd>& A2, const Eigen::Ref<const MatrixRMd>& B2);

// The score of random factored matrices of the same shapes (ARENA): X1..X4
// [d, dh] uniform on +-1/sqrt(dh) (kaiming_uniform a=sqrt(5)), score
// comp(X1 X2^T, X3 X4^T). Deterministic for a seed (xoshiro256**). Roughly
// 1/sqrt(d): the colour midpoint for composition plots.
struct CompositionBaseline {
  int d_model = 0, d_head = 0, n_samples = 0;
  std::uint64_t seed = 0;
  double mean = 0, std = 0;  // std: sample standard deviation (ddof 1)
};
Result<CompositionBaseline> composition_baseline(int d_model, int d_head, int n_samples = 300,
                                                 std::uint64_t seed = 0, const GeometryProgress& progress = {});

// The most redundant pairs of heads: ranked by the mean of their write (O)
// overlap and their OV read (V) overlap; top_n pairs, i < j, any layers.
struct MergeCandidate {
  int layer_a = 0, head_a = 0, layer_b = 0, head_b = 0;
  double write_overlap = 0, read_overlap = 0, combined = 0;
};
struct MergeCandidates {
  WeightVariant variant = WeightVariant::raw;
  std::vector<MergeCandidate> pairs;  // by descending combined
};
// From matrices already computed (kinds output_write and value_read, same variant).
Result<MergeCandidates> merge_candidates(const RedundancyMatrix& write, const RedundancyMatrix& read, int top_n);
Result<MergeCandidates> merge_candidates(const Model& model, WeightVariant variant, int top_n,
                                         const GeometryProgress& progress = {});

// ---------------------------------------------------------------------------
// The batched kernel, exposed for tests and benchmarks.
namespace detail {

// How to evaluate n_ij = ||X_i^T Y_j||_F^2 for blocks X_i, Y_j [d, k]:
//   projector: <X_i X_i^T, Y_j Y_j^T> over the packed upper triangle: forming
//              costs d^2 k / 2 per block, each pair d^2 / 2;
//   direct:    the dh x dh blocks of X^T Y: k^2 d per pair.
// For GPT-2-small shapes (d 768, k 64, 144 heads) the projector form is ~5x
// cheaper: the analyses run it (their builders fill its panels directly);
// the direct form is the tests' second opinion.
enum class PairKernel { projector, direct };
enum class PairSet {
  symmetric,    // Y = X, all pairs (mirrored)
  later_layer,  // pairs with layer(i) < layer(j), layer = index / group
};

// X, Y [d, n*k] (blocks side by side, zero columns allowed); result [n, n] in
// double, entries outside the pair set 0. Y is ignored for symmetric. `band`:
// the projector kernel's band of coordinate rows, a multiple of 4 (0: chosen
// from the head count, as the analyses do; tests set it).
Result<MatrixRMd> block_frobenius_products(const MatrixRM& X, const MatrixRM& Y, int k, PairSet set, int group,
                                           PairKernel kernel, const GeometryProgress& progress,
                                           double progress_from = 0, double progress_to = 1, int band = 0);

// All eigenvalues of the symmetric tridiagonal matrix with diagonal d [n] and
// off-diagonal e [n - 1], ascending, into d; e is overwritten. The
// Pal-Walker-Kahan root-free QL/QR iteration of LAPACK's dsterf (each step
// without square roots, QL or QR by which end of a block is smaller, blocks
// near over- or underflow scaled): about twice as fast in wasm as Eigen's
// Givens-based iteration, whose square roots and divisions make one
// dependent chain. Returns false if some eigenvalue did not converge in
// 30 n iterations (d is then unsorted).
bool tridiagonal_eigenvalues(std::vector<double>& d, std::vector<double>& e);

}  // namespace detail

}  // namespace hs
