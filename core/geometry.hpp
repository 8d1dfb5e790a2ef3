// Weight geometry of attention heads: what each head's matrices do, and how
// heads relate to each other, computed from the weights alone (SPEC §5).
// The analyses here are shared by the page, the CLI and the tests: every
// head's OV and QK spectra, principal angles between two heads' subspaces,
// subspace redundancy and composition scores of all pairs of heads (and the
// three in one pass, weight_geometry), the random composition baseline, and
// merge candidates. The full OV circuit in token space is full_circuits.hpp.
//
// Built from: the heads as factored matrices (head_circuits.hpp: OV, QK, the
// subspaces, HeadReader), dense linear algebra in double on dh x dh
// matrices (decompositions.hpp, factored_matrix.hpp), and the all-pairs
// product engine, which batches the pair quantities into large float
// products (pair_products.hpp).
//
// Every analysis takes the weight variant explicitly (raw, or TL-processed:
// processing.hpp) and every result records it. The model passed in is always
// the raw model as loaded; the processed variant is derived per head on the
// fly. For rotary models QK ignores the rotation (the form at relative offset
// 0) and results say so.
//
// Long computations take a ProgressFn callback (progress.hpp), called
// with the fraction done; returning false cancels and the function returns
// an error of code cancelled.
#pragma once

#include <cstdint>
#include <vector>

#include "decompositions.hpp"
#include "head_circuits.hpp"
#include "linalg.hpp"
#include "model.hpp"
#include "processing.hpp"
#include "progress.hpp"
#include "result.hpp"

namespace hs {

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
  bool qk_ignores_qk_norm = false;  // Qwen3, OLMo 2, Gemma 3: QK = W_Q W_K^T without the q/k RMSNorm: its per-token
                                    // scale escapes any weight-only view; its weights are left out too
  bool ov_ignores_post_norm = false;  // OLMo 2, Gemma 2/3: OV = W_V W_O as stored; the norm after the attention
                                      // scales W_O's output by its weights and by the attention output's per-token 1/rms
  bool qk_ignores_softcap = false;    // Gemma 2: the scores pass through c tanh(s / c) after x W_QK y^T: the
                                      // bilinear form holds for small scores, and large ones are flattened
  CircuitSpectra ov, qk;
};

// All heads' OV and QK spectra. Error: top_k < 1, bad weights, cancelled.
Result<HeadSpectra> head_spectra(const Model& model, WeightVariant variant, int top_k = 4,
                                 const ProgressFn& progress = {});

// ---------------------------------------------------------------------------
// Pairs of heads

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
                                             const ProgressFn& progress = {});

// Composition scores (SPEC §5.4, TL all_composition_scores) for every pair of
// heads with l1 < l2, as [L, H, L, H] (index ((l1*H + h1)*L + l2)*H + h2);
// entries with l1 >= l2 are 0 as in TL:
//   q: ||OV1 QK2||   / (||OV1|| ||QK2||)     (Q-composition)
//   k: ||OV1 QK2^T|| / (||OV1|| ||QK2^T||)   (K-composition)
//   v: ||OV1 OV2||   / (||OV1|| ||OV2||)     (V-composition)
// all Frobenius norms, each score in [0, 1]; a zero circuit scores 0.
// ||L R||^2 = tr(L^T L R R^T) is computed from dh-column factors
// (L^T L = F F^T, R R^T = G G^T) as ||F^T G||_F^2, batched.
// null_q, null_k, null_v: the same scores of the pairs that cannot compose,
// l1 > l2 (reversed) and l1 == l2 (same layer), self-pairs excluded (0), the
// l1 < l2 entries 0: the empirical null of composition_null.hpp. They keep
// every head's spectrum and the residual stream's shared anisotropy, which a
// null of random matrices does not.
struct CompositionScores {
  WeightVariant variant = WeightVariant::raw;
  int n_layer = 0, n_head = 0;
  bool qk_ignores_rotary = false;
  bool qk_ignores_qk_norm = false;  // as HeadSpectra's
  bool qk_ignores_softcap = false;  // as HeadSpectra's
  std::vector<double> q, k, v;                 // [L, H, L, H], l1 < l2
  std::vector<double> null_q, null_k, null_v;  // [L, H, L, H], l1 >= l2, self 0
};
Result<CompositionScores> composition_scores(const Model& model, WeightVariant variant,
                                             const ProgressFn& progress = {});

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
                                       const ProgressFn& progress = {});

// One composition score of factored matrices L = A1 B1 and R = A2 B2 (A [d, m],
// B [m, d]) by the exact trace identity of SPEC §5.4 (all m x m):
// ||LR||^2 = tr(G1 M G2 M^T), G1 = A1^T A1, M = B1 A2, G2 = B2 B2^T.
double composition_score(const Eigen::Ref<const MatrixRMd>& A1, const Eigen::Ref<const MatrixRMd>& B1,
                         const Eigen::Ref<const MatrixRMd>& A2, const Eigen::Ref<const MatrixRMd>& B2);

// The score of random factored matrices of the same shapes (ARENA): X1..X4
// [d, dh] uniform on +-1/sqrt(dh) (kaiming_uniform a=sqrt(5)), score
// comp(X1 X2^T, X3 X4^T). Deterministic for a seed (xoshiro256**). Roughly
// 1/sqrt(d): a reference level for composition plots. Not a null for
// significance: real heads share the residual stream's anisotropy, so most
// real pairs beat it (composition_null.hpp has the null that holds).
struct CompositionBaseline {
  int d_model = 0, d_head = 0, n_samples = 0;
  std::uint64_t seed = 0;
  double mean = 0, std = 0;  // std: sample standard deviation (ddof 1)
};
Result<CompositionBaseline> composition_baseline(int d_model, int d_head, int n_samples = 300,
                                                 std::uint64_t seed = 0, const ProgressFn& progress = {});

// Pairs of heads that could be merged into one: make_head_merge
// (interventions.hpp) replaces two heads of ONE layer by their summed OV read
// through one of their two patterns, so only same-layer pairs are ranked, by
// `combined`, the mean of
//   write_overlap  their O redundancy: they write to the same subspace
//   read_overlap   their V redundancy: they read the same subspace. Left out
//                  of `combined` for KV siblings (GQA heads that read one
//                  key/value head share its W_V: overlap 1 by construction)
//   qk_similarity  the cosine of their QK bilinear forms,
//                  <QK_a, QK_b>_F / (|QK_a|_F |QK_b|_F) in [-1, 1]: the merged
//                  head keeps one pattern, so heads that score keys alike
//                  lose less (RoPE left out, as for the QK spectra)
// top_n pairs (i < j).
struct MergeCandidate {
  int layer = 0, head_a = 0, head_b = 0;
  bool kv_siblings = false;
  double write_overlap = 0, read_overlap = 0, qk_similarity = 0, combined = 0;
};
struct MergeCandidates {
  WeightVariant variant = WeightVariant::raw;
  std::vector<MergeCandidate> pairs;  // by descending combined
};
// From redundancy matrices already computed (kinds output_write and
// value_read, in `variant`, of `model`).
Result<MergeCandidates> merge_candidates(const Model& model, WeightVariant variant, const RedundancyMatrix& write,
                                         const RedundancyMatrix& read, int top_n);
Result<MergeCandidates> merge_candidates(const Model& model, WeightVariant variant, int top_n,
                                         const ProgressFn& progress = {});

}  // namespace hs
