// Embind bindings: the glue between JS values and the core's functions, and
// the EMSCRIPTEN_BINDINGS table. The core knows nothing of JavaScript; see
// session.hpp for the conventions ({ok, error}, typed-array copies).
#include <emscripten/bind.h>
#include <emscripten/val.h>

#include <Eigen/SVD>
#include <string>
#include <vector>

#include "geometry.hpp"
#include "linalg.hpp"
#include "processing.hpp"
#include "safetensors.hpp"
#include "session.hpp"

namespace hs_wasm {
namespace {

// Singular values of a rows x cols row-major matrix (the worker pipe's check).
val singular_values(val matrix, int rows, int cols) {
  if (rows <= 0 || cols <= 0) return error_value("singular_values: rows and cols must be positive");
  const auto data = emscripten::convertJSArrayToNumberVector<float>(matrix);
  if (data.size() != static_cast<std::size_t>(rows) * static_cast<std::size_t>(cols))
    return error_value("singular_values: expected " + std::to_string(rows * cols) + " numbers, got " +
                       std::to_string(data.size()));
  hs::ConstMapRM m(data.data(), rows, cols);
  Eigen::JacobiSVD<hs::MatrixRM> svd(m);
  const Eigen::VectorXf s = svd.singularValues();
  val out = ok_value();
  out.set("values", typed_copy("Float32Array", s.data(), static_cast<std::size_t>(s.size())));
  return out;
}

// Validates the first 8 + N bytes of a safetensors file of `file_size` bytes
// (what two Range requests return) and lists its tensors, so that JS can
// fetch only the tensors a model reads.
val parse_safetensors_header(val bytes_js, double file_size, const std::string& name) {
  const auto bytes = emscripten::convertJSArrayToNumberVector<std::uint8_t>(bytes_js);
  auto file = hs::safetensors_parse_header(bytes.data(), bytes.size(), static_cast<std::uint64_t>(file_size), name);
  if (!file) return error_value(file.error().message);
  nlohmann::json tensors = nlohmann::json::array();
  for (const hs::TensorInfo& t : file->tensors)
    tensors.push_back({{"name", t.name}, {"dtype", hs::dtype_name(t.dtype)}, {"shape", t.shape},
                       {"begin", t.begin}, {"end", t.end}});
  val out = ok_value();
  out.set("header_size", static_cast<double>(file->header_size));
  out.set("tensors", tensors.dump());
  out.set("metadata", nlohmann::json(file->metadata).dump());
  return out;
}

// ---------------------------------------------------------------------------
// Weight geometry (core/geometry.hpp)

hs::Result<hs::WeightVariant> variant_of(const std::string& name) {
  if (name == "raw") return hs::WeightVariant::raw;
  if (name == "processed") return hs::WeightVariant::processed;
  return hs::make_error("weight variant must be \"raw\" or \"processed\", not \"" + name + "\"");
}

hs::Result<hs::HeadSubspace> subspace_of(const std::string& name) {
  if (name == "Q") return hs::HeadSubspace::query_read;
  if (name == "K") return hs::HeadSubspace::key_read;
  if (name == "V") return hs::HeadSubspace::value_read;
  if (name == "O") return hs::HeadSubspace::output_write;
  return hs::make_error("subspace must be one of Q, K, V, O, not \"" + name + "\"");
}

// A JS progress callback (fraction) -> boolean|undefined; false cancels.
hs::GeometryProgress progress_of(val callback) {
  if (callback.isUndefined() || callback.isNull()) return {};
  return [callback](double fraction) { return !callback(fraction).isFalse(); };
}

#define HS_WASM_MODEL(session)                                    \
  const hs::Model* model = (session).model();                     \
  if (!model) return error_value("no model is loaded");

#define HS_WASM_UNWRAP(var, expr)                     \
  auto var = (expr);                                  \
  if (!var) return error_value(var.error().message);

val circuit_spectra_value(const hs::CircuitSpectra& c) {
  val out = val::object();
  out.set("sigma", float64_copy(c.sigma));
  out.set("frobenius", float64_copy(c.frobenius));
  out.set("effective_rank", float64_copy(c.effective_rank));
  out.set("top1_share", float64_copy(c.top1_share));
  out.set("topk_share", float64_copy(c.topk_share));
  return out;
}

val geometry_spectra(Session& session, const std::string& variant_name, int top_k, val progress) {
  HS_WASM_MODEL(session);
  HS_WASM_UNWRAP(variant, variant_of(variant_name));
  HS_WASM_UNWRAP(spectra, hs::head_spectra(*model, variant.value(), top_k, progress_of(progress)));
  val out = ok_value();
  out.set("variant", variant_name);
  out.set("n_layer", spectra->n_layer);
  out.set("n_head", spectra->n_head);
  out.set("d_head", spectra->d_head);
  out.set("top_k", spectra->top_k);
  out.set("qk_ignores_rotary", spectra->qk_ignores_rotary);
  out.set("ov", circuit_spectra_value(spectra->ov));
  out.set("qk", circuit_spectra_value(spectra->qk));
  return out;
}

val geometry_redundancy(Session& session, const std::string& variant_name, const std::string& kind_name,
                        val progress) {
  HS_WASM_MODEL(session);
  HS_WASM_UNWRAP(variant, variant_of(variant_name));
  HS_WASM_UNWRAP(kind, subspace_of(kind_name));
  HS_WASM_UNWRAP(matrix, hs::subspace_redundancy(*model, variant.value(), kind.value(), progress_of(progress)));
  val out = ok_value();
  out.set("variant", variant_name);
  out.set("kind", kind_name);
  out.set("n_layer", matrix->n_layer);
  out.set("n_head", matrix->n_head);
  out.set("overlap", float64_copy(matrix->overlap));
  out.set("rank", int32_copy(matrix->rank));
  return out;
}

val geometry_composition(Session& session, const std::string& variant_name, int baseline_samples, val progress) {
  HS_WASM_MODEL(session);
  HS_WASM_UNWRAP(variant, variant_of(variant_name));
  HS_WASM_UNWRAP(scores, hs::composition_scores(*model, variant.value(), progress_of(progress)));
  HS_WASM_UNWRAP(baseline, hs::composition_baseline(model->config.d_model, model->config.d_head, baseline_samples));
  val out = ok_value();
  out.set("variant", variant_name);
  out.set("n_layer", scores->n_layer);
  out.set("n_head", scores->n_head);
  out.set("qk_ignores_rotary", scores->qk_ignores_rotary);
  out.set("q", float64_copy(scores->q));
  out.set("k", float64_copy(scores->k));
  out.set("v", float64_copy(scores->v));
  val base = val::object();
  base.set("mean", baseline->mean);
  base.set("std", baseline->std);
  base.set("n_samples", baseline->n_samples);
  base.set("seed", static_cast<double>(baseline->seed));
  out.set("baseline", base);
  return out;
}

val geometry_merge_candidates(Session& session, const std::string& variant_name, int top_n, val progress) {
  HS_WASM_MODEL(session);
  HS_WASM_UNWRAP(variant, variant_of(variant_name));
  HS_WASM_UNWRAP(merges, hs::merge_candidates(*model, variant.value(), top_n, progress_of(progress)));
  nlohmann::json pairs = nlohmann::json::array();
  for (const auto& p : merges->pairs)
    pairs.push_back({{"layer_a", p.layer_a}, {"head_a", p.head_a}, {"layer_b", p.layer_b}, {"head_b", p.head_b},
                     {"write_overlap", p.write_overlap}, {"read_overlap", p.read_overlap}, {"combined", p.combined}});
  val out = ok_value();
  out.set("variant", variant_name);
  out.set("pairs", pairs.dump());
  return out;
}

nlohmann::json token_scores_json(const std::vector<hs::TokenScore>& scores) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& s : scores) out.push_back({{"token", s.token}, {"cosine", s.cosine}, {"dot", s.dot}});
  return out;
}

val geometry_readout(Session& session, const std::string& variant_name, int layer, int head, int n_directions,
                     int top_n) {
  HS_WASM_MODEL(session);
  HS_WASM_UNWRAP(variant, variant_of(variant_name));
  HS_WASM_UNWRAP(readout, hs::ov_token_readout(*model, variant.value(), layer, head, n_directions, top_n));
  nlohmann::json directions = nlohmann::json::array();
  for (const auto& d : readout->directions)
    directions.push_back({{"sigma", d.sigma},
                          {"read_top", token_scores_json(d.read_top)},
                          {"read_bottom", token_scores_json(d.read_bottom)},
                          {"write_top", token_scores_json(d.write_top)},
                          {"write_bottom", token_scores_json(d.write_bottom)}});
  val out = ok_value();
  out.set("variant", variant_name);
  out.set("directions", directions.dump());
  return out;
}

val geometry_pair(Session& session, const std::string& variant_name, int layer_a, int head_a,
                  const std::string& kind_a, int layer_b, int head_b, const std::string& kind_b) {
  HS_WASM_MODEL(session);
  HS_WASM_UNWRAP(variant, variant_of(variant_name));
  HS_WASM_UNWRAP(a, subspace_of(kind_a));
  HS_WASM_UNWRAP(b, subspace_of(kind_b));
  HS_WASM_UNWRAP(pair, hs::head_pair_geometry(*model, variant.value(), layer_a, head_a, a.value(), layer_b, head_b,
                                              b.value()));
  val out = ok_value();
  out.set("variant", variant_name);
  out.set("theta", float64_copy(pair->angles.theta));
  out.set("rank_a", pair->angles.rank_a);
  out.set("rank_b", pair->angles.rank_b);
  out.set("overlap", pair->overlap);
  return out;
}

val geometry_copying(Session& session, const std::string& variant_name, val progress) {
  HS_WASM_MODEL(session);
  HS_WASM_UNWRAP(variant, variant_of(variant_name));
  auto cached = session.unembed_embed.find(variant.value());
  if (cached == session.unembed_embed.end()) {
    HS_WASM_UNWRAP(product, hs::unembed_embed_product(*model, variant.value(), progress_of(progress)));
    cached = session.unembed_embed.emplace(variant.value(), std::move(product.value())).first;
  }
  HS_WASM_UNWRAP(copying, hs::ov_copying_scores(*model, variant.value(), cached->second));
  val out = ok_value();
  out.set("variant", variant_name);
  out.set("copying_score", float64_copy(copying->copying_score));
  out.set("positive_fraction", float64_copy(copying->positive_fraction));
  return out;
}

}  // namespace
}  // namespace hs_wasm

EMSCRIPTEN_BINDINGS(headscope) {
  using namespace hs_wasm;
  emscripten::function("singular_values", &singular_values);
  emscripten::function("parse_safetensors_header", &parse_safetensors_header);
  emscripten::class_<Session>("Session")
      .constructor<>()
      .function("file_buffer", &Session::file_buffer)
      .function("load", &Session::load)
      .function("info", &Session::info)
      .function("run", &Session::run)
      .function("clear_files", &Session::clear_files)
      .function("geometry_spectra", &geometry_spectra)
      .function("geometry_redundancy", &geometry_redundancy)
      .function("geometry_composition", &geometry_composition)
      .function("geometry_merge_candidates", &geometry_merge_candidates)
      .function("geometry_readout", &geometry_readout)
      .function("geometry_pair", &geometry_pair)
      .function("geometry_copying", &geometry_copying);
}
