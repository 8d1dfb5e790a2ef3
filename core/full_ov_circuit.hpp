// The full OV circuit of a head, W_E OV W_U [V, V], in token space: what the
// head copies from the token it attends to into the logits (Elhage et al.
// 2021). Its eigenvalues come from a dh x dh problem (ov_copying_scores),
// its top singular directions are read as tokens (ov_token_readout). The
// embedding and unembedding are read in either weight variant, a block of
// tokens at a time (VocabView, processing.hpp).
#pragma once

#include <complex>
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

}  // namespace hs
