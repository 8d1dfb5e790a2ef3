// Embind bindings of the core, and nothing else: the core knows nothing of
// JavaScript. Results cross the boundary as plain objects {ok, error, ...};
// wasm/headscope.mjs turns them into a thrown HeadscopeError. Arrays cross as
// JS-owned typed-array copies, so no view of wasm memory outlives a call that
// may grow (and so detach) it — except file_buffer's, which the caller fills
// at once.
#include <emscripten/bind.h>
#include <emscripten/val.h>

#include <Eigen/SVD>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "forward.hpp"
#include "linalg.hpp"
#include "model.hpp"
#include "safetensors.hpp"

using emscripten::val;

namespace {

val error_value(const std::string& message) {
  val out = val::object();
  out.set("ok", false);
  out.set("error", message);
  return out;
}

val ok_value() {
  val out = val::object();
  out.set("ok", true);
  return out;
}

val float32_copy(const float* data, std::size_t n) {
  return val::global("Float32Array").new_(emscripten::typed_memory_view(n, data));
}

val float32_copy(const std::vector<float>& v) { return float32_copy(v.data(), v.size()); }

// Singular values of a rows x cols row-major matrix: the foundation's
// end-to-end check that the page, the worker and the core agree.
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
  out.set("values", float32_copy(s.data(), static_cast<std::size_t>(s.size())));
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

// The model description the page and the CLI show.
nlohmann::json model_info(const hs::Model& model) {
  const hs::ModelConfig& c = model.config;
  return {{"model_type", c.model_type},
          {"family", hs::family_name(c.family)},
          {"n_layer", c.n_layer},
          {"n_head", c.n_head},
          {"n_kv_head", c.n_kv_head},
          {"d_model", c.d_model},
          {"d_head", c.d_head},
          {"d_mlp", c.d_mlp},
          {"d_vocab", c.d_vocab},
          {"n_ctx", c.n_ctx},
          {"causal", c.causal},
          {"has_lm_head", c.has_lm_head},
          {"rotary_dim", c.rotary_dim},
          {"bos_token_id", c.bos_token_id},
          {"warnings", model.warnings}};
}

// One loaded model and the files it came from. JS places each file's bytes
// in a buffer the session owns (one copy into wasm memory), then calls load;
// the buffers are released once the canonical weights are built.
class Session {
 public:
  // A Uint8Array view of a new buffer of `size` bytes for file `name`. Fill
  // it before making any other call.
  val file_buffer(const std::string& name, double size) {
    if (!(size >= 0) || size > 4294967295.0) return error_value(name + ": file size " + std::to_string(size) + " is not possible");
    auto& buffer = files_[name];
    buffer.assign(static_cast<std::size_t>(size), 0);
    val out = ok_value();
    out.set("view", val(emscripten::typed_memory_view(buffer.size(), buffer.data())));
    return out;
  }

  // Builds the model from config.json text and every buffered .safetensors
  // file (a single file or all shards).
  val load(const std::string& config_json) {
    model_.reset();
    auto config = hs::config_from_json(config_json);
    if (!config) return fail("config.json: " + config.error().message);

    std::vector<hs::SafetensorsFile> shards;
    for (const auto& [name, bytes] : files_) {
      auto file = hs::safetensors_parse(bytes.data(), bytes.size(), name);
      if (!file) return fail(file.error().message);
      shards.push_back(std::move(file.value()));
    }
    if (shards.empty()) return fail("no .safetensors file was given");
    std::vector<const hs::SafetensorsFile*> pointers;
    for (const auto& shard : shards) pointers.push_back(&shard);
    auto model = hs::model_from_checkpoint(config.value(), pointers);
    files_.clear();
    if (!model) return error_value(model.error().message);
    model_ = std::make_unique<hs::Model>(std::move(model.value()));

    val out = ok_value();
    out.set("info", model_info(*model_).dump());
    return out;
  }

  val info() const {
    if (!model_) return error_value("no model is loaded");
    val out = ok_value();
    out.set("info", model_info(*model_).dump());
    return out;
  }

  // Runs the model on token ids. options: {head_gate?: number[L*H]}.
  val run(val ids_js, val options) {
    if (!model_) return error_value("no model is loaded");
    const auto ids = emscripten::convertJSArrayToNumberVector<int>(ids_js);
    hs::RunOptions run_options;
    if (!options.isUndefined() && !options.isNull()) {
      val gate = options["head_gate"];
      if (!gate.isUndefined() && !gate.isNull())
        run_options.head_gate = emscripten::convertJSArrayToNumberVector<float>(gate);
      val hidden = options["want_hidden"];
      run_options.want_hidden = hidden.isUndefined() ? false : hidden.as<bool>();
      val logits = options["want_logits"];
      run_options.want_logits = logits.isUndefined() ? false : logits.as<bool>();
    } else {
      run_options.want_hidden = false;
      run_options.want_logits = false;
    }
    auto result = hs::run_model(*model_, ids, run_options);
    if (!result) return error_value(result.error().message);
    const hs::RunResult& r = result.value();
    val out = ok_value();
    out.set("n_layer", r.n_layer);
    out.set("n_head", r.n_head);
    out.set("n_tokens", r.n_tokens);
    out.set("patterns", float32_copy(r.patterns));
    out.set("token_loss", float32_copy(r.token_loss));
    out.set("loss", r.loss);
    if (run_options.want_hidden) out.set("hidden", float32_copy(r.hidden));
    if (run_options.want_logits) out.set("logits", float32_copy(r.logits));
    return out;
  }

  void clear_files() { files_.clear(); }

 private:
  val fail(const std::string& message) {
    files_.clear();
    return error_value(message);
  }

  std::map<std::string, std::vector<std::uint8_t>> files_;
  std::unique_ptr<hs::Model> model_;
};

}  // namespace

EMSCRIPTEN_BINDINGS(headscope) {
  emscripten::function("singular_values", &singular_values);
  emscripten::function("parse_safetensors_header", &parse_safetensors_header);
  emscripten::class_<Session>("Session")
      .constructor<>()
      .function("file_buffer", &Session::file_buffer)
      .function("load", &Session::load)
      .function("info", &Session::info)
      .function("run", &Session::run)
      .function("clear_files", &Session::clear_files);
}
