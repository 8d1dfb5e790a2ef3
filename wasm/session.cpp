#include "session.hpp"

#include <cstdio>

namespace hs_wasm {

val model_info(const hs::Model& model) {
  const hs::ModelConfig& c = model.config;
  val out = val::object();
  out.set("model_type", c.model_type);
  out.set("family", std::string(hs::family_name(c.family)));
  out.set("n_layer", c.n_layer);
  out.set("n_head", c.n_head);
  out.set("n_kv_head", c.n_kv_head);
  out.set("d_model", c.d_model);
  out.set("d_head", c.d_head);
  out.set("d_mlp", c.d_mlp);
  out.set("d_vocab", c.d_vocab);
  out.set("n_ctx", c.n_ctx);
  out.set("causal", c.causal);
  out.set("has_lm_head", c.has_lm_head);
  out.set("rotary_dim", c.rotary_dim);
  out.set("learned_positions", hs::has_position_matrix(c));
  out.set("bos_token_id", c.bos_token_id);
  out.set("attention_only", c.attention_only);
  // What the weights take in memory (16-bit matrices included as such).
  out.set("weight_bytes", static_cast<double>(hs::model_weight_bytes(model.weights)));
  out.set("warnings", string_list(model.warnings));
  return out;
}

val Session::add_file(const std::string& name, val header, double size) {
  if (!(size >= 0) || size > 9007199254740991.0)
    return error_value(hs::make_error(name + ": file size " + std::to_string(size) + " is not possible"));
  const auto bytes = emscripten::convertJSArrayToNumberVector<std::uint8_t>(header);
  auto parsed = hs::safetensors_parse_header(bytes.data(), bytes.size(), static_cast<std::uint64_t>(size), name);
  if (!parsed) return error_value(parsed.error());
  hs::SafetensorsFile file = std::move(parsed.value());
  file.data = nullptr;  // only the header is here (even for a file with no tensor data)
  files_.insert_or_assign(name, std::move(file));
  return ok_value();
}

namespace {

hs::CheckpointOptions checkpoint_options_of(val options) {
  hs::CheckpointOptions out;
  out.attention_only = !options.isUndefined() && !options.isNull() && options["attention_only"].isTrue();
  return out;
}

// wasm32 memory ends at 4 GiB; the weights may take 3 of them, the rest is
// for the runs and analyses.
constexpr std::uint64_t kWeightBudget = std::uint64_t{3} << 30;

std::string gigabytes(std::uint64_t bytes) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f GB", static_cast<double>(bytes) / 1e9);
  return text;
}

// Whether the weights fit in kWeightBudget: a too_large error naming their
// size when not.
hs::Status fits_in_memory(const hs::ModelConfig& config, const std::vector<const hs::SafetensorsFile*>& shards,
                          const hs::CheckpointOptions& options) {
  const std::uint64_t weights = hs::checkpoint_weight_bytes(config, shards, options);
  if (weights <= kWeightBudget) return hs::Ok{};
  return hs::make_error(hs::ErrorCode::too_large,
                        "this model's weights take " + gigabytes(weights) +
                            " in memory (16-bit checkpoints keep their MLPs and embeddings in 16 bits, the rest is "
                            "float32); the browser's wasm memory (4 GB) leaves room for " +
                            gigabytes(kWeightBudget) +
                            (options.attention_only ? "" : ": try \"attention weights only\""));
}

}  // namespace

val Session::read_plan(const std::string& config_json, val options) {
  auto config = hs::config_from_json(config_json);
  if (!config) return error_value(config.error());
  std::vector<const hs::SafetensorsFile*> shards;
  for (const auto& entry : files_) shards.push_back(&entry.second);
  const hs::CheckpointOptions checkpoint_options = checkpoint_options_of(options);
  // Refused from the headers, before any weight is fetched.
  if (auto fits = fits_in_memory(config.value(), shards, checkpoint_options); !fits) return error_value(fits.error());
  const auto plan = hs::checkpoint_read_plan(config.value(), shards, checkpoint_options);
  val files = val::array();
  std::size_t i = 0;
  for (const auto& entry : files_) {
    std::vector<double> ranges;
    for (const hs::ByteRange& r : plan[i++]) {
      ranges.push_back(static_cast<double>(r.begin));
      ranges.push_back(static_cast<double>(r.end));
    }
    val file = val::object();
    file.set("name", entry.first);
    file.set("ranges", float64_copy(ranges));
    files.call<void>("push", file);
  }
  val out = ok_value();
  out.set("files", files);
  return out;
}

val Session::load(const std::string& config_json, val read, val options) {
  model_.reset();
  edits = {};
  std::map<std::string, hs::SafetensorsFile> files;
  files.swap(files_);
  auto config = hs::config_from_json(config_json);
  if (!config) return error_value(config.error());
  if (files.empty()) return error_value(hs::make_error("no .safetensors file was given"));

  std::vector<const hs::SafetensorsFile*> shards;
  for (auto& [name, shard] : files) {
    const std::uint64_t start = 8 + shard.header_size;
    const std::string file_name = name;
    shard.reader = [read, file_name, start](std::uint64_t offset, std::size_t n, std::uint8_t* out) -> hs::Status {
      // The view is made just before the call: nothing can grow memory until JS returns.
      val problem = read(file_name, static_cast<double>(start + offset), val(emscripten::typed_memory_view(n, out)));
      if (problem.isUndefined() || problem.isNull()) return hs::Ok{};
      return hs::make_error(hs::ErrorCode::bad_file,
                            file_name + ": " + (problem.isString() ? problem.as<std::string>() : std::string("cannot be read")));
    };
    shards.push_back(&shard);
  }
  if (auto fits = fits_in_memory(config.value(), shards, checkpoint_options_of(options)); !fits)
    return error_value(fits.error());
  auto model = hs::model_from_checkpoint(config.value(), shards, checkpoint_options_of(options));
  if (!model) return error_value(model.error());
  model_ = std::make_unique<hs::Model>(std::move(model.value()));

  val out = ok_value();
  out.set("info", model_info(*model_));
  return out;
}

val Session::info() const {
  if (!model_) return error_value(hs::make_error(hs::ErrorCode::no_model, "no model is loaded"));
  val out = ok_value();
  out.set("info", model_info(*model_));
  return out;
}

val Session::run(val ids_js, val options) {
  if (!model_) return error_value(hs::make_error(hs::ErrorCode::no_model, "no model is loaded"));
  const auto ids = emscripten::convertJSArrayToNumberVector<int>(ids_js);
  hs::RunOptions run_options;
  run_options.want_hidden = false;
  run_options.want_logits = false;
  if (!options.isUndefined() && !options.isNull()) {
    val gate = options["head_gate"];
    if (!gate.isUndefined() && !gate.isNull())
      run_options.head_gate = emscripten::convertJSArrayToNumberVector<float>(gate);
    if (options["want_hidden"].isTrue()) run_options.want_hidden = true;
    if (options["want_logits"].isTrue()) run_options.want_logits = true;
  }
  auto result = hs::run_edited(*model_, ids, edits, run_options);
  if (!result) return error_value(result.error());
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

}  // namespace hs_wasm
