// Checkpoint tensors -> the canonical ModelWeights; see checkpoint.hpp.
#include "checkpoint.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <regex>
#include <string>
#include <type_traits>

namespace hs {

namespace {

#define HS_CAT_(a, b) a##b
#define HS_CAT(a, b) HS_CAT_(a, b)
// `HS_LET(x, expr)`: declares x = the value of a Result expression, or
// returns its error from the enclosing function.
#define HS_LET(var, expr)                                    \
  auto HS_CAT(hs_let_, __LINE__) = (expr);                   \
  if (!HS_CAT(hs_let_, __LINE__).ok()) return HS_CAT(hs_let_, __LINE__).error(); \
  auto var = std::move(HS_CAT(hs_let_, __LINE__)).value()

std::string shape_str(const std::vector<std::int64_t>& s) {
  std::string out = "[";
  for (std::size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

// Known checkpoint prefixes per family, longest first. Names are looked up by
// their canonical form: prefix stripped, LayerNorm gamma/beta renamed.
std::vector<std::string> prefixes_of(Family f) {
  switch (f) {
    case Family::gpt2:
    case Family::gpt_neo: return {"transformer."};
    case Family::gpt_neox: return {"gpt_neox."};
    // Gemma 3's multimodal checkpoints hold the language model under
    // language_model.model. (as published) or model.language_model. (as
    // transformers >= 4.52 saves them).
    case Family::llama: return {"model.language_model.", "language_model.model.", "model."};
    case Family::opt: return {"model.decoder.", "decoder.", "model."};
    case Family::bert: return {"bert."};
  }
  return {};
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string canonical_name(const std::string& name, const std::vector<std::string>& prefixes) {
  std::string n = name;
  for (const std::string& p : prefixes)
    if (n.compare(0, p.size(), p) == 0) {
      n = n.substr(p.size());
      break;
    }
  // Old (TF-converted) BERT files: LayerNorm.gamma / LayerNorm.beta.
  if (ends_with(n, ".gamma")) n = n.substr(0, n.size() - 6) + ".weight";
  else if (ends_with(n, ".beta")) n = n.substr(0, n.size() - 5) + ".bias";
  return n;
}

// How a matrix stored as `dtype` is kept (weight_matrix.hpp).
WeightStorage storage_of(Dtype dtype) {
  return dtype == Dtype::BF16 ? WeightStorage::bf16 : dtype == Dtype::F16 ? WeightStorage::f16 : WeightStorage::f32;
}

struct TensorRef {
  const SafetensorsFile* file = nullptr;
  const TensorInfo* info = nullptr;
};

// Reads tensors by canonical name from any shard, checking shapes and
// flagging non-finite values.
class TensorSource {
 public:
  TensorSource(const ModelConfig& c, std::vector<std::string>& warnings) : prefixes_(prefixes_of(c.family)), warnings_(warnings) {}

  Status index(const std::vector<const SafetensorsFile*>& shards) {
    for (const SafetensorsFile* file : shards) {
      if (!file) return make_error(ErrorCode::bad_checkpoint, "model_from_checkpoint: a shard is null");
      for (const TensorInfo& t : file->tensors) {
        const std::string canon = canonical_name(t.name, prefixes_);
        auto it = by_name_.find(canon);
        if (it != by_name_.end())
          return make_error(ErrorCode::bad_checkpoint, "checkpoint: tensors '" + it->second.info->name +
                                                           "' (" + it->second.file->source + ") and '" +
                                                           t.name + "' (" + file->source +
                                                           ") both resolve to '" + canon + "'");
        by_name_[canon] = TensorRef{file, &t};
      }
    }
    return Ok{};
  }

  bool has(const std::string& canon) const { return by_name_.count(canon) != 0; }

  // Tensor `canon`, which must have shape `shape`.
  Result<TensorRef> find(const std::string& canon, const std::vector<std::int64_t>& shape) const {
    auto it = by_name_.find(canon);
    if (it == by_name_.end()) {
      std::string msg = "checkpoint: missing tensor '" + canon + "'";
      if (!prefixes_.empty()) msg += " (also looked for '" + prefixes_[0] + canon + "')";
      msg += ", expected shape " + shape_str(shape);
      return make_error(ErrorCode::bad_checkpoint, msg);
    }
    const TensorRef& ref = it->second;
    if (ref.info->shape != shape)
      return make_error(ErrorCode::bad_checkpoint, "checkpoint: tensor '" + ref.info->name + "': expected " +
                                                       shape_str(shape) + ", found " +
                                                       shape_str(ref.info->shape));
    return ref;
  }

  // Decodes all of tensor `canon` (shape `shape`) into out[0, numel).
  Status read_into(const std::string& canon, const std::vector<std::int64_t>& shape, float* out) {
    HS_LET(ref, find(canon, shape));
    const std::int64_t n = ref.info->numel();
    HS_TRY(safetensors_read_f32_into(*ref.file, *ref.info, 0, n, out));
    Finite finite;
    finite.add(out, n, 0);
    finite.report(*ref.info, warnings_);
    return Ok{};
  }

  // Calls fn(r0, n, rows) for consecutive blocks of rows of the 2-D tensor
  // `canon` [R, C]: rows [r0, r0 + n) decoded into a scratch of
  // checkpoint_scratch_values (at least one row), reused for every block and
  // tensor.
  template <class Fn>
  Status rows(const std::string& canon, std::int64_t R, std::int64_t C, Fn&& fn) {
    return blocks(canon, R, C, scratch_, [&](std::int64_t r0, std::int64_t n, const float* block) {
      fn(r0, n, ConstMapRM(block, n, C));
    });
  }

  // rows() for a BF16 or F16 tensor, its values as stored (16-bit
  // patterns): fn(r0, n, block [n, C]), for the matrices kept 16-bit.
  template <class Fn>
  Status rows_16bit(const std::string& canon, std::int64_t R, std::int64_t C, Fn&& fn) {
    return blocks(canon, R, C, scratch_16bit_, fn);
  }

  // A matrix stored as is: [rows, cols], decoded in place.
  Result<MatrixRM> matrix(const std::string& canon, std::int64_t rows, std::int64_t cols) {
    MatrixRM m(rows, cols);
    HS_TRY(read_into(canon, {rows, cols}, m.data()));
    return m;
  }
  // An nn.Linear weight [out, in], returned as W [in, out] so that y = x W.
  Result<MatrixRM> linear(const std::string& canon, std::int64_t in, std::int64_t out) {
    MatrixRM W(in, out);
    HS_TRY(rows(canon, out, in, [&](std::int64_t r0, std::int64_t n, const ConstMapRM& block) {
      W.middleCols(r0, n) = block.transpose();
    }));
    return W;
  }
  // nn.Linear weights [sum of outs, in] split by rows into W_i [in, outs[i]]
  // (y = x W_i), each kept as the checkpoint stores it: 16-bit for BF16 and
  // F16 tensors (weight_matrix.hpp), else float32.
  Result<std::vector<WeightMatrix>> linear_parts(const std::string& canon, std::int64_t in,
                                                 const std::vector<std::int64_t>& outs) {
    std::int64_t total = 0;
    for (std::int64_t o : outs) total += o;
    HS_LET(ref, find(canon, {total, in}));
    const WeightStorage storage = storage_of(ref.info->dtype);
    std::vector<WeightMatrix> parts;
    for (std::int64_t o : outs)
      parts.push_back(storage == WeightStorage::f32 ? WeightMatrix(MatrixRM(in, o)) : WeightMatrix::sixteen_bit(storage, in, o));
    // Each block of rows [r0, r0 + n) goes to the parts it overlaps,
    // transposed (its rows of a part become that part's columns).
    const auto split = [&](std::int64_t r0, std::int64_t n, const auto& block, auto& t, const auto& put) {
      std::int64_t part_start = 0;
      for (std::size_t p = 0; p < parts.size(); part_start += outs[p], ++p) {
        const std::int64_t a = std::max(r0, part_start), b = std::min(r0 + n, part_start + outs[p]);
        if (a >= b) continue;
        t = block.middleRows(a - r0, b - a).transpose();
        for (std::int64_t c = 0; c < in; ++c) put(parts[p], c, a - part_start, t.data() + c * (b - a), b - a);
      }
    };
    if (storage == WeightStorage::f32) {
      MatrixRM t;
      HS_TRY(rows(canon, total, in, [&](std::int64_t r0, std::int64_t n, const ConstMapRM& block) {
        split(r0, n, block, t, [](WeightMatrix& W, auto r, auto c, const float* v, auto k) { W.set_row_span(r, c, v, k); });
      }));
    } else {
      using Bits = Eigen::Matrix<std::uint16_t, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
      Bits t;
      HS_TRY(rows_16bit(canon, total, in, [&](std::int64_t r0, std::int64_t n, const std::uint16_t* data) {
        split(r0, n, Eigen::Map<const Bits>(data, n, in), t,
              [](WeightMatrix& W, auto r, auto c, const std::uint16_t* v, auto k) { W.set_row_bits(r, c, v, k); });
      }));
    }
    return parts;
  }
  Result<WeightMatrix> weight_linear(const std::string& canon, std::int64_t in, std::int64_t out) {
    HS_LET(parts, linear_parts(canon, in, {out}));
    return std::move(parts[0]);
  }
  // A matrix stored as is, [rows, cols], kept 16-bit as linear_parts does.
  Result<WeightMatrix> weight_matrix(const std::string& canon, std::int64_t rows_n, std::int64_t cols) {
    HS_LET(ref, find(canon, {rows_n, cols}));
    const WeightStorage storage = storage_of(ref.info->dtype);
    if (storage == WeightStorage::f32) {
      HS_LET(m, matrix(canon, rows_n, cols));
      return WeightMatrix(std::move(m));
    }
    WeightMatrix W = WeightMatrix::sixteen_bit(storage, rows_n, cols);
    HS_TRY(rows_16bit(canon, rows_n, cols, [&](std::int64_t r0, std::int64_t n, const std::uint16_t* block) {
      for (std::int64_t i = 0; i < n; ++i) W.set_row_bits(r0 + i, 0, block + i * cols, cols);
    }));
    return W;
  }
  Result<RowVectorF> vec(const std::string& canon, std::int64_t n) {
    RowVectorF v(n);
    HS_TRY(read_into(canon, {n}, v.data()));
    return v;
  }
  // An optional vector: read when `present`, else filled with `fill`.
  Result<RowVectorF> vec_or(const std::string& canon, std::int64_t n, bool present, float fill) {
    if (!present) return RowVectorF(RowVectorF::Constant(n, fill));
    return vec(canon, n);
  }

 private:
  // Counts non-finite values, remembering the first flat index.
  struct Finite {
    std::size_t bad = 0;
    std::int64_t first = 0;
    void add(const float* v, std::int64_t n, std::int64_t offset) {
      for (std::int64_t i = 0; i < n; ++i)
        if (!std::isfinite(v[i]) && bad++ == 0) first = offset + i;
    }
    // BF16 or F16 patterns: Inf and NaN have every exponent bit set.
    void add(const std::uint16_t* v, std::int64_t n, std::int64_t offset, Dtype dtype) {
      const std::uint16_t exponent = dtype == Dtype::BF16 ? 0x7F80 : 0x7C00;
      for (std::int64_t i = 0; i < n; ++i)
        if ((v[i] & exponent) == exponent && bad++ == 0) first = offset + i;
    }
    void report(const TensorInfo& info, std::vector<std::string>& warnings) const {
      if (bad)
        warnings.push_back("tensor '" + info.name + "' has " + std::to_string(bad) +
                           " NaN/Inf value(s), the first at flat index " + std::to_string(first));
    }
  };

  // rows() and rows_16bit(): fn(r0, n, block) for consecutive blocks of
  // rows [r0, r0 + n) of the 2-D tensor `canon` [R, C] read into `scratch`
  // (float32 values, or the stored 16-bit patterns), NaN and Inf counted.
  template <class T, class Fn>
  Status blocks(const std::string& canon, std::int64_t R, std::int64_t C, std::vector<T>& scratch, Fn&& fn) {
    HS_LET(ref, find(canon, {R, C}));
    const std::int64_t per =
        std::max<std::int64_t>(1, std::min<std::int64_t>(R, checkpoint_scratch_values / std::max<std::int64_t>(C, 1)));
    if (static_cast<std::int64_t>(scratch.size()) < per * C) scratch.resize(static_cast<std::size_t>(per * C));
    Finite finite;
    for (std::int64_t r0 = 0; r0 < R; r0 += per) {
      const std::int64_t n = std::min(per, R - r0);
      if constexpr (std::is_same_v<T, float>) {
        HS_TRY(safetensors_read_f32_into(*ref.file, *ref.info, r0 * C, n * C, scratch.data()));
        finite.add(scratch.data(), n * C, r0 * C);
      } else {
        HS_TRY(safetensors_read_16bit_into(*ref.file, *ref.info, r0 * C, n * C, scratch.data()));
        finite.add(scratch.data(), n * C, r0 * C, ref.info->dtype);
      }
      fn(r0, n, static_cast<const T*>(scratch.data()));
    }
    finite.report(*ref.info, warnings_);
    return Ok{};
  }

  std::vector<std::string> prefixes_;
  std::vector<std::uint16_t> scratch_16bit_;  // rows_16bit's
  std::map<std::string, TensorRef> by_name_;
  std::vector<std::string>& warnings_;
  std::vector<float> scratch_;
};

std::string layer_name(const char* stem, int l, const char* rest) { return std::string(stem) + std::to_string(l) + rest; }

// LayerNorm (weight, bias) or RMSNorm weight.
Status read_norm(TensorSource& src, const ModelConfig& c, const std::string& stem, RowVectorF& w, RowVectorF& b) {
  const int d = c.d_model;
  {
    HS_LET(v, src.vec_or(stem + ".weight", d, c.norm_affine, 1.f));
    w = std::move(v);
    if (c.norm_plus_one) w.array() += 1.f;  // Gemma: the norm scales by 1 + w
  }
  if (c.norm == NormKind::layer_norm) {
    HS_LET(v, src.vec_or(stem + ".bias", d, c.norm_affine && c.norm_bias, 0.f));
    b = std::move(v);
  } else {
    b.resize(0);
  }
  return Ok{};
}

// Separate q/k/v/o nn.Linear projections (LLaMA, GPT-Neo, BERT, OPT).
Status read_split_attention(TensorSource& src, const ModelConfig& c, const std::string& p, const char* q, const char* k,
                            const char* v, const char* o, LayerWeights& L) {
  const int d = c.d_model, hq = c.n_head * c.d_head, hkv = c.n_kv_head * c.d_head;
  const std::string s = p;
  {
    HS_LET(m, src.linear(s + q + ".weight", d, hq));
    L.W_Q = std::move(m);
  }
  {
    HS_LET(m, src.linear(s + k + ".weight", d, hkv));
    L.W_K = std::move(m);
  }
  {
    HS_LET(m, src.linear(s + v + ".weight", d, hkv));
    L.W_V = std::move(m);
  }
  {
    HS_LET(m, src.linear(s + o + ".weight", hq, d));
    L.W_O = std::move(m);
  }
  {
    HS_LET(b, src.vec_or(s + q + ".bias", hq, c.qkv_bias, 0.f));
    L.b_Q = std::move(b);
  }
  {
    HS_LET(b, src.vec_or(s + k + ".bias", hkv, c.qkv_bias, 0.f));
    L.b_K = std::move(b);
  }
  {
    HS_LET(b, src.vec_or(s + v + ".bias", hkv, c.qkv_bias, 0.f));
    L.b_V = std::move(b);
  }
  {
    HS_LET(b, src.vec_or(s + o + ".bias", d, c.out_bias, 0.f));
    L.b_O = std::move(b);
  }
  return Ok{};
}

// An nn.Linear MLP (up/down names given).
Status read_linear_mlp(TensorSource& src, const ModelConfig& c, const std::string& up, const std::string& down,
                       LayerWeights& L) {
  const int d = c.d_model, m = c.d_mlp;
  {
    HS_LET(w, src.weight_linear(up + ".weight", d, m));
    L.W_in = std::move(w);
  }
  {
    HS_LET(b, src.vec_or(up + ".bias", m, c.mlp_bias, 0.f));
    L.b_in = std::move(b);
  }
  {
    HS_LET(w, src.weight_linear(down + ".weight", m, d));
    L.W_out = std::move(w);
  }
  {
    HS_LET(b, src.vec_or(down + ".bias", d, c.mlp_bias, 0.f));
    L.b_out = std::move(b);
  }
  return Ok{};
}

Status read_gpt2_layer(TensorSource& src, const ModelConfig& c, int l, LayerWeights& L) {
  const int d = c.d_model;
  const std::string p = layer_name("h.", l, ".");
  HS_TRY(read_norm(src, c, p + "ln_1", L.ln1_w, L.ln1_b));
  HS_TRY(read_norm(src, c, p + "ln_2", L.ln2_w, L.ln2_b));
  // Conv1D c_attn [d, 3d]: column blocks [Q | K | V], each (head, dh).
  L.W_Q.resize(d, d);
  L.W_K.resize(d, d);
  L.W_V.resize(d, d);
  HS_TRY(src.rows(p + "attn.c_attn.weight", d, 3 * d, [&](std::int64_t r0, std::int64_t n, const ConstMapRM& block) {
    L.W_Q.middleRows(r0, n) = block.middleCols(0, d);
    L.W_K.middleRows(r0, n) = block.middleCols(d, d);
    L.W_V.middleRows(r0, n) = block.middleCols(2 * d, d);
  }));
  HS_LET(qkv_b, src.vec(p + "attn.c_attn.bias", 3 * d));
  L.b_Q = qkv_b.segment(0, d);
  L.b_K = qkv_b.segment(d, d);
  L.b_V = qkv_b.segment(2 * d, d);
  {
    HS_LET(m, src.matrix(p + "attn.c_proj.weight", d, d));  // rows (head, dh)
    L.W_O = std::move(m);
  }
  {
    HS_LET(b, src.vec(p + "attn.c_proj.bias", d));
    L.b_O = std::move(b);
  }
  if (c.attention_only) return Ok{};
  {
    HS_LET(m, src.weight_matrix(p + "mlp.c_fc.weight", d, c.d_mlp));
    L.W_in = std::move(m);
  }
  {
    HS_LET(b, src.vec(p + "mlp.c_fc.bias", c.d_mlp));
    L.b_in = std::move(b);
  }
  {
    HS_LET(m, src.weight_matrix(p + "mlp.c_proj.weight", c.d_mlp, d));
    L.W_out = std::move(m);
  }
  {
    HS_LET(b, src.vec(p + "mlp.c_proj.bias", d));
    L.b_out = std::move(b);
  }
  return Ok{};
}

Status read_neox_layer(TensorSource& src, const ModelConfig& c, int l, LayerWeights& L) {
  const int d = c.d_model, H = c.n_head, dh = c.d_head;
  const std::string p = layer_name("layers.", l, ".");
  HS_TRY(read_norm(src, c, p + "input_layernorm", L.ln1_w, L.ln1_b));
  HS_TRY(read_norm(src, c, p + "post_attention_layernorm", L.ln2_w, L.ln2_b));
  // nn.Linear [3d, d] with rows interleaved per head: row h*3dh + s*dh + c.
  MatrixRM* W[3] = {&L.W_Q, &L.W_K, &L.W_V};
  RowVectorF* B[3] = {&L.b_Q, &L.b_K, &L.b_V};
  for (MatrixRM* m : W) m->resize(d, H * dh);
  HS_TRY(src.rows(p + "attention.query_key_value.weight", 3 * d, d,
                  [&](std::int64_t r0, std::int64_t n, const ConstMapRM& block) {
                    for (std::int64_t i = 0; i < n; ++i) {
                      const std::int64_t row = r0 + i, h = row / (3 * dh), s = row % (3 * dh) / dh, k = row % dh;
                      W[s]->col(h * dh + k) = block.row(i).transpose();
                    }
                  }));
  RowVectorF qkv_b = RowVectorF::Zero(3 * d);
  if (c.qkv_bias) {
    HS_LET(b, src.vec(p + "attention.query_key_value.bias", 3 * d));
    qkv_b = std::move(b);
  }
  for (int s = 0; s < 3; ++s) {
    B[s]->resize(H * dh);
    for (int h = 0; h < H; ++h) B[s]->segment(h * dh, dh) = qkv_b.segment(h * 3 * dh + s * dh, dh);
  }
  {
    HS_LET(m, src.linear(p + "attention.dense.weight", H * dh, d));
    L.W_O = std::move(m);
  }
  {
    HS_LET(b, src.vec_or(p + "attention.dense.bias", d, c.out_bias, 0.f));
    L.b_O = std::move(b);
  }
  if (c.attention_only) return Ok{};
  return read_linear_mlp(src, c, p + "mlp.dense_h_to_4h", p + "mlp.dense_4h_to_h", L);
}

Status read_llama_layer(TensorSource& src, const ModelConfig& c, int l, LayerWeights& L) {
  const int d = c.d_model, m = c.d_mlp;
  const std::string p = layer_name("layers.", l, ".");
  // LLaMA: input_layernorm, post_attention_layernorm before the MLP. With
  // norms after the sublayers (OLMo 2, Gemma 2/3) post_attention_layernorm is
  // the one on the attention's output, and pre_feedforward_layernorm (Gemma)
  // comes before the MLP.
  if (c.pre_norm) HS_TRY(read_norm(src, c, p + "input_layernorm", L.ln1_w, L.ln1_b));
  if (c.norm_after_sublayer) {
    HS_TRY(read_norm(src, c, p + "post_attention_layernorm", L.ln1_post_w, L.ln1_post_b));
    HS_TRY(read_norm(src, c, p + "post_feedforward_layernorm", L.ln2_post_w, L.ln2_post_b));
    if (c.pre_norm) HS_TRY(read_norm(src, c, p + "pre_feedforward_layernorm", L.ln2_w, L.ln2_b));
  } else if (c.parallel_residual) {
    // StableLM's parallel blocks read one norm for both sublayers.
    L.ln2_w = L.ln1_w;
    L.ln2_b = L.ln1_b;
  } else {
    HS_TRY(read_norm(src, c, p + "post_attention_layernorm", L.ln2_w, L.ln2_b));
  }
  if (c.fused_projections) {
    // Phi-3: qkv_proj [(H + 2G) dh, d], rows q, then k, then v.
    const int hq = c.n_head * c.d_head, hkv = c.n_kv_head * c.d_head;
    {
      HS_LET(qkv, src.linear(p + "self_attn.qkv_proj.weight", d, hq + 2 * hkv));
      L.W_Q = qkv.leftCols(hq);
      L.W_K = qkv.middleCols(hq, hkv);
      L.W_V = qkv.rightCols(hkv);
    }
    {
      HS_LET(o, src.linear(p + "self_attn.o_proj.weight", hq, d));
      L.W_O = std::move(o);
    }
    L.b_Q = RowVectorF::Zero(hq);
    L.b_K = L.b_V = RowVectorF::Zero(hkv);
    L.b_O = RowVectorF::Zero(d);
  } else {
    HS_TRY(read_split_attention(src, c, p + "self_attn.", "q_proj", "k_proj", "v_proj", "o_proj", L));
  }
  if (c.qk_norm_each_head) {
    // StableLM: one LayerNorm per head, q_layernorm.norms.{h}.weight [dh] each.
    const int dh = c.d_head;
    auto per_head = [&](const char* which, int n, RowVectorF& out) -> Status {
      out.resize(n * dh);
      for (int h = 0; h < n; ++h) {
        HS_LET(w, src.vec(p + "self_attn." + which + ".norms." + std::to_string(h) + ".weight", dh));
        out.segment(h * dh, dh) = w;
      }
      return Ok{};
    };
    HS_TRY(per_head("q_layernorm", c.n_head, L.q_norm_w));
    HS_TRY(per_head("k_layernorm", c.n_kv_head, L.k_norm_w));
  } else if (c.qk_norm != QkNorm::none) {
    const bool whole = c.qk_norm == QkNorm::whole;
    HS_LET(q, src.vec(p + "self_attn.q_norm.weight", whole ? c.n_head * c.d_head : c.d_head));
    L.q_norm_w = std::move(q);
    HS_LET(k, src.vec(p + "self_attn.k_norm.weight", whole ? c.n_kv_head * c.d_head : c.d_head));
    L.k_norm_w = std::move(k);
    if (c.norm_plus_one) {
      L.q_norm_w.array() += 1.f;
      L.k_norm_w.array() += 1.f;
    }
  }
  if (c.attention_only) return Ok{};
  if (c.fused_projections) {
    // Phi-3: gate_up_proj [2M, d], the gate's rows first.
    {
      HS_LET(gu, src.linear_parts(p + "mlp.gate_up_proj.weight", d, {m, m}));
      L.W_gate = std::move(gu[0]);
      L.W_in = std::move(gu[1]);
    }
    {
      HS_LET(w, src.weight_linear(p + "mlp.down_proj.weight", m, d));
      L.W_out = std::move(w);
    }
    L.b_in = L.b_gate = RowVectorF::Zero(m);
    L.b_out = RowVectorF::Zero(d);
    return Ok{};
  }
  HS_TRY(read_linear_mlp(src, c, p + "mlp.up_proj", p + "mlp.down_proj", L));
  {
    HS_LET(w, src.weight_linear(p + "mlp.gate_proj.weight", d, m));
    L.W_gate = std::move(w);
  }
  {
    HS_LET(b, src.vec_or(p + "mlp.gate_proj.bias", m, c.mlp_bias, 0.f));
    L.b_gate = std::move(b);
  }
  return Ok{};
}

Status read_neo_layer(TensorSource& src, const ModelConfig& c, int l, LayerWeights& L) {
  const std::string p = layer_name("h.", l, ".");
  HS_TRY(read_norm(src, c, p + "ln_1", L.ln1_w, L.ln1_b));
  HS_TRY(read_norm(src, c, p + "ln_2", L.ln2_w, L.ln2_b));
  HS_TRY(read_split_attention(src, c, p + "attn.attention.", "q_proj", "k_proj", "v_proj", "out_proj", L));
  if (c.attention_only) return Ok{};
  return read_linear_mlp(src, c, p + "mlp.c_fc", p + "mlp.c_proj", L);  // nn.Linear here, unlike GPT-2
}

Status read_bert_layer(TensorSource& src, const ModelConfig& c, int l, LayerWeights& L) {
  const std::string p = layer_name("encoder.layer.", l, ".");
  // Post-LN: ln1 follows attention, ln2 follows the MLP.
  HS_TRY(read_norm(src, c, p + "attention.output.LayerNorm", L.ln1_w, L.ln1_b));
  HS_TRY(read_norm(src, c, p + "output.LayerNorm", L.ln2_w, L.ln2_b));
  HS_TRY(read_split_attention(src, c, p + "attention.", "self.query", "self.key", "self.value", "output.dense", L));
  if (c.attention_only) return Ok{};
  return read_linear_mlp(src, c, p + "intermediate.dense", p + "output.dense", L);
}

Status read_opt_layer(TensorSource& src, const ModelConfig& c, int l, LayerWeights& L) {
  const std::string p = layer_name("layers.", l, ".");
  HS_TRY(read_norm(src, c, p + "self_attn_layer_norm", L.ln1_w, L.ln1_b));
  HS_TRY(read_norm(src, c, p + "final_layer_norm", L.ln2_w, L.ln2_b));
  HS_TRY(read_split_attention(src, c, p + "self_attn.", "q_proj", "k_proj", "v_proj", "out_proj", L));
  if (c.attention_only) return Ok{};
  return read_linear_mlp(src, c, p + "fc1", p + "fc2", L);
}

Status read_layer(TensorSource& src, const ModelConfig& c, int l, LayerWeights& L) {
  switch (c.family) {
    case Family::gpt2: return read_gpt2_layer(src, c, l, L);
    case Family::gpt_neox: return read_neox_layer(src, c, l, L);
    case Family::llama: return read_llama_layer(src, c, l, L);
    case Family::gpt_neo: return read_neo_layer(src, c, l, L);
    case Family::bert: return read_bert_layer(src, c, l, L);
    case Family::opt: return read_opt_layer(src, c, l, L);
  }
  return make_error(ErrorCode::bad_checkpoint, "model_from_checkpoint: unknown model family");
}

}  // namespace

std::int64_t checkpoint_scratch_values = std::int64_t{1} << 16;

namespace {

// One pattern of canonical tensor names (prefix stripped) per family.
struct FamilyPatterns {
  std::regex gpt2, neox, llama, neo, bert, opt;
};

bool matches(const FamilyPatterns& p, const ModelConfig& config, const std::string& name) {
  const std::string canon = canonical_name(name, prefixes_of(config.family));
  switch (config.family) {
    case Family::gpt2: return std::regex_match(canon, p.gpt2);
    case Family::gpt_neox: return std::regex_match(canon, p.neox);
    case Family::llama: return std::regex_match(canon, p.llama);
    case Family::gpt_neo: return std::regex_match(canon, p.neo);
    case Family::bert: return std::regex_match(canon, p.bert);
    case Family::opt: return std::regex_match(canon, p.opt);
  }
  return false;
}

}  // namespace

bool attention_tensor(const ModelConfig& config, const std::string& name) {
  // Each family's block norms and attention projections.
  static const FamilyPatterns patterns{
      std::regex(R"(h\.\d+\.(ln_1|ln_2|attn\.c_attn|attn\.c_proj)\.(weight|bias))"),
      std::regex(R"(layers\.\d+\.(input_layernorm|post_attention_layernorm|attention\.query_key_value|attention\.dense)\.(weight|bias))"),
      std::regex(R"(layers\.\d+\.(input_layernorm|post_attention_layernorm|pre_feedforward_layernorm|post_feedforward_layernorm|self_attn\.([qkvo]_proj|qkv_proj|[qk]_norm|[qk]_layernorm\.norms\.\d+))\.(weight|bias))"),
      std::regex(R"(h\.\d+\.(ln_1|ln_2|attn\.attention\.(q_proj|k_proj|v_proj|out_proj))\.(weight|bias))"),
      std::regex(R"(encoder\.layer\.\d+\.(attention\.self\.(query|key|value)|attention\.output\.(dense|LayerNorm)|output\.LayerNorm)\.(weight|bias))"),
      std::regex(R"(layers\.\d+\.(self_attn_layer_norm|final_layer_norm|self_attn\.(q_proj|k_proj|v_proj|out_proj))\.(weight|bias))")};
  return matches(patterns, config, name);
}

bool checkpoint_reads_tensor(const ModelConfig& config, const std::string& name, const CheckpointOptions& options) {
  static const std::regex buffer(
      R"((^|.*\.)(attn\.bias|attn\.masked_bias|attention\.bias|attention\.masked_bias|rotary_emb\.inv_freq|position_ids))");
  if (std::regex_match(name, buffer)) return false;
  // A multimodal checkpoint's vision parts (Gemma 3): never read.
  static const std::regex vision(R"((model\.)?(vision_tower|multi_modal_projector)\..*)");
  if (std::regex_match(name, vision)) return false;
  return !options.attention_only || attention_tensor(config, name);
}

std::vector<std::vector<ByteRange>> checkpoint_read_plan(const ModelConfig& config,
                                                         const std::vector<const SafetensorsFile*>& shards,
                                                         const CheckpointOptions& options) {
  std::vector<std::vector<ByteRange>> plan;
  for (const SafetensorsFile* file : shards) {
    std::vector<ByteRange> ranges;
    if (file) {
      const std::uint64_t start = 8 + file->header_size;
      for (const TensorInfo& t : file->tensors)
        if (t.end > t.begin && checkpoint_reads_tensor(config, t.name, options))
          ranges.push_back({start + t.begin, start + t.end});
      std::sort(ranges.begin(), ranges.end(), [](const ByteRange& a, const ByteRange& b) { return a.begin < b.begin; });
      std::size_t kept = 0;
      for (const ByteRange& r : ranges) {
        if (kept && ranges[kept - 1].end == r.begin)
          ranges[kept - 1].end = r.end;
        else
          ranges[kept++] = r;
      }
      ranges.resize(kept);
    }
    plan.push_back(std::move(ranges));
  }
  return plan;
}

bool keeps_stored_precision(const ModelConfig& config, const std::string& name) {
  // Each family's MLP matrices, embedding and unembedding: the WeightMatrix members of model.hpp.
  static const FamilyPatterns patterns{
      std::regex(R"((h\.\d+\.mlp\.(c_fc|c_proj)|wte|lm_head)\.weight)"),
      std::regex(R"((layers\.\d+\.mlp\.(dense_h_to_4h|dense_4h_to_h)|embed_in|embed_out)\.weight)"),
      std::regex(R"((layers\.\d+\.mlp\.(gate_proj|up_proj|down_proj|gate_up_proj)|embed_tokens|lm_head)\.weight)"),
      std::regex(R"((h\.\d+\.mlp\.(c_fc|c_proj)|wte|lm_head)\.weight)"),
      std::regex(R"((encoder\.layer\.\d+\.(intermediate\.dense|output\.dense)|embeddings\.word_embeddings|cls\.predictions\.decoder)\.weight)"),
      std::regex(R"((layers\.\d+\.(fc1|fc2)|embed_tokens|lm_head)\.weight)")};
  return matches(patterns, config, name);
}

std::uint64_t checkpoint_weight_bytes(const ModelConfig& config, const std::vector<const SafetensorsFile*>& shards,
                                      const CheckpointOptions& options) {
  std::uint64_t bytes = 0;
  for (const SafetensorsFile* file : shards)
    if (file)
      for (const TensorInfo& t : file->tensors)
        if (checkpoint_reads_tensor(config, t.name, options)) {
          const bool sixteen = (t.dtype == Dtype::BF16 || t.dtype == Dtype::F16) && keeps_stored_precision(config, t.name);
          bytes += (sixteen ? 2 : 4) * static_cast<std::uint64_t>(t.numel());
        }
  return bytes;
}

std::uint64_t model_weight_bytes(const ModelWeights& w) {
  std::uint64_t bytes = 0;
  auto add = [&](const auto& m) { bytes += 4 * static_cast<std::uint64_t>(m.size()); };
  add(w.W_pos), add(w.W_type), add(w.ln_embed_w), add(w.ln_embed_b), add(w.ln_final_w), add(w.ln_final_b);
  add(w.b_U), add(w.mlm_dense_W), add(w.mlm_dense_b), add(w.mlm_ln_w), add(w.mlm_ln_b);
  bytes += w.W_E.bytes() + w.W_U.bytes();
  for (const LayerWeights& L : w.layers) {
    for (const MatrixRM* m : {&L.W_Q, &L.W_K, &L.W_V, &L.W_O}) add(*m);
    for (const RowVectorF* v : {&L.b_Q, &L.b_K, &L.b_V, &L.b_O, &L.q_norm_w, &L.k_norm_w, &L.ln1_w, &L.ln1_b, &L.ln2_w,
                                &L.ln2_b, &L.ln1_post_w, &L.ln1_post_b, &L.ln2_post_w, &L.ln2_post_b, &L.b_in, &L.b_gate,
                                &L.b_out})
      add(*v);
    bytes += L.W_in.bytes() + L.W_gate.bytes() + L.W_out.bytes();
  }
  return bytes;
}

Result<Model> model_from_checkpoint(const ModelConfig& config, const std::vector<const SafetensorsFile*>& shards,
                                    const CheckpointOptions& options) {
  Model model;
  model.config = config;
  ModelConfig& c = model.config;
  c.attention_only = options.attention_only;
  ModelWeights& w = model.weights;
  const int d = c.d_model, V = c.d_vocab;
  if (c.n_layer <= 0 || d <= 0 || c.n_head <= 0 || c.n_kv_head <= 0 || c.d_head <= 0 || V <= 0 || c.n_ctx <= 0)
    return make_error(
        ErrorCode::bad_checkpoint,
        "model_from_checkpoint: the config has non-positive sizes (was it made by config_from_json?)");
  if (static_cast<int>(c.window.size()) != c.n_layer) c.window.assign(c.n_layer, 0);

  TensorSource src(c, model.warnings);
  HS_TRY(src.index(shards));

  if (c.attention_only) {
    c.has_lm_head = false;
    w.layers.resize(c.n_layer);
    for (int l = 0; l < c.n_layer; ++l) HS_TRY(read_layer(src, c, l, w.layers[l]));
    return model;
  }

  // Embeddings.
  const char* embed = nullptr;
  switch (c.family) {
    case Family::gpt2:
    case Family::gpt_neo: embed = "wte.weight"; break;
    case Family::gpt_neox: embed = "embed_in.weight"; break;
    case Family::llama:
    case Family::opt: embed = "embed_tokens.weight"; break;
    case Family::bert: embed = "embeddings.word_embeddings.weight"; break;
  }
  {
    HS_LET(m, src.weight_matrix(embed, V, d));
    w.W_E = std::move(m);
  }
  if (c.learned_positions) {
    const char* pos = c.family == Family::opt    ? "embed_positions.weight"
                      : c.family == Family::bert ? "embeddings.position_embeddings.weight"
                                                 : "wpe.weight";
    HS_LET(m, src.matrix(pos, c.n_ctx + c.position_offset, d));
    w.W_pos = std::move(m);
  }
  if (c.family == Family::bert) {
    {
      HS_LET(m, src.matrix("embeddings.token_type_embeddings.weight", c.type_vocab_size, d));
      w.W_type = std::move(m);
    }
    HS_TRY(read_norm(src, c, "embeddings.LayerNorm", w.ln_embed_w, w.ln_embed_b));
  }

  // Blocks.
  w.layers.resize(c.n_layer);
  for (int l = 0; l < c.n_layer; ++l) HS_TRY(read_layer(src, c, l, w.layers[l]));

  // Final norm.
  if (c.final_norm) {
    const char* fin = c.family == Family::gpt_neox ? "final_layer_norm"
                      : c.family == Family::llama  ? "norm"
                      : c.family == Family::opt    ? "final_layer_norm"
                                                   : "ln_f";
    HS_TRY(read_norm(src, c, fin, w.ln_final_w, w.ln_final_b));
  }

  // Unembedding. BERT's is the MLM head, when the checkpoint has one.
  const char* head = c.family == Family::gpt_neox ? "embed_out.weight"
                     : c.family == Family::bert   ? "cls.predictions.decoder.weight"
                                                  : "lm_head.weight";
  if (c.family == Family::bert) {
    c.has_lm_head = src.has("cls.predictions.transform.dense.weight");
    if (c.has_lm_head) {
      {
        HS_LET(m, src.linear("cls.predictions.transform.dense.weight", d, d));
        w.mlm_dense_W = std::move(m);
      }
      {
        HS_LET(b, src.vec("cls.predictions.transform.dense.bias", d));
        w.mlm_dense_b = std::move(b);
      }
      HS_TRY(read_norm(src, c, "cls.predictions.transform.LayerNorm", w.mlm_ln_w, w.mlm_ln_b));
      const char* bias = src.has("cls.predictions.bias") ? "cls.predictions.bias" : "cls.predictions.decoder.bias";
      if (src.has(bias)) {
        HS_LET(b, src.vec(bias, V));
        w.b_U = std::move(b);
      }
    }
  } else {
    c.has_lm_head = true;
  }
  if (c.has_lm_head) {
    if (!c.tied_embeddings && src.has(head)) {
      HS_LET(m, src.weight_linear(head, d, V));
      w.W_U = std::move(m);
    } else {
      if (!c.tied_embeddings)
        model.warnings.push_back(std::string("checkpoint has no '") + head +
                                 "' although tie_word_embeddings is false: using the input embedding as the unembedding");
      w.W_U = WeightMatrix();  // tied: the unembedding is W_E^T, read in place (unembed_tied)
    }
    if (w.b_U.size() == 0) w.b_U = RowVectorF::Zero(V);
  }
  return model;
}

}  // namespace hs
