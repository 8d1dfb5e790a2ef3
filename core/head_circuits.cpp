// Heads as factored matrices; see head_circuits.hpp.
#include "head_circuits.hpp"

#include <string>
#include <vector>

#include "decompositions.hpp"
#include "parallel.hpp"
#include "progress.hpp"

namespace hs {

// ---------------------------------------------------------------------------
// Circuits and subspaces

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

Status check_heads(const Model& model) {
  const ModelConfig& c = model.config;
  if (c.n_head <= 0 || c.d_head <= 0 || c.d_model <= 0 || c.n_kv_head <= 0 || c.n_head % c.n_kv_head != 0) {
    return make_error("model config has no valid head layout (n_head " + std::to_string(c.n_head) + ", n_kv_head " +
                      std::to_string(c.n_kv_head) + ", d_head " + std::to_string(c.d_head) + ")");
  }
  if (model.weights.layers.empty()) return make_error("model has no layers");
  return Ok{};
}

Status check_geometry(const Model& model, WeightVariant variant) {
  HS_TRY(check_heads(model));
  if (variant == WeightVariant::processed) HS_TRY(check_weight_processing(model.config));
  return Ok{};
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

namespace {

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

}  // namespace

Result<MatrixRMd> subspace_factor(const Model& model, WeightVariant variant, int layer, int head, HeadSubspace kind) {
  auto M = head_matrix(model, variant, layer, head, subspace_matrix(kind));
  if (!M || kind != HeadSubspace::output_write) return M;
  return MatrixRMd(M->transpose());
}

Result<MatrixRM> subspace_factor_f(const Model& model, WeightVariant variant, int layer, int head, HeadSubspace kind) {
  auto M = head_matrix_f(model, variant, layer, head, subspace_matrix(kind));
  if (!M || kind != HeadSubspace::output_write) return M;
  return MatrixRM(M->transpose());
}

// ---------------------------------------------------------------------------
// Reading every head in turn

Status LayerBlocks::read(const Model& model, int l) {
  layer = -1;
  HS_TRY(raw_layer_blocks(model, l, HeadMatrix::W_Q, q));
  HS_TRY(raw_layer_blocks(model, l, HeadMatrix::W_K, k));
  HS_TRY(raw_layer_blocks(model, l, HeadMatrix::W_V, v));
  layer = l;
  return Ok{};
}

namespace {

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

}  // namespace

Status for_each_head(const Model& model, WeightVariant variant, const std::function<void(int, HeadWork&)>& each,
                     const std::function<bool(double)>& layer_done) {
  const int L = static_cast<int>(model.weights.layers.size()), H = model.config.n_head;
  LayerBlocks layer;
  std::vector<Status> status(static_cast<std::size_t>(H), Ok{});
  for (int l = 0; l < L; ++l) {
    if (variant == WeightVariant::raw) HS_TRY(layer.read(model, l));
    parallel_for(H, [&](std::ptrdiff_t h0, std::ptrdiff_t h1) {
      for (int h = static_cast<int>(h0); h < h1; ++h) {
        auto b = head_blocks(model, variant, l, h, layer);
        if (!b) {
          status[h] = b.error();
          continue;
        }
        HeadWork w{std::move(*b), {}, {}, {}, {}, {}, {}, {}, {}};
        w.S_Q = psd_sqrt_factor(w.b.G_Q, &w.p_Q);
        w.S_K = psd_sqrt_factor(w.b.G_K, &w.p_K);
        w.S_V = psd_sqrt_factor(w.b.G_V, &w.p_V);
        w.S_O = psd_sqrt_factor(w.b.G_O, &w.p_O);
        each(l * H + h, w);
      }
    });
    for (const Status& s : status) HS_TRY(s);
    if (!layer_done(double(l + 1) / L)) return cancelled_error();
  }
  return Ok{};
}

}  // namespace hs
