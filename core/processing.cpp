// TransformerLens weight processing; see processing.hpp. The order of steps
// and what each touches follow TL v2.18 HookedTransformer.process_weights /
// fold_layer_norm / center_writing_weights / center_unembed /
// fold_value_biases (SPEC §5.3).
#include "processing.hpp"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>

namespace hs {

namespace {

// W [d, n]: row m scaled by gamma[m] (a norm's weight folded into the matrix
// that reads the norm's output).
template <class Mat>
void scale_rows(Mat& W, const RowVectorF& gamma) {
  for (Eigen::Index m = 0; m < W.rows(); ++m) W.row(m) *= static_cast<typename Mat::Scalar>(gamma[m]);
}

// Subtract the mean over d_model from each column of W [d, n]: a LayerNorm's
// output is orthogonal to the all-ones vector, so this changes nothing it reads.
template <class Mat>
void center_columns(Mat& W) {
  if (W.rows() == 0) return;
  W.rowwise() -= W.colwise().mean().eval();
}

// Subtract each row's mean from W [n, d] (weights that write to the residual
// stream, or W_U over the vocabulary).
template <class Mat>
void center_rows(Mat& W) {
  if (W.cols() == 0) return;
  W.colwise() -= W.rowwise().mean().eval();
}

bool has(const RowVectorF& v, int n) { return v.size() == n; }

}  // namespace

const char* weight_variant_name(WeightVariant variant) {
  return variant == WeightVariant::raw ? "raw" : "processed";
}

const char* head_matrix_name(HeadMatrix which) {
  switch (which) {
    case HeadMatrix::W_Q: return "W_Q";
    case HeadMatrix::W_K: return "W_K";
    case HeadMatrix::W_V: return "W_V";
    case HeadMatrix::W_O: return "W_O";
  }
  return "?";
}

Status check_weight_processing(const ModelConfig& config) {
  if (config.post_ln) {
    return make_error("weight processing is defined for pre-LN models; " + config.model_type +
                      " is post-LN (analyse its raw weights)");
  }
  if (!config.pre_norm) {
    return make_error("weight processing folds the norm before each sublayer into its weights; " + config.model_type +
                      " has its norms after the attention and the MLP, so the processed variant is not defined (analyse its raw weights)");
  }
  return Ok{};
}

Result<Model> process_weights(const Model& model, const ProcessOptions& options) {
  HS_TRY(check_weight_processing(model.config));
  const ModelConfig& c = model.config;
  const int d = c.d_model;
  const bool layer_norm = c.norm == NormKind::layer_norm;
  Model m = model;
  ModelWeights& w = m.weights;
  // The processed copy is float32 throughout (16-bit weights are widened).
  w.W_E.to_f32();
  w.W_U.to_f32();
  for (LayerWeights& L : w.layers)
    for (WeightMatrix* W : {&L.W_in, &L.W_gate, &L.W_out}) W->to_f32();
  // Processing makes the unembedding differ from W_E^T: a tied model's copy
  // gets its own W_U.
  if (c.has_lm_head && unembed_tied(w)) w.W_U = MatrixRM(w.W_E.f32().transpose());
  if (w.W_U.size() > 0 && w.b_U.size() != w.W_U.cols()) w.b_U = RowVectorF::Zero(w.W_U.cols());
  // Absent biases may arrive empty: give them their zeros so folding can add.
  auto sized = [](RowVectorF& b, Eigen::Index n) {
    if (b.size() != n) b = RowVectorF::Zero(n);
  };
  for (LayerWeights& L : w.layers) {
    sized(L.b_Q, L.W_Q.cols());
    sized(L.b_K, L.W_K.cols());
    sized(L.b_V, L.W_V.cols());
    sized(L.b_O, d);
    if (L.W_in.size() > 0) sized(L.b_in, L.W_in.cols());
    if (L.W_out.size() > 0) sized(L.b_out, d);
  }

  // 1. fold_ln. LN models fold biases and centre; RMS models only scale.
  if (options.fold_ln) {
    for (LayerWeights& L : w.layers) {
      if (layer_norm && has(L.ln1_b, d)) {
        // Uses W before gamma is folded in: LN(x) = xhat*gamma + beta.
        L.b_Q += L.ln1_b * L.W_Q;
        L.b_K += L.ln1_b * L.W_K;
        L.b_V += L.ln1_b * L.W_V;
      }
      if (has(L.ln1_w, d)) {
        scale_rows(L.W_Q, L.ln1_w);
        scale_rows(L.W_K, L.ln1_w);
        scale_rows(L.W_V, L.ln1_w);
      }
      if (layer_norm) {
        center_columns(L.W_Q);
        center_columns(L.W_K);
        center_columns(L.W_V);
      }
      L.ln1_w = RowVectorF::Ones(d);
      if (layer_norm) L.ln1_b = RowVectorF::Zero(d);

      if (L.W_in.size() > 0) {
        if (layer_norm && has(L.ln2_b, d)) {
          L.b_in += L.ln2_b * L.W_in.f32();
          // The gate reads the same LayerNorm output (TL has no LN-gated
          // models; folding into b_gate keeps them exact).
          if (L.W_gate.size() > 0) {
            if (L.b_gate.size() != L.W_gate.cols()) L.b_gate = RowVectorF::Zero(L.W_gate.cols());
            L.b_gate += L.ln2_b * L.W_gate.f32();
          }
        }
        if (has(L.ln2_w, d)) {
          scale_rows(L.W_in.f32(), L.ln2_w);
          if (L.W_gate.size() > 0) scale_rows(L.W_gate.f32(), L.ln2_w);
        }
        // TL centres W_in only (its gated models are all RMSNorm).
        if (layer_norm) center_columns(L.W_in.f32());
        L.ln2_w = RowVectorF::Ones(d);
        if (layer_norm) L.ln2_b = RowVectorF::Zero(d);
      }
    }
    if (w.W_U.size() > 0 && c.final_norm && has(w.ln_final_w, d)) {
      if (layer_norm && has(w.ln_final_b, d)) w.b_U += w.ln_final_b * w.W_U.f32();
      scale_rows(w.W_U.f32(), w.ln_final_w);
      if (layer_norm) center_columns(w.W_U.f32());
      w.ln_final_w = RowVectorF::Ones(d);
      if (layer_norm) w.ln_final_b = RowVectorF::Zero(d);
    }
  }

  // 2. center_writing_weights: only when every reader of the residual stream
  // is a LayerNorm, which removes the mean anyway.
  if (options.center_writing_weights && layer_norm) {
    center_rows(w.W_E.f32());
    if (c.learned_positions && c.rotary_dim == 0 && w.W_pos.size() > 0) center_rows(w.W_pos);
    for (LayerWeights& L : w.layers) {
      center_rows(L.W_O);
      if (L.b_O.size() > 0) L.b_O.array() -= L.b_O.mean();
      if (L.W_out.size() > 0) {
        center_rows(L.W_out.f32());
        if (L.b_out.size() > 0) L.b_out.array() -= L.b_out.mean();
      }
    }
  }

  // 3. center_unembed: softmax is invariant to a constant added to all logits.
  if (options.center_unembed && w.W_U.size() > 0) {
    center_rows(w.W_U.f32());
    w.b_U.array() -= w.b_U.mean();
  }

  // 4. fold_value_biases: each head's output is sum_j A[i,j] (v_j + b_V) W_O
  // and the rows of A sum to 1, so b_V W_O is a constant that joins b_O.
  if (options.fold_value_biases) {
    const int dh = c.d_head;
    for (LayerWeights& L : w.layers) {
      if (L.b_V.size() == 0) continue;
      if (L.b_O.size() != d) L.b_O = RowVectorF::Zero(d);
      for (int h = 0; h < c.n_head; ++h) {
        const int g = kv_head_of(c, h);
        L.b_O += L.b_V.segment(g * dh, dh) * L.W_O.middleRows(h * dh, dh);
      }
      L.b_V.setZero();
    }
  }
  return m;
}

namespace {

// Where head_matrix's raw block is (its entries not checked yet).
Result<BlockView> locate_head_block(const Model& model, int layer, int head, HeadMatrix which) {
  const ModelConfig& c = model.config;
  if (layer < 0 || layer >= static_cast<int>(model.weights.layers.size()) || head < 0 || head >= c.n_head) {
    return make_error("head L" + std::to_string(layer) + "H" + std::to_string(head) + " is out of range (" +
                      std::to_string(model.weights.layers.size()) + " layers, " + std::to_string(c.n_head) +
                      " heads)");
  }
  const LayerWeights& L = model.weights.layers[layer];
  const int d = c.d_model, dh = c.d_head;
  const bool reads = which != HeadMatrix::W_O;
  const MatrixRM& full = which == HeadMatrix::W_Q   ? L.W_Q
                         : which == HeadMatrix::W_K ? L.W_K
                         : which == HeadMatrix::W_V ? L.W_V
                                                    : L.W_O;
  const int block = which == HeadMatrix::W_Q || which == HeadMatrix::W_O ? head : kv_head_of(c, head);
  const bool shape_ok = reads ? (full.rows() == d && full.cols() >= (block + 1) * dh)
                              : (full.cols() == d && full.rows() >= (block + 1) * dh);
  if (!shape_ok) {
    return make_error(std::string(head_matrix_name(which)) + " of layer " + std::to_string(layer) + " has shape [" +
                      std::to_string(full.rows()) + ", " + std::to_string(full.cols()) +
                      "], too small for the model's head count");
  }
  const float* data = reads ? full.data() + Eigen::Index(block) * dh : full.data() + Eigen::Index(block) * dh * full.cols();
  return BlockView{data, full.cols(), 1, reads ? d : dh, reads ? dh : d};
}

Error nonfinite_block(int layer, int head, HeadMatrix which) {
  return make_error("L" + std::to_string(layer) + "H" + std::to_string(head) + " " + head_matrix_name(which) +
                    " contains NaN or Inf");
}

// An entry is NaN or Inf exactly when its exponent bits are all set; OR-ing
// that test over integers is a loop the compilers vectorize (a float sum
// would be one serial chain).
inline std::uint32_t nonfinite_bit(const float* x) {
  std::uint32_t bits;
  std::memcpy(&bits, x, sizeof bits);
  return (bits & 0x7f800000u) == 0x7f800000u;
}

// Copies n floats from s to m (converted to T) and returns nonzero if any
// of them is NaN or Inf.
template <class T>
std::uint32_t copy_checked(const float* s, T* m, int n) {
  std::uint32_t nonfinite = 0;
  for (int q = 0; q < n; ++q) {
    nonfinite |= nonfinite_bit(s + q);
    m[q] = static_cast<T>(s[q]);
  }
  return nonfinite;
}

// head_matrix's block as stored, in the scalar type of Mat (the raw variant).
template <class Mat>
Result<Mat> raw_head_matrix(const Model& model, int layer, int head, HeadMatrix which) {
  auto at = locate_head_block(model, layer, head, which);
  if (!at) return at.error();
  // The block, converted row by row (plain loops: Eigen's strided cast and
  // allFinite run scalar in wasm, 4x slower), checked in the same pass.
  Mat M(at->rows, at->cols);
  std::uint32_t nonfinite = 0;
  for (int r = 0; r < at->rows; ++r) {
    nonfinite |= copy_checked(at->data + r * at->row_stride, M.data() + std::ptrdiff_t(r) * at->cols, at->cols);
  }
  if (nonfinite) return nonfinite_block(layer, head, which);
  return M;
}

}  // namespace

Status raw_layer_blocks(const Model& model, int layer, HeadMatrix which, std::vector<MatrixRM>& out) {
  const ModelConfig& c = model.config;
  if (which == HeadMatrix::W_O) return make_error("raw_layer_blocks: W_O's blocks are whole rows, read in place");
  const int blocks = which == HeadMatrix::W_Q ? c.n_head : c.n_kv_head;
  std::vector<BlockView> at(blocks);
  std::vector<int> first_head(blocks, -1);
  for (int h = 0; h < c.n_head; ++h) {
    const int b = which == HeadMatrix::W_Q ? h : kv_head_of(c, h);
    if (first_head[b] >= 0) continue;
    auto view = locate_head_block(model, layer, h, which);
    if (!view) return view.error();
    at[b] = *view;
    first_head[b] = h;
  }
  out.resize(blocks);
  for (int b = 0; b < blocks; ++b) out[b].resize(at[b].rows, at[b].cols);
  std::vector<std::uint32_t> nonfinite(blocks, 0);
  for (int r = 0; r < c.d_model; ++r) {
    for (int b = 0; b < blocks; ++b) {  // the blocks side by side: row r of the layer's matrix
      nonfinite[b] |=
          copy_checked(at[b].data + r * at[b].row_stride, out[b].data() + std::ptrdiff_t(r) * at[b].cols, at[b].cols);
    }
  }
  for (int b = 0; b < blocks; ++b) {
    if (nonfinite[b]) return nonfinite_block(layer, first_head[b], which);
  }
  return Ok{};
}

Result<BlockView> raw_head_block(const Model& model, int layer, int head, HeadMatrix which) {
  auto at = locate_head_block(model, layer, head, which);
  if (!at) return at.error();
  std::uint32_t nonfinite = 0;
  for (int r = 0; r < at->rows; ++r) {
    const float* s = at->data + r * at->row_stride;
    for (int q = 0; q < at->cols; ++q) nonfinite |= nonfinite_bit(s + q);
  }
  if (nonfinite) return nonfinite_block(layer, head, which);
  return *at;
}

Result<MatrixRMd> head_matrix(const Model& model, WeightVariant variant, int layer, int head, HeadMatrix which) {
  auto block = raw_head_matrix<MatrixRMd>(model, layer, head, which);
  if (!block || variant == WeightVariant::raw) return block;
  MatrixRMd& M = *block;
  const ModelConfig& c = model.config;
  const LayerWeights& L = model.weights.layers[layer];
  const int d = c.d_model;
  const bool reads = which != HeadMatrix::W_O;
  HS_TRY(check_weight_processing(c));
  const bool layer_norm = c.norm == NormKind::layer_norm;
  if (reads) {
    if (has(L.ln1_w, d)) scale_rows(M, L.ln1_w);
    if (layer_norm) center_columns(M);
  } else if (layer_norm) {
    center_rows(M);
  }
  return M;
}

Result<MatrixRM> head_matrix_f(const Model& model, WeightVariant variant, int layer, int head, HeadMatrix which) {
  if (variant == WeightVariant::raw) return raw_head_matrix<MatrixRM>(model, layer, head, which);
  auto M = head_matrix(model, variant, layer, head, which);
  if (!M) return M.error();
  return MatrixRM(M->cast<float>());
}

Result<VocabView> VocabView::make(const Model& model, WeightVariant variant) {
  const ModelConfig& c = model.config;
  const ModelWeights& w = model.weights;
  const int d = c.d_model;
  if (w.W_E.rows() == 0 || w.W_E.cols() != d) {
    return make_error("the model has no token embedding W_E [V, " + std::to_string(d) + "]");
  }
  const Eigen::Index V = unembed_vocab(w);
  if (!model.config.has_lm_head || V == 0 || unembed_dim(w) != d) {
    return make_error("the model has no unembedding W_U [" + std::to_string(d) + ", V]");
  }
  if (V != w.W_E.rows()) {
    return make_error("W_E has " + std::to_string(w.W_E.rows()) + " tokens but W_U has " + std::to_string(V));
  }
  VocabView v;
  v.model_ = &model;
  v.variant_ = variant;
  v.d_vocab_ = static_cast<int>(w.W_E.rows());
  v.d_model_ = d;
  if (variant == WeightVariant::raw) return v;
  HS_TRY(check_weight_processing(c));
  const bool layer_norm = c.norm == NormKind::layer_norm;
  v.center_embed_ = layer_norm;
  if (c.final_norm && has(w.ln_final_w, d)) {
    v.unembed_scale_ = w.ln_final_w;
    v.center_d_unembed_ = layer_norm;
  }
  // center_unembed subtracts the vocabulary mean of the already folded W_U;
  // folding is linear per column, so that mean is the folded mean column.
  Eigen::VectorXd sum = Eigen::VectorXd::Zero(d);  // in blocks of tokens (the weights may be 16-bit)
  for (Eigen::Index t0 = 0; t0 < V; t0 += 4096) {
    const Eigen::Index n = std::min<Eigen::Index>(4096, V - t0);
    sum += unembedding_block(w, t0, n).cast<double>().rowwise().sum();
  }
  MatrixRM mean_col = (sum / static_cast<double>(V)).cast<float>();  // [d, 1]
  if (v.unembed_scale_.size() > 0) scale_rows(mean_col, v.unembed_scale_);
  if (v.center_d_unembed_) center_columns(mean_col);
  v.unembed_vocab_mean_ = mean_col.col(0);
  return v;
}

Result<MatrixRM> position_rows(const Model& model, WeightVariant variant, int p0, int n) {
  const ModelConfig& c = model.config;
  const MatrixRM& W = model.weights.W_pos;
  if (!has_position_matrix(c) || W.size() == 0)
    return make_error("this model has no learned positional embeddings" +
                      std::string(c.rotary_dim > 0 ? " (rotary: positions rotate q and k, so no positional circuit is a matrix)" : ""));
  if (p0 < 0 || n < 0 || p0 + n + c.position_offset > W.rows())
    return make_error("positions " + std::to_string(p0) + ".." + std::to_string(p0 + n - 1) + " are past the model's " +
                      std::to_string(W.rows() - c.position_offset));
  if (variant == WeightVariant::processed) HS_TRY(check_weight_processing(c));
  MatrixRM P = W.middleRows(p0 + c.position_offset, n);
  if (variant == WeightVariant::processed && c.norm == NormKind::layer_norm) center_rows(P);
  return P;
}

MatrixRM VocabView::embedding_rows(int t0, int n) const {
  MatrixRM E = model_->weights.W_E.rows_f32(t0, n) * model_->config.embed_scale;
  if (center_embed_) center_rows(E);
  return E;
}

MatrixRM VocabView::unembedding_cols(int t0, int n) const {
  MatrixRM U = unembedding_block(model_->weights, t0, n);
  if (variant_ == WeightVariant::raw) return U;
  if (unembed_scale_.size() > 0) scale_rows(U, unembed_scale_);
  if (center_d_unembed_) center_columns(U);
  U.colwise() -= unembed_vocab_mean_;
  return U;
}

}  // namespace hs
