// Families without a Hugging Face oracle fixture, against independent
// float64 numpy forwards written from transformers' modeling code
// (tests/reference/families_reference.py says which file each follows) on
// small random checkpoints with the hub's tensor names and config fields:
// attentions within 1e-5, hidden states and logits within 1e-4. And the
// messages for configs and checkpoints that break the family's rules.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>
#include <string>

#include "checkpoint.hpp"
#include "fixture_model.hpp"
#include "forward.hpp"
#include "geometry.hpp"
#include "patching.hpp"
#include "safetensors.hpp"

using namespace hs;
using namespace hs::test;

#ifdef HEADSCOPE_FAMILIES_REF
namespace {

std::string case_dir(const std::string& name) { return std::string(HEADSCOPE_FAMILIES_REF) + "/" + name; }

Result<Model> load_case(const std::string& name, const std::string& config_text) {
  auto config = config_from_json(config_text);
  if (!config.ok()) return config.error();
  auto bytes = safetensors_read_bytes(case_dir(name) + "/model.safetensors");
  if (!bytes.ok()) return bytes.error();
  auto file = safetensors_parse(bytes->data(), bytes->size(), "model.safetensors");
  if (!file.ok()) return file.error();
  return model_from_checkpoint(*config, {&*file});
}

std::string config_text(const std::string& name) { return must(read_text_file(case_dir(name) + "/config.json")); }

void check_against(const std::string& name, const std::string& what, const std::vector<float>& got, double tol) {
  const NpyArray want = must(npy_load(case_dir(name) + "/" + what + ".npy"));
  const Mismatch m = compare_arrays(got, want.data, tol);
  INFO(name << " " << what << " (tolerance " << tol << "): " << m.describe(want.shape));
  CHECK(m.same_size);
  CHECK(m.max_abs <= tol);
}

}  // namespace

std::vector<int> case_ids(const std::string& name) {
  std::vector<int> ids;
  for (double v : must(npy_load(case_dir(name) + "/input_ids.npy")).data) ids.push_back(static_cast<int>(v));
  return ids;
}

void check_forward(const std::string& name, const Model& model) {
  const RunResult run = must(run_model(model, case_ids(name)));
  check_against(name, "attentions", run.patterns, 1e-5);
  check_against(name, "hidden_states", run.hidden, 1e-4);
  check_against(name, "logits", run.logits, 1e-4);
}

// The case's direct logit attribution of logit 5 - logit 9, checked to add
// up to its total at every position.
DirectLogitAttribution checked_dla(const Model& model, const std::string& name) {
  PatchMetric m;
  m.answer = 5;
  m.wrong = 9;
  const std::vector<int> ids = case_ids(name);
  const DirectLogitAttribution dla = must(direct_logit_attribution(model, ids, m));
  const int L = model.config.n_layer, H = model.config.n_head, T = static_cast<int>(ids.size());
  for (int t = 0; t < T; ++t) {
    double sum = dla.embed[t] + dla.bias[t], size = std::fabs(sum);
    for (int l = 0; l < L; ++l) {
      for (int h = 0; h < H; ++h) sum += dla.heads[(l * H + h) * T + t], size += std::fabs(dla.heads[(l * H + h) * T + t]);
      sum += dla.attn_bias[l * T + t] + dla.mlp[l * T + t] + dla.edit_paths[l * T + t];
      size += std::fabs(dla.mlp[l * T + t]);
    }
    INFO(name << " position " << t << ": parts " << sum << ", total " << dla.total[t]);
    CHECK(std::fabs(sum - dla.total[t]) <= 1e-5 * (1 + size));
  }
  return dla;
}

TEST_CASE("families: Qwen3 (per-head q/k norm, head_dim of its own, GQA) matches its numpy forward", "[families]") {
  const Model model = must(load_case("qwen3", config_text("qwen3")));
  CHECK(model.config.qk_norm == QkNorm::per_head);
  CHECK(model.config.d_head == 24);
  CHECK(model.config.n_kv_head == 2);
  CHECK_FALSE(model.config.qkv_bias);
  // Qwen3Config's head_dim defaults to 128, not hidden_size / heads.
  nlohmann::json q = nlohmann::json::parse(config_text("qwen3"));
  q.erase("head_dim");
  CHECK(must(config_from_json(q.dump())).d_head == 128);
  check_forward("qwen3", model);
  // The weight geometry runs, and says that QK leaves the q/k norm out.
  const HeadSpectra s = must(head_spectra(model, WeightVariant::raw, 4));
  CHECK(s.qk_ignores_qk_norm);
  CHECK(s.qk_ignores_rotary);
}

TEST_CASE("families: OLMo 2 (norms after the sublayers, q/k norm over the projections) matches its numpy forward",
          "[families]") {
  const Model model = must(load_case("olmo2", config_text("olmo2")));
  CHECK(model.config.norm_after_sublayer);
  CHECK(model.config.qk_norm == QkNorm::whole);
  CHECK(model.config.n_kv_head == 2);     // the k norm spans G * dh, not H * dh
  CHECK(model.config.bos_token_id == -1);  // "bos_token_id": null
  // Olmo2Config's defaults: rms_norm_eps 1e-5 when the field is absent.
  nlohmann::json c = nlohmann::json::parse(config_text("olmo2"));
  c.erase("rms_norm_eps");
  c.erase("bos_token_id");
  const ModelConfig defaults = must(config_from_json(c.dump()));
  CHECK(defaults.norm_eps == 1e-5f);
  CHECK(defaults.bos_token_id == -1);
  check_forward("olmo2", model);
  // No norm before the sublayers: the processed variant is not defined, and says so.
  auto processed = head_spectra(model, WeightVariant::processed, 4);
  REQUIRE_FALSE(processed.ok());
  CHECK(processed.error().message.find("after the attention") != std::string::npos);
  const HeadSpectra raw = must(head_spectra(model, WeightVariant::raw, 4));
  CHECK(raw.qk_ignores_qk_norm);
  CHECK(raw.ov_ignores_post_norm);
  // Direct logit attribution through the norm after the attention (its scale
  // frozen): the parts sum to the logit difference at every position.
  checked_dla(model, "olmo2");
}

TEST_CASE("families: SmolLM3 (NoPE every 4th layer, tied embeddings) matches its numpy forward", "[families]") {
  const Model model = must(load_case("smollm3", config_text("smollm3")));
  CHECK(model.config.rope_layers == std::vector<int>{1, 1, 1, 0});
  CHECK(model.config.tied_embeddings);
  CHECK(model.config.rope_theta == 5000.f);
  check_forward("smollm3", model);
  // SmolLM3Config's defaults, and its windows: only with use_sliding_window,
  // and then (without layer_types) on the NoPE layers.
  nlohmann::json d = nlohmann::json::parse(config_text("smollm3"));
  d.erase("rope_theta");
  CHECK(must(config_from_json(d.dump())).rope_theta == 2000000.f);
  CHECK(must(config_from_json(d.dump())).window == std::vector<int>{0, 0, 0, 0});
  d["layer_types"] = {"full_attention", "sliding_attention", "full_attention", "full_attention"};
  d["sliding_window"] = 16;
  CHECK(must(config_from_json(d.dump())).window == std::vector<int>{0, 0, 0, 0});
  d["use_sliding_window"] = true;
  CHECK(must(config_from_json(d.dump())).window == std::vector<int>{0, 16, 0, 0});
  d.erase("layer_types");
  CHECK(must(config_from_json(d.dump())).window == std::vector<int>{0, 0, 0, 16});
  // no_rope_layers given: 1 means the layer uses RoPE; anything else is refused.
  nlohmann::json c = nlohmann::json::parse(config_text("smollm3"));
  c["no_rope_layers"] = {0, 1, 1, 1};
  CHECK(must(config_from_json(c.dump())).rope_layers == std::vector<int>{0, 1, 1, 1});
  c["no_rope_layers"] = {1, 2, 1, 1};
  auto bad = config_from_json(c.dump());
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().message.find("no_rope_layers") != std::string::npos);
  c["no_rope_layers"] = {1, 1};
  CHECK_FALSE(config_from_json(c.dump()).ok());
}

TEST_CASE("families: a Qwen3 checkpoint without its q/k norms, or with a head_dim that does not fit, is refused",
          "[families]") {
  // The checkpoint's q_proj is [H * 24, d]: a head_dim of 16 does not fit it.
  nlohmann::json c = nlohmann::json::parse(config_text("qwen3"));
  c["head_dim"] = 16;
  auto wrong = load_case("qwen3", c.dump());
  REQUIRE_FALSE(wrong.ok());
  CHECK(wrong.error().message.find("q_proj") != std::string::npos);
  // Read as Qwen2 (no q/k norm, but q/k/v biases) the checkpoint lacks the biases: named.
  c = nlohmann::json::parse(config_text("qwen3"));
  c["model_type"] = "qwen2";
  auto as_qwen2 = load_case("qwen3", c.dump());
  REQUIRE_FALSE(as_qwen2.ok());
  CHECK(as_qwen2.error().message.find("bias") != std::string::npos);
  // A LLaMA checkpoint read as Qwen3: its missing q_norm is named.
  nlohmann::json llama = nlohmann::json::parse(must(read_text_file(fixture_dir("llama") + "/config.json")));
  llama["model_type"] = "qwen3";
  llama["head_dim"] = 16;  // (Qwen3 would default to 128)
  const ModelConfig config = must(config_from_json(llama.dump()));
  auto bytes = must(safetensors_read_bytes(fixture_dir("llama") + "/model.safetensors"));
  auto file = must(safetensors_parse(bytes.data(), bytes.size(), "model.safetensors"));
  auto no_norm = model_from_checkpoint(config, {&file});
  REQUIRE_FALSE(no_norm.ok());
  CHECK(no_norm.error().message.find("q_norm") != std::string::npos);
}
TEST_CASE("families: Gemma (1 + w norms, scaled embeddings, MQA, exact GELU from hidden_act) matches its numpy forward",
          "[families]") {
  const Model model = must(load_case("gemma", config_text("gemma")));
  const ModelConfig& c = model.config;
  CHECK(c.n_kv_head == 1);
  CHECK(c.d_head == 24);
  CHECK(c.embed_scale == Approx(8.0));
  CHECK(c.act == Activation::gelu);  // hidden_act, not hidden_activation
  CHECK_FALSE(c.norm_after_sublayer);
  CHECK(c.tied_embeddings);
  check_forward("gemma", model);
  // GemmaConfig's defaults: the tanh GELU, 1e-6, head_dim 256.
  nlohmann::json d = nlohmann::json::parse(config_text("gemma"));
  d.erase("hidden_act");
  d.erase("head_dim");
  const auto defaults = config_from_json(d.dump());
  REQUIRE(defaults.ok());
  CHECK(defaults->act == Activation::gelu_new);
  CHECK(defaults->d_head == 256);
}

TEST_CASE("families: Gemma 2 (norms around the sublayers, soft-capped scores and logits, alternating windows) "
          "matches its numpy forward", "[families]") {
  const Model model = must(load_case("gemma2", config_text("gemma2")));
  const ModelConfig& c = model.config;
  CHECK(c.pre_norm);
  CHECK(c.norm_after_sublayer);
  CHECK(c.window == std::vector<int>{6, 0, 6});
  CHECK(c.attn_softcap == 2.f);
  CHECK(c.final_softcap == 5.f);
  CHECK(c.attn_scale == Approx(1 / std::sqrt(8.0)));
  check_forward("gemma2", model);
  // Gemma2Config's defaults: caps 50 and 30, windows of 4096.
  nlohmann::json d = nlohmann::json::parse(config_text("gemma2"));
  for (const char* k : {"attn_logit_softcapping", "final_logit_softcapping", "sliding_window", "query_pre_attn_scalar"}) d.erase(k);
  const ModelConfig defaults = must(config_from_json(d.dump()));
  CHECK(defaults.attn_softcap == 50.f);
  CHECK(defaults.final_softcap == 30.f);
  CHECK(defaults.window == std::vector<int>{4096, 0, 4096});
  CHECK(defaults.attn_scale == Approx(1 / 16.0));
  // The processed variant folds the norms before the sublayers; OV leaves
  // out the norm after the attention, and the geometry says so.
  const HeadSpectra processed = must(head_spectra(model, WeightVariant::processed, 4));
  CHECK(processed.ov_ignores_post_norm);
  CHECK(processed.qk_ignores_softcap);
  // Direct logit attribution: the parts add up to the logits before the
  // final soft-capping, which the run's logits are a tanh of.
  const DirectLogitAttribution dla = checked_dla(model, "gemma2");
  CHECK(dla.before_softcap);
  const RunResult run = must(run_model(model, case_ids("gemma2")));
  const int V = model.config.d_vocab, t = 7;
  const double capped = run.logits[t * V + 5] - run.logits[t * V + 9];
  CHECK(std::fabs(capped - dla.total[t]) > 1e-3);  // the cap bends these logits
}

TEST_CASE("families: Gemma 3 (q/k norms, local and global RoPE, every 3rd layer global) matches its numpy forward",
          "[families]") {
  const Model model = must(load_case("gemma3", config_text("gemma3")));
  const ModelConfig& c = model.config;
  CHECK(c.qk_norm == QkNorm::per_head);
  CHECK(c.window == std::vector<int>{5, 5, 0, 5});
  CHECK(c.rope_local_theta == 100.f);
  CHECK(c.rope_scaling == RopeScaling::linear);
  CHECK(c.attn_softcap == 0.f);
  CHECK(c.final_softcap == 0.f);
  CHECK(c.d_head == 16);  // not hidden_size / heads = 12
  check_forward("gemma3", model);
  // Layer types given explicitly win over the pattern; v5's per-kind rope_parameters are read.
  nlohmann::json d = nlohmann::json::parse(config_text("gemma3"));
  d["layer_types"] = {"full_attention", "sliding_attention", "sliding_attention", "full_attention"};
  CHECK(must(config_from_json(d.dump())).window == std::vector<int>{0, 5, 5, 0});
  d.erase("rope_theta");
  d.erase("rope_local_base_freq");
  d.erase("rope_scaling");
  d["rope_parameters"] = {{"full_attention", {{"rope_type", "linear"}, {"factor", 2.0}, {"rope_theta", 5e5}}},
                          {"sliding_attention", {{"rope_type", "default"}, {"rope_theta", 50.0}}}};
  const ModelConfig v5 = must(config_from_json(d.dump()));
  CHECK(v5.rope_theta == 5e5f);
  CHECK(v5.rope_factor == 2.f);
  CHECK(v5.rope_local_theta == 50.f);
  // An embedding model (bidirectional attention) is refused by name.
  d["use_bidirectional_attention"] = true;
  auto bidir = config_from_json(d.dump());
  REQUIRE_FALSE(bidir.ok());
  CHECK(bidir.error().message.find("use_bidirectional_attention") != std::string::npos);
  const HeadSpectra raw = must(head_spectra(model, WeightVariant::raw, 4));
  CHECK(raw.qk_ignores_qk_norm);
  CHECK_FALSE(raw.qk_ignores_softcap);
}

TEST_CASE("families: a Gemma checkpoint read as Gemma 2 names its missing norm, and an unknown layer kind is refused",
          "[families]") {
  nlohmann::json c = nlohmann::json::parse(config_text("gemma"));
  c["model_type"] = "gemma2";
  auto wrong = load_case("gemma", c.dump());
  REQUIRE_FALSE(wrong.ok());
  CHECK(wrong.error().message.find("feedforward_layernorm") != std::string::npos);
  nlohmann::json g = nlohmann::json::parse(config_text("gemma3"));
  g["layer_types"] = {"full_attention", "chunked_attention", "full_attention", "full_attention"};
  auto kind = config_from_json(g.dump());
  REQUIRE_FALSE(kind.ok());
  CHECK(kind.error().message.find("chunked_attention") != std::string::npos);
}
TEST_CASE("families: Phi-3 (fused qkv and gate_up, partial rotary, LongRoPE past the original context, windows) "
          "matches its numpy forward", "[families]") {
  const Model model = must(load_case("phi3", config_text("phi3")));
  const ModelConfig& c = model.config;
  CHECK(c.fused_projections);
  CHECK(c.rotary_dim == 12);
  CHECK(c.rope_scaling == RopeScaling::longrope);
  CHECK(c.rope_original_ctx == 16);
  CHECK(c.rope_attention_factor == Approx(std::sqrt(1 + std::log(4.0) / std::log(16.0))));
  CHECK(c.window == std::vector<int>{7, 7});
  check_forward("phi3", model);  // 20 tokens > 16: the long factors
  // Within the original context, the short factors (and the same attention factor).
  const Model short_model = must(load_case("phi3_short", config_text("phi3_short")));
  CHECK(short_model.config.window == std::vector<int>{0, 0});
  check_forward("phi3_short", short_model);
  // A factor list of the wrong length, and a rope type headscope does not
  // implement, are named.
  nlohmann::json d = nlohmann::json::parse(config_text("phi3"));
  d["rope_scaling"]["short_factor"] = {1.0, 2.0};
  auto bad = config_from_json(d.dump());
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().message.find("short_factor") != std::string::npos);
  CHECK(bad.error().message.find("6 numbers") != std::string::npos);
  d["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
  auto yarn = config_from_json(d.dump());
  REQUIRE_FALSE(yarn.ok());
  CHECK(yarn.error().message.find("\"yarn\"") != std::string::npos);
  // Read as LLaMA (separate projections), the fused checkpoint's missing q_proj is named.
  d = nlohmann::json::parse(config_text("phi3"));
  d["model_type"] = "llama";
  d.erase("rope_scaling");
  auto as_llama = load_case("phi3", d.dump());
  REQUIRE_FALSE(as_llama.ok());
  CHECK(as_llama.error().message.find("q_proj") != std::string::npos);
}
TEST_CASE("families: StableLM (LayerNorms with biases, 25 % rotary, q/k/v biases, and parallel blocks on one norm with "
          "a LayerNorm per head on q and k) matches its numpy forward", "[families]") {
  const Model model = must(load_case("stablelm", config_text("stablelm")));
  CHECK(model.config.norm == NormKind::layer_norm);
  CHECK(model.config.rotary_dim == 4);
  CHECK(model.config.qkv_bias);
  CHECK_FALSE(model.config.parallel_residual);
  check_forward("stablelm", model);
  const Model parallel = must(load_case("stablelm_parallel", config_text("stablelm_parallel")));
  CHECK(parallel.config.parallel_residual);
  CHECK(parallel.config.qk_norm_each_head);
  CHECK(parallel.weights.layers[0].q_norm_w.size() == 4 * 16);
  CHECK(parallel.weights.layers[0].k_norm_w.size() == 2 * 16);
  check_forward("stablelm_parallel", parallel);
  // Both have a norm before each sublayer: the processed variant is defined.
  const HeadSpectra processed = must(head_spectra(parallel, WeightVariant::processed, 4));
  CHECK(processed.qk_ignores_qk_norm);
  // A checkpoint without the per-head norms the config asks for names the first missing one.
  nlohmann::json d = nlohmann::json::parse(config_text("stablelm"));
  d["qk_layernorm"] = true;
  d["use_qkv_bias"] = false;
  auto missing = load_case("stablelm", d.dump());
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().message.find("q_layernorm.norms.0") != std::string::npos);
}
TEST_CASE("families: a Gemma 3 multimodal checkpoint loads its language model (text_config, language_model. "
          "names) and never reads its vision tower", "[families]") {
  nlohmann::json text = nlohmann::json::parse(config_text("gemma3"));
  text.erase("model_type");
  const nlohmann::json wrapper = {{"model_type", "gemma3"}, {"architectures", {"Gemma3ForConditionalGeneration"}}, {"text_config", text}};
  const ModelConfig config = must(config_from_json(wrapper.dump()));
  CHECK(config.model_type == "gemma3");
  CHECK(config.window == std::vector<int>{5, 5, 0, 5});
  // The text model's tensors under language_model.model., a vision tensor beside them.
  auto bytes = must(safetensors_read_bytes(case_dir("gemma3") + "/model.safetensors"));
  const SafetensorsFile text_file = must(safetensors_parse(bytes.data(), bytes.size(), "model.safetensors"));
  std::vector<SafetensorsTensorIn> renamed;
  for (const TensorInfo& t : text_file.tensors) {
    const std::vector<float> values = must(safetensors_read_f32(text_file, t));
    renamed.push_back(safetensors_tensor_f32("language_model." + t.name, t.shape, values));
  }
  renamed.push_back(safetensors_tensor_f32("vision_tower.vision_model.embeddings.patch_embedding.weight", {4, 3}, std::vector<float>(12, 1.f)));
  const std::vector<std::uint8_t> out = safetensors_serialize(renamed, {{"format", "pt"}});
  const SafetensorsFile multimodal = must(safetensors_parse(out.data(), out.size(), "model.safetensors"));
  CHECK_FALSE(checkpoint_reads_tensor(config, "vision_tower.vision_model.embeddings.patch_embedding.weight", {}));
  CHECK(checkpoint_reads_tensor(config, "language_model.model.layers.0.mlp.up_proj.weight", {}));
  const Model model = must(model_from_checkpoint(config, {&multimodal}));
  check_forward("gemma3", model);
  // A wrapper without text_config is named.
  auto bare = config_from_json(R"({"model_type": "gemma3"})");
  REQUIRE_FALSE(bare.ok());
  CHECK(bare.error().message.find("text_config") != std::string::npos);
}
#endif
