// Each attention head as factored matrices, read from the model. Per head
// (TransformerLens vocabulary, row vectors, y = x W):
//   OV[h] = W_V[h] W_O[h]    [d, d], rank <= dh: what the head writes
//   QK[h] = W_Q[h] W_K[h]^T  [d, d], rank <= dh: the unscaled score bilinear form
// Both are factored matrices A B (factored_matrix.hpp); nothing here forms a
// d x d product. A head also has subspaces of R^d: the column spaces of W_Q,
// W_K, W_V that it reads from, and the row space of W_O that it writes to.
//
// The blocks come in either weight variant (raw, or TL-processed, derived
// per head on the fly: processing.hpp); the model passed in is always the raw
// model as loaded. For rotary models QK ignores the rotation (the form at
// relative offset 0).
//
// For the all-heads analyses (geometry.hpp), HeadReader reads the heads one
// after the other: a head's four blocks in float, their Grams in double and
// the Grams' square-root factors (decompositions.hpp), once per head for
// every analysis of a pass.
#pragma once

#include <functional>
#include <vector>

#include "factored_matrix.hpp"
#include "linalg.hpp"
#include "model.hpp"
#include "processing.hpp"
#include "result.hpp"

namespace hs {

// ---------------------------------------------------------------------------
// Circuits and subspaces

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

// The subspaces of R^d a head reads from (column spaces of W_Q[h], W_K[h],
// W_V[h]) or writes to (the row space of W_O[h]).
enum class HeadSubspace { query_read, key_read, value_read, output_write };
const char* head_subspace_name(HeadSubspace kind);  // "Q", "K", "V", "O"

// The block whose columns span a subspace kind, as [d, dh] (W_O transposed),
// in double (head_matrix) for the single-pair angles and in float
// (head_matrix_f) for the all-pairs redundancy, like the one pass's blocks.
Result<MatrixRMd> subspace_factor(const Model& model, WeightVariant variant, int layer, int head, HeadSubspace kind);
Result<MatrixRM> subspace_factor_f(const Model& model, WeightVariant variant, int layer, int head, HeadSubspace kind);

// The model has a head layout (n_head, n_kv_head, d_head) and layers.
Status check_heads(const Model& model);
// The model has heads, and the variant can be derived from it.
Status check_geometry(const Model& model, WeightVariant variant);

inline bool is_rotary(const ModelConfig& c) { return c.rotary_dim > 0; }

// ---------------------------------------------------------------------------
// Reading every head in turn (the all-heads passes)

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
  Status read(const Model& model, int l);
};

// What the all-heads analyses share from one head: its blocks and Grams
// (HeadBlocks) and the square-root factors of the four Grams, which the
// spectra (OV, QK) and the composition factors use.
struct HeadWork {
  HeadBlocks b;
  MatrixRMd S_Q, S_K, S_V, S_O;  // S S^T = G_Q, G_K, G_V, G_O
  std::vector<int> p_Q, p_K, p_V, p_O;  // their row permutations (psd_sqrt_factor)
};

// Every head's HeadWork (the all-heads passes): a layer at a time, reading
// its raw blocks once, the layer's heads shared over the threads
// (parallel.hpp). each(i, work), i = l * n_head + h, runs on those threads,
// for distinct heads at once. After each layer, layer_done(layers done /
// layers) runs on the calling thread (progress: false there cancels).
Status for_each_head(const Model& model, WeightVariant variant, const std::function<void(int, HeadWork&)>& each,
                     const std::function<bool(double)>& layer_done);

}  // namespace hs
