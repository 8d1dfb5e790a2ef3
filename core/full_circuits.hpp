// Full circuits: a head's circuits read in token and position space
// (Elhage et al. 2021; ARENA 1.2), never as V x V matrices.
//   full OV   W_E OV W_U [V, V]: what attending to token t adds to each logit.
//             Its eigenvalues come from a dh x dh problem (ov_copying_scores),
//             its top singular directions are read as tokens
//             (ov_token_readout), its rows are tested for copying
//             (full_circuit_tests).
//   token QK  W_E QK W_E^T [V, V]: query token t's score for each key token
//             (full_circuit_tests: does a token score its own copies first?).
//   positional QK  W_pos QK W_pos^T [P, P] for learned positions: the
//             pattern the positions alone would give (positional_qk).
// The embedding and unembedding are read in either weight variant, a block of
// tokens at a time (VocabView, processing.hpp).
#pragma once

#include <complex>
#include <cstdint>
#include <vector>

#include "linalg.hpp"
#include "model.hpp"
#include "processing.hpp"
#include "progress.hpp"
#include "result.hpp"

namespace hs {

// W_U W_E [d, d] in the variant: the "direct path" product that the full OV
// circuit's eigenvalues need (V x d x d multiply-adds: 30 G for GPT-2, so it
// is its own, cancellable step; keep the result for the copying scores).
Result<MatrixRM> unembed_embed_product(const Model& model, WeightVariant variant,
                                       const ProgressFn& progress = {});

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
                                    const ProgressFn& progress = {});

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
// Diagonal tests

// ARENA 1.2's test of a full circuit M [V, V], read a row at a time: is each
// token's own column the largest of its row? Over the rows tested:
struct DiagonalTest {
  double top1 = 0;         // fraction of rows whose diagonal entry is the row's largest
  double top5 = 0;         // ... among its 5 largest
  double median_rank = 0;  // the diagonal's rank in its row (0: largest; ties count for it), median
  double mean_rank = 0;    // ... mean
};
// The full OV circuit W_E OV W_U (row t: attending to token t; a copying
// head writes t's own logit first) and the token QK circuit W_E QK W_E^T
// (row t: query token t's scores; a head that attends to earlier copies of
// the current token scores its own token first), biases and norms left out.
// Chance, for a row of exchangeable entries: top1 = 1/V, top5 = 5/V, mean
// rank (V - 1) / 2.
struct FullCircuitTests {
  WeightVariant variant = WeightVariant::raw;
  int n_layer = 0, n_head = 0, d_vocab = 0;
  std::vector<int> heads;   // the heads tested, flat indices l * H + h
  std::vector<int> tokens;  // the rows tested: every token, or a sample
  bool sampled = false;     // tokens is a uniform sample without replacement
  std::uint64_t seed = 0;   // of the sample (Rng, rng.hpp)
  std::vector<DiagonalTest> ov, qk;  // one per tested head
};
// Exact (every row) when V <= max_rows, else on max_rows tokens drawn with
// Rng(seed). Cost per head: 2 V d dh + 2 S V dh multiply-adds (S rows);
// GPT-2 small: ~6 G per head at S = 1024. heads empty: every head. Error:
// no embedding or unembedding, a head out of range, max_rows < 1, cancelled.
Result<FullCircuitTests> full_circuit_tests(const Model& model, WeightVariant variant, const std::vector<int>& heads = {},
                                            int max_rows = 1024, std::uint64_t seed = 0,
                                            const ProgressFn& progress = {});

// ---------------------------------------------------------------------------
// Positional QK circuit

// For a model with learned positions: scores W_pos[i] QK W_pos[j]^T times
// the layer's attention scale over the first P positions, softmaxed over
// the keys a query may see (j <= i when causal). What the positions alone
// make the head attend to: a previous-token head shows from its weights
// (ARENA 1.2). The token embeddings, the norms' scaling and the biases are
// left out; rotary models have no such matrix (an error says so).
struct PositionalQk {
  WeightVariant variant = WeightVariant::raw;
  int n_layer = 0, n_head = 0, n_positions = 0;
  std::vector<int> heads;          // the heads, flat indices
  std::vector<float> patterns;     // [heads, P, P] row = query position
  std::vector<double> previous;    // per head: mean over i >= 1 of pattern[i, i-1]
  std::vector<double> current;     // per head: mean over i of pattern[i, i]
  double previous_chance = 0;      // uniform attention at i-1: mean over i >= 1 of 1/(i+1) (causal), 1/P otherwise
};
Result<PositionalQk> positional_qk(const Model& model, WeightVariant variant, const std::vector<int>& heads = {},
                                   int max_positions = 64);

}  // namespace hs
