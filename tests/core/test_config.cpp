// config_from_json: each family's fields and defaults (SPEC §2.1), the v4 and
// v5 RoPE spellings, GPT-Neo's attention_types expansion, sliding windows, and
// every rejection naming the offending field.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include "config.hpp"
#include "fixture_model.hpp"

using namespace hs;
using namespace hs::test;
using json = nlohmann::json;

namespace {

json fixture_json(const std::string& name, const char* file = "config.json") {
  auto text = read_text_file(fixture_dir(name) + "/" + file);
  REQUIRE(text.ok());
  json j = json::parse(*text, nullptr, false);
  REQUIRE(j.is_object());
  return j;
}

ModelConfig parse_ok(const json& j) {
  auto c = config_from_json(j.dump());
  INFO(j.dump() << "\n-> " << (c.ok() ? "ok" : c.error().message));
  REQUIRE(c.ok());
  return std::move(c).value();
}

std::string parse_error(const json& j) {
  auto c = config_from_json(j.dump());
  INFO(j.dump());
  REQUIRE_FALSE(c.ok());
  return c.error().message;
}

// A minimal config of the given type: every size from the fixtures.
json tiny(const std::string& type) {
  return json{{"model_type", type}, {"hidden_size", 64}, {"num_attention_heads", 4}, {"num_hidden_layers", 2},
              {"intermediate_size", 128}, {"vocab_size", 128}, {"max_position_embeddings", 64}};
}

}  // namespace

TEST_CASE("the gpt2 fixture config parses with GPT-2 defaults", "[config]") {
  const ModelConfig c = parse_ok(fixture_json("gpt2"));
  CHECK(c.family == Family::gpt2);
  CHECK(c.n_layer == 2);
  CHECK(c.d_model == 64);
  CHECK(c.n_head == 4);
  CHECK(c.n_kv_head == 4);
  CHECK(c.d_head == 16);
  CHECK(c.d_mlp == 256);  // n_inner null -> 4d
  CHECK(c.d_vocab == 128);
  CHECK(c.n_ctx == 64);
  CHECK(c.act == Activation::gelu_new);
  CHECK(c.attn_scale == Approx(0.25));
  CHECK(c.tied_embeddings);  // absent -> true
  CHECK(c.learned_positions);
  CHECK(c.rotary_dim == 0);
  CHECK(c.causal);
  CHECK(c.bos_token_id == 127);
  CHECK(c.window == std::vector<int>{0, 0});
}

TEST_CASE("the other fixture configs parse", "[config]") {
  const ModelConfig neox = parse_ok(fixture_json("gpt_neox"));
  CHECK(neox.family == Family::gpt_neox);
  CHECK(neox.rotary_dim == 4);  // int(16 * 0.25)
  CHECK(neox.rope_theta == 10000.f);
  CHECK(neox.parallel_residual);
  CHECK_FALSE(neox.tied_embeddings);
  CHECK(neox.act == Activation::gelu);
  CHECK(neox.d_mlp == 256);

  const ModelConfig llama = parse_ok(fixture_json("llama"));
  CHECK(llama.family == Family::llama);
  CHECK(llama.n_kv_head == 2);
  CHECK(llama.norm == NormKind::rms_norm);
  CHECK(llama.norm_eps == Approx(1e-6));
  CHECK(llama.gated_mlp);
  CHECK(llama.act == Activation::silu);
  CHECK(llama.rotary_dim == 16);
  CHECK_FALSE(llama.qkv_bias);
  CHECK_FALSE(llama.tied_embeddings);

  const ModelConfig bert = parse_ok(fixture_json("bert"));
  CHECK(bert.family == Family::bert);
  CHECK_FALSE(bert.causal);
  CHECK(bert.post_ln);
  CHECK(bert.type_vocab_size == 2);
  CHECK(bert.norm_eps == Approx(1e-12));
  CHECK_FALSE(bert.final_norm);

  const ModelConfig neo = parse_ok(fixture_json("gpt_neo"));
  CHECK(neo.family == Family::gpt_neo);
  CHECK(neo.attn_scale == 1.f);
  CHECK(neo.window == std::vector<int>{0, 5});
  CHECK(neo.d_mlp == 256);  // intermediate_size null -> 4d
  CHECK_FALSE(neo.qkv_bias);

  const ModelConfig opt = parse_ok(fixture_json("opt"));
  CHECK(opt.family == Family::opt);
  CHECK(opt.position_offset == 2);
  CHECK(opt.act == Activation::relu);
  CHECK(opt.d_mlp == 128);
  CHECK(opt.tied_embeddings);
}

TEST_CASE("config_full.json (every field spelled out) gives the same config as config.json", "[config]") {
  for (const char* name : {"gpt2", "gpt_neox", "llama", "bert", "gpt_neo", "opt"}) {
    INFO(name);
    const ModelConfig a = parse_ok(fixture_json(name));
    const ModelConfig b = parse_ok(fixture_json(name, "config_full.json"));
    CHECK(a.family == b.family);
    CHECK(a.n_layer == b.n_layer);
    CHECK(a.d_model == b.d_model);
    CHECK(a.n_head == b.n_head);
    CHECK(a.n_kv_head == b.n_kv_head);
    CHECK(a.d_head == b.d_head);
    CHECK(a.d_mlp == b.d_mlp);
    CHECK(a.d_vocab == b.d_vocab);
    CHECK(a.n_ctx == b.n_ctx);
    CHECK(a.norm_eps == b.norm_eps);
    CHECK(a.act == b.act);
    CHECK(a.attn_scale == b.attn_scale);
    CHECK(a.rotary_dim == b.rotary_dim);
    CHECK(a.rope_theta == b.rope_theta);
    CHECK(a.window == b.window);
    CHECK(a.tied_embeddings == b.tied_embeddings);
    CHECK(a.parallel_residual == b.parallel_residual);
    CHECK(a.qkv_bias == b.qkv_bias);
  }
}

TEST_CASE("NeoX reads the transformers v5 rope_parameters spelling", "[config]") {
  json j = fixture_json("gpt_neox");
  j.erase("rotary_pct");
  j.erase("rotary_emb_base");
  j["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 500.0}, {"partial_rotary_factor", 0.5}};
  const ModelConfig c = parse_ok(j);
  CHECK(c.rotary_dim == 8);
  CHECK(c.rope_theta == 500.f);
  CHECK(c.rope_scaling == RopeScaling::none);

  // And the v4 top-level rope_theta name when rotary_emb_base is absent.
  json k = fixture_json("gpt_neox");
  k.erase("rotary_emb_base");
  k["rope_theta"] = 1234;
  CHECK(parse_ok(k).rope_theta == 1234.f);

  json l = tiny("llama");
  l["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 1e6}};
  CHECK(parse_ok(l).rope_theta == 1e6f);
}

TEST_CASE("LLaMA rope scaling: linear and llama3 are read, unsupported types rejected", "[config]") {
  json j = tiny("llama");
  j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 32.0}, {"low_freq_factor", 1.0}, {"high_freq_factor", 4.0},
                       {"original_max_position_embeddings", 8192}};
  const ModelConfig c = parse_ok(j);
  CHECK(c.rope_scaling == RopeScaling::llama3);
  CHECK(c.rope_factor == 32.f);
  j["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
  CHECK(parse_ok(j).rope_scaling == RopeScaling::linear);
  j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 2.0}};
  CHECK_THAT(parse_error(j), Catch::Contains("rope_scaling") && Catch::Contains("yarn"));
}

TEST_CASE("GPT-Neo expands attention_types when attention_layers is absent", "[config]") {
  json j = fixture_json("gpt_neo");
  j.erase("attention_layers");
  j["num_layers"] = 5;
  j["attention_types"] = json::parse(R"([[["global", "local"], 2], [["local"], 1]])");
  j["window_size"] = 7;
  CHECK(parse_ok(j).window == std::vector<int>{0, 7, 0, 7, 7});

  // attention_types wins over attention_layers, as in GPTNeoConfig.
  json k = fixture_json("gpt_neo");
  k["attention_types"] = json::parse(R"([[["local"], 2]])");
  CHECK(parse_ok(k).window == std::vector<int>{5, 5});

  json only_layers = fixture_json("gpt_neo");
  only_layers.erase("attention_types");
  only_layers["attention_layers"] = {"local", "global"};
  CHECK(parse_ok(only_layers).window == std::vector<int>{5, 0});

  json wrong = fixture_json("gpt_neo");
  wrong["attention_types"] = json::parse(R"([[["global", "local"], 2]])");
  CHECK_THAT(parse_error(wrong), Catch::Contains("attention_types") && Catch::Contains("num_layers"));
  json kind = fixture_json("gpt_neo");
  kind["attention_types"] = json::parse(R"([[["global", "sparse"], 1]])");
  CHECK_THAT(parse_error(kind), Catch::Contains("attention_types") && Catch::Contains("sparse"));
}

TEST_CASE("Mistral sliding_window gives a per-layer window, and null means global", "[config]") {
  json j = tiny("mistral");
  j["num_key_value_heads"] = 2;
  j["sliding_window"] = 16;
  const ModelConfig c = parse_ok(j);
  CHECK(c.family == Family::llama);
  CHECK(c.model_type == "mistral");
  CHECK(c.window == std::vector<int>{16, 16});
  CHECK_FALSE(c.qkv_bias);
  j["sliding_window"] = nullptr;
  CHECK(parse_ok(j).window == std::vector<int>{0, 0});
  j.erase("sliding_window");
  CHECK(parse_ok(j).window == std::vector<int>{4096, 4096});  // MistralConfig's default
  j["sliding_window"] = "16";
  CHECK_THAT(parse_error(j), Catch::Contains("'sliding_window'"));
}

TEST_CASE("Qwen2: q/k/v biases, no o bias, use_sliding_window and max_window_layers", "[config]") {
  json j = tiny("qwen2");
  j["num_key_value_heads"] = 2;
  j["rope_theta"] = 1000000.0;
  j["sliding_window"] = 32;
  j["use_sliding_window"] = false;
  j["tie_word_embeddings"] = true;
  ModelConfig c = parse_ok(j);
  CHECK(c.qkv_bias);
  CHECK_FALSE(c.out_bias);
  CHECK(c.rope_theta == 1e6f);
  CHECK(c.window == std::vector<int>{0, 0});
  CHECK(c.tied_embeddings);
  j["use_sliding_window"] = true;
  j["max_window_layers"] = 1;
  CHECK(parse_ok(j).window == std::vector<int>{0, 32});
  j["layer_types"] = {"sliding_attention", "full_attention"};
  CHECK(parse_ok(j).window == std::vector<int>{32, 0});
}

TEST_CASE("LLaMA head_dim is used when present", "[config]") {
  json j = tiny("llama");
  j["hidden_size"] = 60;  // not divisible by 8 heads: fine with head_dim
  j["num_attention_heads"] = 8;
  j["head_dim"] = 16;
  const ModelConfig c = parse_ok(j);
  CHECK(c.d_head == 16);
  CHECK(c.rotary_dim == 16);
}

TEST_CASE("config_from_json rejects unsupported model types, listing the supported ones", "[config]") {
  json j = tiny("falcon");
  const std::string e = parse_error(j);
  CHECK_THAT(e, Catch::Contains("model_type") && Catch::Contains("falcon") && Catch::Contains("gpt2") &&
                    Catch::Contains("qwen2") && Catch::Contains("opt"));
  json none = tiny("llama");
  none.erase("model_type");
  CHECK_THAT(parse_error(none), Catch::Contains("model_type"));
  CHECK_THAT(parse_error(json{{"model_type", 3}}), Catch::Contains("'model_type'"));
}

TEST_CASE("config_from_json rejects a d_model not divisible by the heads", "[config]") {
  json j = fixture_json("gpt2");
  j["n_head"] = 5;
  CHECK_THAT(parse_error(j), Catch::Contains("n_embd") && Catch::Contains("n_head"));
  json l = tiny("llama");
  l["num_attention_heads"] = 7;
  CHECK_THAT(parse_error(l), Catch::Contains("hidden_size") && Catch::Contains("num_attention_heads") &&
                                 Catch::Contains("head_dim"));
}

TEST_CASE("config_from_json rejects a non-integer grouped-query ratio", "[config]") {
  json j = tiny("llama");
  j["num_key_value_heads"] = 3;
  CHECK_THAT(parse_error(j), Catch::Contains("num_key_value_heads") && Catch::Contains("num_attention_heads"));
}

TEST_CASE("config_from_json rejects non-positive sizes", "[config]") {
  for (const char* key : {"n_layer", "n_head", "n_embd", "vocab_size", "n_positions", "n_inner"}) {
    for (int bad : {0, -3}) {
      json j = fixture_json("gpt2");
      j[key] = bad;
      const std::string e = parse_error(j);
      CHECK_THAT(e, Catch::Contains(std::string("'") + key + "'") && Catch::Contains("positive"));
    }
  }
  json k = tiny("llama");
  k["num_key_value_heads"] = 0;
  CHECK_THAT(parse_error(k), Catch::Contains("'num_key_value_heads'"));
  json b = fixture_json("bert");
  b["type_vocab_size"] = 0;
  CHECK_THAT(parse_error(b), Catch::Contains("'type_vocab_size'"));
}

TEST_CASE("config_from_json rejects an unknown activation", "[config]") {
  json j = fixture_json("gpt2");
  j["activation_function"] = "gelu_magic";
  CHECK_THAT(parse_error(j), Catch::Contains("'activation_function'") && Catch::Contains("gelu_magic"));
  json l = tiny("llama");
  l["hidden_act"] = "tanh";
  CHECK_THAT(parse_error(l), Catch::Contains("'hidden_act'"));
  // Aliases of supported functions are accepted.
  l["hidden_act"] = "swish";
  CHECK(parse_ok(l).act == Activation::silu);
  json n = fixture_json("gpt_neox");
  n["hidden_act"] = "gelu_fast";
  CHECK(parse_ok(n).act == Activation::gelu_fast);
}

TEST_CASE("config_from_json rejects wrong JSON types, naming the field", "[config]") {
  json a = fixture_json("gpt2");
  a["n_head"] = "4";
  CHECK_THAT(parse_error(a), Catch::Contains("'n_head'") && Catch::Contains("integer") && Catch::Contains("string"));
  json b = fixture_json("gpt2");
  b["scale_attn_weights"] = "yes";
  CHECK_THAT(parse_error(b), Catch::Contains("'scale_attn_weights'"));
  json c = fixture_json("gpt2");
  c["layer_norm_epsilon"] = json::array();
  CHECK_THAT(parse_error(c), Catch::Contains("'layer_norm_epsilon'"));
  json d = fixture_json("gpt2");
  d["n_embd"] = 64.5;
  CHECK_THAT(parse_error(d), Catch::Contains("'n_embd'"));
  json e = fixture_json("gpt_neox");
  e["use_parallel_residual"] = 1;
  CHECK_THAT(parse_error(e), Catch::Contains("'use_parallel_residual'"));
  json f = fixture_json("gpt_neox");
  f["rope_parameters"] = "fast";
  CHECK_THAT(parse_error(f), Catch::Contains("'rope_parameters'"));
  json g = fixture_json("gpt_neo");
  g["attention_types"] = 3;
  CHECK_THAT(parse_error(g), Catch::Contains("'attention_types'"));

  // An integral float is an integer.
  json h = fixture_json("gpt2");
  h["n_head"] = 4.0;
  CHECK(parse_ok(h).n_head == 4);

  CHECK_FALSE(config_from_json("{not json").ok());
  CHECK_FALSE(config_from_json("[1, 2]").ok());
  CHECK_FALSE(config_from_json("").ok());
}

TEST_CASE("OPT variants that are not supported are rejected clearly", "[config]") {
  json j = fixture_json("opt");
  j["do_layer_norm_before"] = false;
  CHECK_THAT(parse_error(j), Catch::Contains("post-LN OPT (opt-350m) is not supported") &&
                                 Catch::Contains("do_layer_norm_before"));
  json k = fixture_json("opt");
  k["word_embed_proj_dim"] = 32;
  CHECK_THAT(parse_error(k), Catch::Contains("'word_embed_proj_dim'") && Catch::Contains("project_in"));
  json e = fixture_json("opt");
  e["enable_bias"] = false;
  CHECK_FALSE(parse_ok(e).qkv_bias);
}

TEST_CASE("BERT variants that are not supported are rejected clearly", "[config]") {
  json j = fixture_json("bert");
  j["position_embedding_type"] = "relative_key";
  CHECK_THAT(parse_error(j), Catch::Contains("'position_embedding_type'") && Catch::Contains("relative_key"));
}

TEST_CASE("GPT-2 legacy n_ctx and scale flags", "[config]") {
  json j = fixture_json("gpt2");
  j.erase("n_positions");
  j["n_ctx"] = 32;
  j["scale_attn_weights"] = false;
  j["scale_attn_by_inverse_layer_idx"] = true;
  const ModelConfig c = parse_ok(j);
  CHECK(c.n_ctx == 32);
  CHECK(c.attn_scale == 1.f);
  CHECK(c.scale_by_inverse_layer);
  // distilgpt2 is model_type gpt2 with fewer layers.
  json d = fixture_json("gpt2");
  d["n_layer"] = 6;
  CHECK(parse_ok(d).n_layer == 6);
}

TEST_CASE("supported_model_types and family_name agree", "[config]") {
  const auto types = supported_model_types();
  CHECK(types.size() == 17);
  for (const auto& t : types) {
    json j = tiny(t);
    if (t == "gpt2") j = fixture_json("gpt2");
    if (t == "gpt_neo") j = fixture_json("gpt_neo");
    if (t == "mistral") j["num_key_value_heads"] = 2;  // MistralConfig's default is 8
    if (t.rfind("gemma", 0) == 0) j["num_key_value_heads"] = 1;  // Gemma's defaults: 16 or 4
    if (t == "stablelm") j["num_key_value_heads"] = 4;            // StableLmConfig's default is 32
    if (t == "gemma3") j = json{{"model_type", "gemma3"}, {"text_config", j}};  // the multimodal wrapper
    INFO(t);
    CHECK(config_from_json(j.dump()).ok());
  }
  CHECK(std::string(family_name(Family::gpt_neox)) == "gpt_neox");
}
