// TransformerLens weight processing (SPEC §5.3): the "processed" weight
// variant that HookedTransformer.from_pretrained analyses, next to the "raw"
// one of from_pretrained_no_processing. Processing leaves attention patterns
// and log-probabilities unchanged (logits move by a constant per position)
// but changes every weight-based metric, so each analysis names the variant
// it read (WeightVariant) and every result records it.
//
// Steps, in TL order, each optional:
//   1. fold_ln: LayerNorm models fold gamma into the reading weights, beta
//      into their biases, and centre the reading weights over d_model;
//      RMSNorm models fold the scale only. The norms become parameter-free
//      (weight 1, bias 0 here, which the forward pass treats like TL's LNPre).
//   2. center_writing_weights (LayerNorm models only): W_E, W_pos, W_O, b_O,
//      W_out, b_out lose their mean over d_model.
//   3. center_unembed: W_U and b_U lose their mean over the vocabulary.
//   4. fold_value_biases: b_O += sum_h b_V[h] W_O[h]; b_V = 0 (attention rows
//      sum to 1).
// Defined for pre-LN models only: post-LN models (BERT, OPT-350m) give an
// Error, as TL does not process them either.
//
// The weight geometry (head_circuits.hpp, full_circuits.hpp) does not copy
// a whole processed model: head_matrix and VocabView apply the same steps to
// one head's block or one block of tokens at a time, so the page can keep
// only the raw model.
#pragma once

#include "linalg.hpp"
#include "model.hpp"
#include "result.hpp"

namespace hs {

enum class WeightVariant { raw, processed };
const char* weight_variant_name(WeightVariant variant);  // "raw", "processed"

struct ProcessOptions {  // defaults = TL from_pretrained
  bool fold_ln = true;
  bool center_writing_weights = true;
  bool center_unembed = true;
  bool fold_value_biases = true;
};

// Ok for pre-LN models; Error "weight processing is defined for pre-LN
// models ..." otherwise.
Status check_weight_processing(const ModelConfig& config);

// A processed copy of the model (all weights, MLPs included), for the forward
// pass and the CLI. Processing is idempotent: processing a processed model
// changes nothing beyond rounding.
Result<Model> process_weights(const Model& model, const ProcessOptions& options = {});

// One head's block of a weight matrix in a variant (the processed variant uses
// the default ProcessOptions), widened to double, TL shapes:
// W_Q, W_K, W_V [d, dh] (K and V: the KV head that query head `head` reads),
// W_O [dh, d]. Biases are not part of the circuits (SPEC §5.2).
enum class HeadMatrix { W_Q, W_K, W_V, W_O };
const char* head_matrix_name(HeadMatrix which);  // "W_Q", ...
Result<MatrixRMd> head_matrix(const Model& model, WeightVariant variant, int layer, int head, HeadMatrix which);
// The same block in float: the raw variant as stored, the processed one
// computed in double and rounded once. For the all-heads analyses, whose
// Grams are exact double sums of the float products and whose batched
// products run in float.
Result<MatrixRM> head_matrix_f(const Model& model, WeightVariant variant, int layer, int head, HeadMatrix which);
// The raw block where it is stored (a BlockView, linalg.hpp), checked like
// head_matrix_f (shape, NaN and Inf) but not copied: row r starts at data + r * row_stride (the layer
// matrix's width). W_O's block is dh whole rows of W_O, contiguous.
Result<BlockView> raw_head_block(const Model& model, int layer, int head, HeadMatrix which);
// The raw W_Q, W_K or W_V blocks of all heads of a layer (block b: head b's,
// or KV head b's), copied in one pass over the layer's matrix, whole rows at
// a time: the order memory streams fastest (head by head, GPT-2's blocks are
// 256-byte pieces of 3 KB rows, which measured ~2x slower to copy). Checked
// like raw_head_block; the error names the first head that reads a block
// with NaN or Inf. `out` is resized; its matrices keep their storage.
Status raw_layer_blocks(const Model& model, int layer, HeadMatrix which, std::vector<MatrixRM>& out);

// Rows [p0, p0 + n) of the learned positional embedding in a variant, [n, d]
// (position p reads row p + position_offset, as the forward does; the
// processed variant centres each row, center_writing_weights). Error: no
// learned positions, rows out of range, processing of a post-LN model.
Result<MatrixRM> position_rows(const Model& model, WeightVariant variant, int p0, int n);

// Reads W_E and W_U of a variant block by block, without materialising a
// processed copy (GPT-2's W_U alone is 154 MB). Keeps a pointer to `model`,
// which must outlive it.
class VocabView {
 public:
  // Error: no embedding or no unembedding, or a post-LN model asked for the
  // processed variant.
  static Result<VocabView> make(const Model& model, WeightVariant variant);

  int d_vocab() const { return d_vocab_; }
  int d_model() const { return d_model_; }
  WeightVariant variant() const { return variant_; }
  // Rows [t0, t0 + n) of W_E: [n, d].
  MatrixRM embedding_rows(int t0, int n) const;
  // Columns [t0, t0 + n) of W_U: [d, n].
  MatrixRM unembedding_cols(int t0, int n) const;

 private:
  const Model* model_ = nullptr;
  WeightVariant variant_ = WeightVariant::raw;
  int d_vocab_ = 0, d_model_ = 0;
  bool center_embed_ = false;    // center_writing_weights applies to W_E
  bool center_d_unembed_ = false;  // fold_ln centres W_U over d_model
  RowVectorF unembed_scale_;     // [d] final-norm gamma folded into W_U rows (empty: none)
  VectorF unembed_vocab_mean_;   // [d] column mean subtracted by center_unembed (empty: none)
};

}  // namespace hs
