// config.json -> ModelConfig; see config.hpp. Every absent field takes the
// transformers class default of SPEC §2.1; every field is read through a
// typed, non-throwing accessor, so that bad JSON gives an Error naming the
// field, never a throw.
#include "config.hpp"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace hs {

using json = nlohmann::json;

const char* family_name(Family family) {
  switch (family) {
    case Family::gpt2: return "gpt2";
    case Family::gpt_neox: return "gpt_neox";
    case Family::llama: return "llama";
    case Family::bert: return "bert";
    case Family::gpt_neo: return "gpt_neo";
    case Family::opt: return "opt";
  }
  return "?";
}

std::vector<std::string> supported_model_types() {
  return {"gpt2", "gpt_neox", "llama", "mistral", "qwen2", "qwen3", "smollm3", "olmo2", "gemma", "gemma2", "gemma3_text", "gemma3", "phi3", "stablelm", "bert", "gpt_neo", "opt"};
}

bool layer_uses_rope(const ModelConfig& c, int layer) {
  return c.rotary_dim > 0 && (c.rope_layers.empty() || c.rope_layers[layer] != 0);
}

namespace {

std::string json_kind(const json& v) {
  if (v.is_null()) return "null";
  if (v.is_boolean()) return v.get<bool>() ? "true" : "false";
  if (v.is_number()) return "the number " + v.dump();
  if (v.is_string()) return "the string " + v.dump();
  if (v.is_array()) return "an array";
  return "an object";
}

// Typed, non-throwing field access. The first problem is kept in `error`
// (later reads return their default), so a family reader is a flat list of
// reads followed by one check.
struct Fields {
  const json& obj;
  std::string error;

  const json* find(const char* key) const {
    auto it = obj.find(key);
    return it == obj.end() ? nullptr : &*it;
  }
  // Present and not null.
  bool has(const char* key) const {
    const json* v = find(key);
    return v && !v->is_null();
  }
  void fail(const std::string& key, const std::string& what, const json& v) {
    if (error.empty()) error = "config.json: field '" + key + "' " + what + ", found " + json_kind(v);
  }

  // An integer field (an integral float such as 64.0 is accepted). Absent or
  // null gives `def`.
  long long integer(const char* key, long long def) {
    const json* v = find(key);
    if (!v || v->is_null()) return def;
    if (v->is_number_integer()) return v->get<long long>();
    if (v->is_number_float()) {
      const double d = v->get<double>();
      if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9e15) return static_cast<long long>(d);
    }
    fail(key, "must be an integer", *v);
    return def;
  }
  // Sizes are capped at 2^26 so that products such as 4 * d_model or
  // n_head * head_dim stay far from int overflow.
  int positive(const char* key, long long def) {
    const long long n = integer(key, def);
    if (n <= 0 || n > (1ll << 26)) {
      const json* v = find(key);
      if (error.empty())
        error = "config.json: field '" + std::string(key) + "' must be a positive integer (at most 2^26), found " +
                (v ? json_kind(*v) : std::to_string(n));
      return 1;
    }
    return static_cast<int>(n);
  }
  double number(const char* key, double def) {
    const json* v = find(key);
    if (!v || v->is_null()) return def;
    if (v->is_number()) return v->get<double>();
    fail(key, "must be a number", *v);
    return def;
  }
  bool boolean(const char* key, bool def) {
    const json* v = find(key);
    if (!v || v->is_null()) return def;
    if (v->is_boolean()) return v->get<bool>();
    fail(key, "must be true or false", *v);
    return def;
  }
  std::string string(const char* key, const std::string& def) {
    const json* v = find(key);
    if (!v || v->is_null()) return def;
    if (v->is_string()) return v->get<std::string>();
    fail(key, "must be a string", *v);
    return def;
  }
  // A nested object, or nullptr when absent/null (a wrong type is an error).
  const json* object(const char* key) {
    const json* v = find(key);
    if (!v || v->is_null()) return nullptr;
    if (v->is_object()) return v;
    fail(key, "must be an object", *v);
    return nullptr;
  }
};

Status parse_activation(const std::string& key, const std::string& name, Activation& act) {
  // Aliases are the names transformers' ACT2FN maps to the same function.
  if (name == "gelu_new" || name == "gelu_pytorch_tanh") act = Activation::gelu_new;
  else if (name == "gelu" || name == "gelu_python") act = Activation::gelu;
  else if (name == "gelu_fast") act = Activation::gelu_fast;
  else if (name == "silu" || name == "swish") act = Activation::silu;
  else if (name == "relu") act = Activation::relu;
  else
    return make_error(
        ErrorCode::unsupported,
        "config.json: field '" + key + "' names an unknown activation \"" + name +
            "\" (supported: gelu_new, gelu_pytorch_tanh, gelu, gelu_python, gelu_fast, silu, swish, relu)");
  return Ok{};
}

std::string join(const std::vector<std::string>& v, const char* sep) {
  std::string s;
  for (std::size_t i = 0; i < v.size(); ++i) s += (i ? sep : "") + v[i];
  return s;
}

// Head geometry shared by every family: dh = d / H unless given, G | H.
Status finish_heads(ModelConfig& c, const char* d_key, const char* h_key, const char* g_key, bool head_dim_given,
                    const char* dh_key) {
  if (!head_dim_given) {
    if (c.d_model % c.n_head != 0)
      return make_error(ErrorCode::bad_config,
                        "config.json: " + std::string(d_key) + " (" + std::to_string(c.d_model) +
                            ") is not divisible by " + h_key + " (" + std::to_string(c.n_head) + ")" +
                            (dh_key ? std::string(" and no '") + dh_key + "' is given" : std::string()));
    c.d_head = c.d_model / c.n_head;
  }
  if (c.n_head % c.n_kv_head != 0)
    return make_error(ErrorCode::bad_config, "config.json: " + std::string(h_key) + " (" +
                                                 std::to_string(c.n_head) + ") is not a multiple of " +
                                                 g_key + " (" + std::to_string(c.n_kv_head) +
                                                 "): the grouped-query ratio must be an integer");
  return Ok{};
}

Status read_gpt2(Fields& f, ModelConfig& c) {
  c.family = Family::gpt2;
  c.d_vocab = f.positive("vocab_size", 50257);
  c.d_model = f.positive("n_embd", 768);
  c.n_layer = f.positive("n_layer", 12);
  c.n_head = f.positive("n_head", 12);
  c.n_kv_head = c.n_head;
  // n_positions is the current name; very old configs only have n_ctx.
  c.n_ctx = f.has("n_positions") ? f.positive("n_positions", 1024) : f.positive("n_ctx", 1024);
  c.norm_eps = static_cast<float>(f.number("layer_norm_epsilon", 1e-5));
  const std::string act = f.string("activation_function", "gelu_new");
  const bool scale = f.boolean("scale_attn_weights", true);
  c.scale_by_inverse_layer = f.boolean("scale_attn_by_inverse_layer_idx", false);
  c.tied_embeddings = f.boolean("tie_word_embeddings", true);
  c.bos_token_id = static_cast<int>(f.integer("bos_token_id", 50256));
  const bool has_inner = f.has("n_inner");
  const int inner = f.positive("n_inner", 1);
  if (!f.error.empty()) return make_error(ErrorCode::bad_config, f.error);
  c.d_mlp = has_inner ? inner : 4 * c.d_model;
  HS_TRY(parse_activation("activation_function", act, c.act));
  HS_TRY(finish_heads(c, "n_embd", "n_head", "n_head", false, nullptr));
  c.attn_scale = scale ? 1.f / std::sqrt(static_cast<float>(c.d_head)) : 1.f;
  c.learned_positions = true;
  return Ok{};
}

Status read_gpt_neo(Fields& f, ModelConfig& c) {
  c.family = Family::gpt_neo;
  c.d_vocab = f.positive("vocab_size", 50257);
  c.d_model = f.positive("hidden_size", 2048);
  c.n_layer = f.positive("num_layers", 24);
  c.n_head = f.positive("num_heads", 16);
  c.n_kv_head = c.n_head;
  c.n_ctx = f.positive("max_position_embeddings", 2048);
  c.norm_eps = static_cast<float>(f.number("layer_norm_epsilon", 1e-5));
  const std::string act = f.string("activation_function", "gelu_new");
  const int window = f.positive("window_size", 256);
  c.tied_embeddings = f.boolean("tie_word_embeddings", true);
  c.bos_token_id = static_cast<int>(f.integer("bos_token_id", 50256));
  const bool has_inner = f.has("intermediate_size");
  const int inner = f.positive("intermediate_size", 1);
  if (!f.error.empty()) return make_error(ErrorCode::bad_config, f.error);
  c.d_mlp = has_inner ? inner : 4 * c.d_model;
  HS_TRY(parse_activation("activation_function", act, c.act));
  HS_TRY(finish_heads(c, "hidden_size", "num_heads", "num_heads", false, nullptr));

  // Per-layer kinds: GPTNeoConfig expands attention_types ([[kinds, n], ...])
  // and uses that; attention_layers is only its saved expansion.
  std::vector<std::string> kinds;
  const json* types = f.find("attention_types");
  const json* layers = f.find("attention_layers");
  if (types && !types->is_null()) {
    if (!types->is_array())
      return make_error(ErrorCode::bad_config,
                        "config.json: field 'attention_types' must be an array, found " + json_kind(*types));
    for (const json& item : *types) {
      if (!item.is_array() || item.size() != 2 || !item[0].is_array() || !item[1].is_number_integer())
        return make_error(
            ErrorCode::bad_config,
            "config.json: field 'attention_types' must hold [[kinds...], repeat] pairs, found " +
                item.dump());
      const long long n = item[1].get<long long>();
      if (n < 0 || n > 100000)
        return make_error(ErrorCode::bad_config,
                          "config.json: field 'attention_types' has a bad repeat count " + item[1].dump());
      for (long long r = 0; r < n; ++r)
        for (const json& k : item[0]) {
          if (!k.is_string())
            return make_error(ErrorCode::bad_config,
                              "config.json: field 'attention_types' has a non-string kind " + k.dump());
          kinds.push_back(k.get<std::string>());
        }
    }
  } else if (layers && !layers->is_null()) {
    if (!layers->is_array())
      return make_error(
          ErrorCode::bad_config,
          "config.json: field 'attention_layers' must be an array, found " + json_kind(*layers));
    for (const json& k : *layers) {
      if (!k.is_string())
        return make_error(ErrorCode::bad_config,
                          "config.json: field 'attention_layers' has a non-string entry " + k.dump());
      kinds.push_back(k.get<std::string>());
    }
  } else {
    // The class default [[["global", "local"], 12]].
    for (int i = 0; i < 12; ++i) {
      kinds.push_back("global");
      kinds.push_back("local");
    }
  }
  const char* kinds_key = types && !types->is_null() ? "attention_types" : "attention_layers";
  if (static_cast<int>(kinds.size()) != c.n_layer)
    return make_error(ErrorCode::bad_config, "config.json: field '" + std::string(kinds_key) +
                                                 "' describes " + std::to_string(kinds.size()) +
                                                 " layers but num_layers is " + std::to_string(c.n_layer));
  c.window.assign(c.n_layer, 0);
  for (int l = 0; l < c.n_layer; ++l) {
    if (kinds[l] == "local") c.window[l] = window;
    else if (kinds[l] != "global")
      return make_error(ErrorCode::bad_config, "config.json: field '" + std::string(kinds_key) +
                                                   "' has an unknown attention kind \"" + kinds[l] +
                                                   "\" (expected \"global\" or \"local\")");
  }
  c.attn_scale = 1.f;  // GPT-Neo does not scale q.k (SPEC §2.3)
  c.learned_positions = true;
  c.qkv_bias = false;
  return Ok{};
}

// Reads RoPE fields in the v4 spelling (top-level rope_theta, rope_scaling,
// partial_rotary_factor) and the v5 one (rope_parameters: {...}).
Status read_rope(Fields& f, ModelConfig& c, const char* theta_key_v4, double theta_def, const char* pct_key_v4,
                 double pct_def) {
  const json* params = f.object("rope_parameters");
  const json* scaling = f.object("rope_scaling");
  if (!f.error.empty()) return make_error(ErrorCode::bad_config, f.error);
  double theta = f.number(theta_key_v4, theta_def);
  if (std::string(theta_key_v4) != "rope_theta" && !f.has(theta_key_v4)) theta = f.number("rope_theta", theta_def);
  double pct = f.number(pct_key_v4 && f.has(pct_key_v4) ? pct_key_v4 : "partial_rotary_factor", pct_def);
  if (!f.error.empty()) return make_error(ErrorCode::bad_config, f.error);

  // v5 rope_parameters wins over the top-level fields; it also carries the
  // scaling type that v4 keeps in rope_scaling.
  if (params) {
    Fields p{*params, {}};
    theta = p.number("rope_theta", theta);
    pct = p.number("partial_rotary_factor", pct);
    if (!p.error.empty())
      return make_error(ErrorCode::bad_config, "config.json: rope_parameters: " + p.error.substr(13));
    scaling = params;
  }
  if (!(theta > 0) || !std::isfinite(theta))
    return make_error(
        ErrorCode::bad_config,
        "config.json: field 'rope_theta' must be a positive number, found " + std::to_string(theta));
  if (!(pct > 0) || pct > 1)
    return make_error(ErrorCode::bad_config,
                      "config.json: field '" +
                          std::string(pct_key_v4 ? pct_key_v4 : "partial_rotary_factor") +
                          "' must be in (0, 1], found " + std::to_string(pct));
  c.rope_theta = static_cast<float>(theta);
  c.rotary_dim = static_cast<int>(c.d_head * pct);
  if (c.rotary_dim < 2 || c.rotary_dim % 2 != 0)
    return make_error(ErrorCode::bad_config,
                      "config.json: the rotary dimension head_dim x " +
                          std::string(pct_key_v4 ? pct_key_v4 : "partial_rotary_factor") + " = " +
                          std::to_string(c.rotary_dim) + " must be even and at least 2");

  if (scaling) {
    const char* where = params ? "rope_parameters" : "rope_scaling";
    Fields s{*scaling, {}};
    std::string type = s.string("rope_type", "");
    if (type.empty()) type = s.string("type", "default");
    const double factor = s.number("factor", 1.0);
    const double low = s.number("low_freq_factor", 1.0);
    const double high = s.number("high_freq_factor", 4.0);
    const long long orig = std::min<long long>(s.integer("original_max_position_embeddings", 8192), 1ll << 30);
    if (!s.error.empty())
      return make_error(ErrorCode::bad_config,
                        "config.json: " + std::string(where) + ": " + s.error.substr(13));
    if (type == "default") {
      c.rope_scaling = RopeScaling::none;
    } else if (type == "dynamic") {
      // Dynamic NTK only changes the base beyond max_position_embeddings,
      // which run_model never reaches (it rejects longer texts).
      c.rope_scaling = RopeScaling::none;
    } else if (type == "linear" || type == "llama3") {
      if (!(factor > 0))
        return make_error(ErrorCode::bad_config,
                          "config.json: field '" + std::string(where) + ".factor' must be positive");
      c.rope_scaling = type == "linear" ? RopeScaling::linear : RopeScaling::llama3;
      c.rope_factor = static_cast<float>(factor);
      c.rope_low_freq_factor = static_cast<float>(low);
      c.rope_high_freq_factor = static_cast<float>(high);
      c.rope_original_ctx = static_cast<int>(orig);
      if (type == "llama3" && (!(high > low) || orig <= 0))
        return make_error(ErrorCode::bad_config, "config.json: field '" + std::string(where) +
                                                     "' (llama3) needs high_freq_factor > low_freq_factor "
                                                     "and original_max_position_embeddings > 0");
    } else if (type == "longrope" || type == "su") {
      // transformers' _compute_longrope_parameters: the factor is
      // max_position_embeddings / original_max_position_embeddings when the
      // config has the latter at its top level (Phi-3), else the dict's.
      const int half = c.rotary_dim / 2;
      for (const auto& [key, out] : {std::pair<const char*, std::vector<float>*>{"short_factor", &c.rope_short_factor},
                                     std::pair<const char*, std::vector<float>*>{"long_factor", &c.rope_long_factor}}) {
        const json* list = s.find(key);
        if (!list || !list->is_array() || static_cast<int>(list->size()) != half)
          return make_error(ErrorCode::bad_config, "config.json: field '" + std::string(where) + "." + key +
                                                       "' must list " + std::to_string(half) +
                                                       " numbers (one per rotary frequency) for longrope");
        for (const json& v : *list) {
          if (!v.is_number() || !(v.get<double>() > 0))
            return make_error(ErrorCode::bad_config, "config.json: field '" + std::string(where) + "." + key +
                                                         "' must hold positive numbers, found " + v.dump());
          out->push_back(v.get<float>());
        }
      }
      const bool top = f.has("original_max_position_embeddings");
      const long long original = top ? f.integer("original_max_position_embeddings", c.n_ctx)
                                     : s.integer("original_max_position_embeddings", c.n_ctx);
      if (!f.error.empty() || !s.error.empty())
        return make_error(ErrorCode::bad_config, f.error.empty() ? "config.json: " + std::string(where) + ": " + s.error.substr(13) : f.error);
      if (original < 2 || original > (1ll << 30))
        return make_error(ErrorCode::bad_config, "config.json: original_max_position_embeddings must be at least 2");
      const double lr_factor = top ? static_cast<double>(c.n_ctx) / original : factor;
      const double attention = s.has("attention_factor")
                                   ? s.number("attention_factor", 1.0)
                                   : (lr_factor <= 1 ? 1.0 : std::sqrt(1 + std::log(lr_factor) / std::log(double(original))));
      if (!(attention > 0) || !std::isfinite(attention))
        return make_error(ErrorCode::bad_config, "config.json: field '" + std::string(where) + ".attention_factor' must be positive");
      c.rope_scaling = RopeScaling::longrope;
      c.rope_original_ctx = static_cast<int>(original);
      c.rope_attention_factor = static_cast<float>(attention);
    } else {
      return make_error(ErrorCode::unsupported, "config.json: field '" + std::string(where) +
                                                    "' has an unsupported rope type \"" + type +
                                                    "\" (supported: default, linear, dynamic, llama3, longrope)");
    }
  }
  return Ok{};
}

Status read_gpt_neox(Fields& f, ModelConfig& c) {
  c.family = Family::gpt_neox;
  c.d_vocab = f.positive("vocab_size", 50432);
  c.d_model = f.positive("hidden_size", 6144);
  c.n_layer = f.positive("num_hidden_layers", 44);
  c.n_head = f.positive("num_attention_heads", 64);
  c.n_kv_head = c.n_head;
  c.d_mlp = f.positive("intermediate_size", 24576);
  c.n_ctx = f.positive("max_position_embeddings", 2048);
  c.norm_eps = static_cast<float>(f.number("layer_norm_eps", 1e-5));
  const std::string act = f.string("hidden_act", "gelu");
  c.parallel_residual = f.boolean("use_parallel_residual", true);
  const bool bias = f.boolean("attention_bias", true);
  c.tied_embeddings = f.boolean("tie_word_embeddings", false);
  c.bos_token_id = static_cast<int>(f.integer("bos_token_id", 0));
  if (!f.error.empty()) return make_error(ErrorCode::bad_config, f.error);
  HS_TRY(parse_activation("hidden_act", act, c.act));
  HS_TRY(finish_heads(c, "hidden_size", "num_attention_heads", "num_attention_heads", false, nullptr));
  HS_TRY(read_rope(f, c, "rotary_emb_base", 10000.0, "rotary_pct", 0.25));
  c.attn_scale = 1.f / std::sqrt(static_cast<float>(c.d_head));
  c.qkv_bias = c.out_bias = bias;
  return Ok{};
}

// config.json's layer_types (one "full_attention" or "sliding_attention" per
// layer) into c.window: sliding layers get `window`, which must be set
// unless `ignore_sliding` (a model whose sliding is switched off elsewhere).
Status read_layer_types(const json& types, int window, bool ignore_sliding, ModelConfig& c) {
  if (!types.is_array() || static_cast<int>(types.size()) != c.n_layer)
    return make_error(ErrorCode::bad_config, "config.json: field 'layer_types' must be an array of " +
                                                 std::to_string(c.n_layer) + " strings, found " + types.dump().substr(0, 200));
  c.window.assign(c.n_layer, 0);
  for (int l = 0; l < c.n_layer; ++l) {
    const json& k = types[l];
    if (k == "sliding_attention") {
      if (ignore_sliding) continue;
      if (window <= 0)
        return make_error(ErrorCode::bad_config,
                          "config.json: field 'layer_types' asks for sliding_attention but 'sliding_window' is not set");
      c.window[l] = window;
    } else if (k != "full_attention") {
      return make_error(ErrorCode::bad_config, "config.json: field 'layer_types' has an unknown kind " + k.dump() +
                                                   " (expected \"full_attention\" or \"sliding_attention\")");
    }
  }
  return Ok{};
}

Status read_llama(Fields& f, ModelConfig& c) {
  c.family = Family::llama;
  const std::string& t = c.model_type;
  // Qwen3 is Qwen2's shape with a per-head q/k RMSNorm and LLaMA's biases
  // (attention_bias, default none) (transformers' modeling_qwen3.py).
  // OLMo 2 (modeling_olmo2.py) is LLaMA with its two norms after the
  // attention and the MLP instead of before them, and q/k RMSNorms over the
  // whole projections.
  // SmolLM3 (modeling_smollm3.py) is LLaMA with NoPE layers: no_rope_layers[l]
  // == 1 means layer l USES RoPE; by default every no_rope_layer_interval-th
  // layer (4th) has none. Its sliding windows, when on, are on those layers.
  const bool mistral = t == "mistral", qwen3 = t == "qwen3", qwen2 = t == "qwen2" || qwen3, smollm3 = t == "smollm3",
             olmo2 = t == "olmo2";
  c.d_vocab = f.positive("vocab_size", qwen2 ? 151936 : smollm3 ? 128256 : olmo2 ? 50304 : 32000);
  c.d_model = f.positive("hidden_size", 4096);
  c.n_layer = f.positive("num_hidden_layers", 32);
  c.n_head = f.positive("num_attention_heads", 32);
  c.n_kv_head = f.has("num_key_value_heads") ? f.positive("num_key_value_heads", 1) : (mistral ? 8 : c.n_head);
  c.d_mlp = f.positive("intermediate_size", mistral ? 14336 : qwen2 ? 22016 : 11008);
  c.n_ctx = f.positive("max_position_embeddings", mistral ? 4096 * 32 : qwen2 ? 32768 : 2048);
  c.norm_eps = static_cast<float>(f.number("rms_norm_eps", olmo2 ? 1e-5 : 1e-6));
  const std::string act = f.string("hidden_act", "silu");
  // Qwen3Config's head_dim defaults to 128, not hidden_size / heads.
  const bool head_dim_given = f.has("head_dim") || qwen3;
  if (head_dim_given) c.d_head = f.positive("head_dim", 128);
  c.tied_embeddings = f.boolean("tie_word_embeddings", smollm3);
  // An explicit null (OLMo 2's default) means no BOS token.
  const json* bos = f.find("bos_token_id");
  c.bos_token_id = bos && bos->is_null() ? -1
                                         : static_cast<int>(f.integer("bos_token_id", qwen2 || olmo2 ? -1 : smollm3 ? 128000 : 1));
  const bool attention_bias = f.boolean("attention_bias", false);
  c.mlp_bias = f.boolean("mlp_bias", false);
  if (!f.error.empty()) return make_error(ErrorCode::bad_config, f.error);
  HS_TRY(parse_activation("hidden_act", act, c.act));
  HS_TRY(finish_heads(c, "hidden_size", "num_attention_heads", "num_key_value_heads", head_dim_given, "head_dim"));
  HS_TRY(read_rope(f, c, "rope_theta", smollm3 ? 2000000.0 : 10000.0, nullptr, 1.0));
  if (smollm3) {
    const json* given = f.find("no_rope_layers");
    const long long interval = f.integer("no_rope_layer_interval", 4);
    if (!f.error.empty()) return make_error(ErrorCode::bad_config, f.error);
    c.rope_layers.resize(c.n_layer);
    if (given && !given->is_null()) {
      if (!given->is_array() || static_cast<int>(given->size()) < c.n_layer)
        return make_error(ErrorCode::bad_config, "config.json: field 'no_rope_layers' must list 0 or 1 for each of the " +
                                                     std::to_string(c.n_layer) + " layers, found " + given->dump().substr(0, 80));
      for (int l = 0; l < c.n_layer; ++l) {
        const json& v = (*given)[l];
        if (!v.is_number_integer() || (v != 0 && v != 1))
          return make_error(ErrorCode::bad_config, "config.json: field 'no_rope_layers' must hold 0 or 1 (1: the layer uses RoPE), found " + v.dump());
        c.rope_layers[l] = v.get<int>();
      }
    } else {
      if (interval < 1) return make_error(ErrorCode::bad_config, "config.json: field 'no_rope_layer_interval' must be positive");
      for (int l = 0; l < c.n_layer; ++l) c.rope_layers[l] = (l + 1) % interval != 0;
    }
  }
  c.norm = NormKind::rms_norm;
  c.norm_bias = false;
  c.gated_mlp = true;
  c.attn_scale = 1.f / std::sqrt(static_cast<float>(c.d_head));
  // Qwen2 always has q/k/v biases and no o_proj bias; LLaMA's attention_bias
  // covers all four projections; Mistral has none.
  c.qkv_bias = (qwen2 && !qwen3) || attention_bias;
  c.out_bias = (!qwen2 || qwen3) && attention_bias;  // SmolLM3 as LLaMA
  c.qk_norm = qwen3 ? QkNorm::per_head : olmo2 ? QkNorm::whole : QkNorm::none;
  c.norm_after_sublayer = olmo2;
  c.pre_norm = !olmo2;

  // Sliding windows. Explicit layer_types (newer configs) win; otherwise
  // Mistral slides everywhere (null = global), Qwen2 only with
  // use_sliding_window and from layer max_window_layers on.
  c.window.assign(c.n_layer, 0);
  int window = 0;
  if (mistral || qwen2 || smollm3) {
    // SmolLM3Config's sliding_window defaults to None; Mistral's and Qwen2's to 4096.
    window = f.has("sliding_window") ? f.positive("sliding_window", 1) : (f.find("sliding_window") || smollm3 ? 0 : 4096);
    if (!f.error.empty()) return make_error(ErrorCode::bad_config, f.error);
  }
  const json* types = f.find("layer_types");
  if (types && !types->is_null()) {
    // SmolLM3 slides only when use_sliding_window is also set.
    const bool smollm3_slides = !smollm3 || f.boolean("use_sliding_window", false);
    if (!f.error.empty()) return make_error(ErrorCode::bad_config, f.error);
    HS_TRY(read_layer_types(*types, smollm3_slides ? window : 0, !smollm3_slides, c));
  } else if (mistral) {
    std::fill(c.window.begin(), c.window.end(), window);
  } else if (smollm3) {
    const bool use = f.boolean("use_sliding_window", false);
    if (!f.error.empty()) return make_error(ErrorCode::bad_config, f.error);
    if (use && window > 0)
      for (int l = 0; l < c.n_layer; ++l)
        if (!c.rope_layers[l]) c.window[l] = window;
  } else if (qwen2) {
    const bool use = f.boolean("use_sliding_window", false);
    const long long from = f.integer("max_window_layers", 28);
    if (!f.error.empty()) return make_error(ErrorCode::bad_config, f.error);
    if (use) {
      if (window <= 0)
        return make_error(ErrorCode::bad_config,
                          "config.json: field 'use_sliding_window' is true but 'sliding_window' is null");
      for (int l = 0; l < c.n_layer; ++l)
        if (l >= from) c.window[l] = window;
    }
  }
  return Ok{};
}

// Gemma, Gemma 2 and Gemma 3's text model (transformers' modeling_gemma.py,
// modeling_gemma2.py, modeling_gemma3.py, v4.50-v4.57, and the v5 modular
// files' rope_parameters), LLaMA-shaped with:
//   all      RMSNorm scaling by (1 + w), embeddings times sqrt(d_model), a
//            GeGLU MLP, head_dim independent of d_model / H, no biases;
//   Gemma 2  norms after the attention and the MLP as well as before,
//            scores scaled by query_pre_attn_scalar^-1/2 and soft-capped,
//            final logits soft-capped, every other layer sliding (even ones);
//   Gemma 3  per-head q/k norms, every sliding_window_pattern-th layer global,
//            sliding layers rotating with rope_local_base_freq unscaled. Its
//            attention ignores attn_logit_softcapping (transformers does not
//            pass it on); final_logit_softcapping applies when set.
// Gemma 1's MLP reads hidden_act (transformers >= 4.48; older versions used
// hidden_activation, forcing the tanh GELU when it was null); Gemma 2 and 3
// read hidden_activation.
Status read_gemma(Fields& f, ModelConfig& c) {
  c.family = Family::llama;
  const bool g2 = c.model_type == "gemma2", g3 = c.model_type == "gemma3_text", g1 = !g2 && !g3;
  c.d_vocab = f.positive("vocab_size", g3 ? 262208 : 256000);
  c.d_model = f.positive("hidden_size", g1 ? 3072 : 2304);
  c.n_layer = f.positive("num_hidden_layers", g1 ? 28 : 26);
  c.n_head = f.positive("num_attention_heads", g1 ? 16 : 8);
  c.n_kv_head = f.positive("num_key_value_heads", g1 ? 16 : 4);
  c.d_head = f.positive("head_dim", 256);
  c.d_mlp = f.positive("intermediate_size", g1 ? 24576 : 9216);
  c.n_ctx = f.positive("max_position_embeddings", g3 ? 131072 : 8192);
  c.norm_eps = static_cast<float>(f.number("rms_norm_eps", 1e-6));
  const char* act_key = g1 ? "hidden_act" : "hidden_activation";
  const std::string act = f.string(act_key, "gelu_pytorch_tanh");
  c.tied_embeddings = f.boolean("tie_word_embeddings", true);
  c.bos_token_id = static_cast<int>(f.integer("bos_token_id", 2));
  const bool attention_bias = f.boolean("attention_bias", false);
  const double pre_attn = f.number("query_pre_attn_scalar", 256);
  const double attn_cap = g2 ? f.number("attn_logit_softcapping", 50.0) : 0.0;
  const double final_cap = g1 ? 0.0 : f.number("final_logit_softcapping", g2 ? 30.0 : 0.0);
  const int window = g1 ? 0 : f.positive("sliding_window", 4096);
  const long long pattern = g3 ? f.integer("sliding_window_pattern", f.integer("_sliding_window_pattern", 6)) : 2;
  const bool bidirectional = f.boolean("use_bidirectional_attention", false);
  if (!f.error.empty()) return make_error(ErrorCode::bad_config, f.error);
  HS_TRY(parse_activation(act_key, act, c.act));
  HS_TRY(finish_heads(c, "hidden_size", "num_attention_heads", "num_key_value_heads", true, "head_dim"));
  if (bidirectional)
    return make_error(ErrorCode::unsupported,
                      "config.json: field 'use_bidirectional_attention' is true (an embedding model such as EmbeddingGemma): "
                      "only causal Gemma language models are supported");
  if (attention_bias)
    return make_error(ErrorCode::unsupported, "config.json: field 'attention_bias' is true; Gemma checkpoints have no attention biases");
  if (!(pre_attn > 0)) return make_error(ErrorCode::bad_config, "config.json: field 'query_pre_attn_scalar' must be positive");
  if (attn_cap < 0 || final_cap < 0 || !std::isfinite(attn_cap) || !std::isfinite(final_cap))
    return make_error(ErrorCode::bad_config, "config.json: the soft-capping values must be positive numbers or null");

  // RoPE: v5 configs of Gemma 3 split rope_parameters by layer kind.
  const json* params = f.object("rope_parameters");
  if (!f.error.empty()) return make_error(ErrorCode::bad_config, f.error);
  double local_theta = f.number("rope_local_base_freq", 10000.0);
  if (params && params->contains("full_attention")) {
    json global = json::object();
    global["rope_parameters"] = (*params)["full_attention"];
    Fields gf{global, {}};
    HS_TRY(read_rope(gf, c, "rope_theta", 1000000.0, nullptr, 1.0));
    const json* local = params->contains("sliding_attention") ? &(*params)["sliding_attention"] : nullptr;
    if (local && local->is_object()) {
      Fields lf{*local, {}};
      local_theta = lf.number("rope_theta", local_theta);
      if (!lf.error.empty()) return make_error(ErrorCode::bad_config, "config.json: rope_parameters.sliding_attention: " + lf.error.substr(13));
    }
  } else {
    HS_TRY(read_rope(f, c, "rope_theta", g3 ? 1000000.0 : 10000.0, nullptr, 1.0));
  }
  if (!f.error.empty()) return make_error(ErrorCode::bad_config, f.error);

  c.norm = NormKind::rms_norm;
  c.norm_bias = false;
  c.norm_plus_one = true;
  c.gated_mlp = true;
  c.qkv_bias = c.out_bias = c.mlp_bias = false;
  c.embed_scale = std::sqrt(static_cast<float>(c.d_model));
  c.attn_scale = g1 ? 1.f / std::sqrt(static_cast<float>(c.d_head)) : static_cast<float>(1.0 / std::sqrt(pre_attn));
  c.attn_softcap = static_cast<float>(attn_cap);
  c.final_softcap = static_cast<float>(final_cap);
  c.norm_after_sublayer = !g1;
  c.qk_norm = g3 ? QkNorm::per_head : QkNorm::none;

  // Sliding windows: layer_types when given, else Gemma 2's even layers and
  // Gemma 3's all but every pattern-th.
  c.window.assign(c.n_layer, 0);
  if (g1) return Ok{};
  const json* types = f.find("layer_types");
  if (types && !types->is_null()) {
    HS_TRY(read_layer_types(*types, window, false, c));
  } else {
    if (pattern < 1) return make_error(ErrorCode::bad_config, "config.json: field 'sliding_window_pattern' must be positive");
    for (int l = 0; l < c.n_layer; ++l) c.window[l] = (l + 1) % pattern != 0 ? window : 0;
  }
  if (g3) {
    if (!(local_theta > 0) || !std::isfinite(local_theta))
      return make_error(ErrorCode::bad_config, "config.json: field 'rope_local_base_freq' must be a positive number");
    c.rope_local_theta = static_cast<float>(local_theta);
  }
  return Ok{};
}

// Phi-3, Phi-3.5 and Phi-4-mini (transformers' modeling_phi3.py and
// configuration_phi3.py, v4.45-v4.57): LLaMA's block with fused qkv_proj
// and gate_up_proj tensors, no biases, partial_rotary_factor, LongRoPE
// scaling, and sliding_window (when set) on every layer.
Status read_phi3(Fields& f, ModelConfig& c) {
  c.family = Family::llama;
  c.d_vocab = f.positive("vocab_size", 32064);
  c.d_model = f.positive("hidden_size", 3072);
  c.n_layer = f.positive("num_hidden_layers", 32);
  c.n_head = f.positive("num_attention_heads", 32);
  c.n_kv_head = f.has("num_key_value_heads") ? f.positive("num_key_value_heads", 1) : c.n_head;
  c.d_mlp = f.positive("intermediate_size", 8192);
  c.n_ctx = f.positive("max_position_embeddings", 4096);
  c.norm_eps = static_cast<float>(f.number("rms_norm_eps", 1e-5));
  const std::string act = f.string("hidden_act", "silu");
  c.tied_embeddings = f.boolean("tie_word_embeddings", false);
  c.bos_token_id = static_cast<int>(f.integer("bos_token_id", 1));
  const int window = f.has("sliding_window") ? f.positive("sliding_window", 1) : 0;
  if (!f.error.empty()) return make_error(ErrorCode::bad_config, f.error);
  HS_TRY(parse_activation("hidden_act", act, c.act));
  HS_TRY(finish_heads(c, "hidden_size", "num_attention_heads", "num_key_value_heads", false, nullptr));
  HS_TRY(read_rope(f, c, "rope_theta", 10000.0, nullptr, 1.0));
  c.norm = NormKind::rms_norm;
  c.norm_bias = false;
  c.gated_mlp = true;
  c.fused_projections = true;
  c.qkv_bias = c.out_bias = c.mlp_bias = false;
  c.attn_scale = 1.f / std::sqrt(static_cast<float>(c.d_head));
  c.window.assign(c.n_layer, window);
  return Ok{};
}

// StableLM (stablelm-2-1_6b and the StableLM 2/3B family; transformers'
// modeling_stablelm.py and configuration_stablelm.py, v4.38-v4.57): the
// LLaMA names with LayerNorms (with biases), partial rotary (25 % by
// default), optional q/k/v biases, optional per-head q/k LayerNorms with one
// weight per head (qk_layernorm), and optional parallel blocks that read one
// norm for both sublayers (use_parallel_residual).
Status read_stablelm(Fields& f, ModelConfig& c) {
  c.family = Family::llama;
  c.d_vocab = f.positive("vocab_size", 50304);
  c.d_model = f.positive("hidden_size", 2560);
  c.n_layer = f.positive("num_hidden_layers", 32);
  c.n_head = f.positive("num_attention_heads", 32);
  c.n_kv_head = f.positive("num_key_value_heads", 32);
  c.d_mlp = f.positive("intermediate_size", 6912);
  c.n_ctx = f.positive("max_position_embeddings", 4096);
  c.norm_eps = static_cast<float>(f.number("layer_norm_eps", 1e-5));
  const std::string act = f.string("hidden_act", "silu");
  c.tied_embeddings = f.boolean("tie_word_embeddings", false);
  c.bos_token_id = static_cast<int>(f.integer("bos_token_id", 0));
  c.qkv_bias = f.boolean("use_qkv_bias", false);
  const bool qk_layernorm = f.boolean("qk_layernorm", false);
  c.parallel_residual = f.boolean("use_parallel_residual", false);
  if (!f.error.empty()) return make_error(ErrorCode::bad_config, f.error);
  HS_TRY(parse_activation("hidden_act", act, c.act));
  HS_TRY(finish_heads(c, "hidden_size", "num_attention_heads", "num_key_value_heads", false, nullptr));
  HS_TRY(read_rope(f, c, "rope_theta", 10000.0, nullptr, 0.25));
  c.norm = NormKind::layer_norm;
  c.gated_mlp = true;
  c.out_bias = c.mlp_bias = false;
  c.attn_scale = 1.f / std::sqrt(static_cast<float>(c.d_head));
  if (qk_layernorm) {
    c.qk_norm = QkNorm::per_head;
    c.qk_norm_each_head = true;
  }
  return Ok{};
}

Status read_bert(Fields& f, ModelConfig& c) {
  c.family = Family::bert;
  c.d_vocab = f.positive("vocab_size", 30522);
  c.d_model = f.positive("hidden_size", 768);
  c.n_layer = f.positive("num_hidden_layers", 12);
  c.n_head = f.positive("num_attention_heads", 12);
  c.n_kv_head = c.n_head;
  c.d_mlp = f.positive("intermediate_size", 3072);
  c.n_ctx = f.positive("max_position_embeddings", 512);
  c.type_vocab_size = f.positive("type_vocab_size", 2);
  c.norm_eps = static_cast<float>(f.number("layer_norm_eps", 1e-12));
  const std::string act = f.string("hidden_act", "gelu");
  const std::string pos = f.string("position_embedding_type", "absolute");
  const bool decoder = f.boolean("is_decoder", false);
  c.tied_embeddings = f.boolean("tie_word_embeddings", true);
  if (!f.error.empty()) return make_error(ErrorCode::bad_config, f.error);
  HS_TRY(parse_activation("hidden_act", act, c.act));
  HS_TRY(finish_heads(c, "hidden_size", "num_attention_heads", "num_attention_heads", false, nullptr));
  if (pos != "absolute")
    return make_error(ErrorCode::unsupported, "config.json: field 'position_embedding_type' is \"" + pos +
                                                  "\"; only \"absolute\" is supported");
  if (decoder)
    return make_error(
        ErrorCode::unsupported,
        "config.json: field 'is_decoder' is true; only bidirectional BERT encoders are supported");
  c.causal = false;
  c.post_ln = true;
  c.final_norm = false;
  c.learned_positions = true;
  c.attn_scale = 1.f / std::sqrt(static_cast<float>(c.d_head));
  c.bos_token_id = -1;
  return Ok{};
}

Status read_opt(Fields& f, ModelConfig& c) {
  c.family = Family::opt;
  c.d_vocab = f.positive("vocab_size", 50272);
  c.d_model = f.positive("hidden_size", 768);
  c.n_layer = f.positive("num_hidden_layers", 12);
  c.n_head = f.positive("num_attention_heads", 12);
  c.n_kv_head = c.n_head;
  c.d_mlp = f.positive("ffn_dim", 3072);
  c.n_ctx = f.positive("max_position_embeddings", 2048);
  const std::string act = f.string("activation_function", "relu");
  const bool pre_ln = f.boolean("do_layer_norm_before", true);
  const bool remove_final = f.boolean("_remove_final_layer_norm", false);
  const int proj = f.has("word_embed_proj_dim") ? f.positive("word_embed_proj_dim", 1) : c.d_model;
  const bool bias = f.boolean("enable_bias", true);
  c.norm_affine = f.boolean("layer_norm_elementwise_affine", true);
  c.tied_embeddings = f.boolean("tie_word_embeddings", true);
  c.bos_token_id = static_cast<int>(f.integer("bos_token_id", 2));
  if (!f.error.empty()) return make_error(ErrorCode::bad_config, f.error);
  HS_TRY(parse_activation("activation_function", act, c.act));
  HS_TRY(finish_heads(c, "hidden_size", "num_attention_heads", "num_attention_heads", false, nullptr));
  if (!pre_ln)
    return make_error(
        ErrorCode::unsupported,
        "config.json: field 'do_layer_norm_before' is false: post-LN OPT (opt-350m) is not supported");
  if (proj != c.d_model)
    return make_error(ErrorCode::unsupported,
                      "config.json: field 'word_embed_proj_dim' (" + std::to_string(proj) +
                          ") differs from hidden_size (" + std::to_string(c.d_model) +
                          "): OPT project_in/project_out (opt-350m) is not supported");
  c.norm_eps = 1e-5f;  // nn.LayerNorm's default; OPT has no config field for it
  c.final_norm = !remove_final;
  c.qkv_bias = c.out_bias = c.mlp_bias = bias;
  c.norm_bias = c.norm_affine;
  c.learned_positions = true;
  c.position_offset = 2;
  c.attn_scale = 1.f / std::sqrt(static_cast<float>(c.d_head));
  return Ok{};
}

}  // namespace

Result<ModelConfig> config_from_json(const std::string& json_text) {
  const json j = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return make_error(ErrorCode::bad_config, "config.json: not valid JSON");
  if (!j.is_object())
    return make_error(ErrorCode::bad_config,
                      "config.json: the top level must be an object, found " + json_kind(j));
  Fields f{j, {}};
  const std::string supported = join(supported_model_types(), ", ");
  if (!f.has("model_type"))
    return make_error(ErrorCode::bad_config,
                      "config.json: field 'model_type' is missing (supported: " + supported + ")");
  ModelConfig c;
  c.model_type = f.string("model_type", "");
  if (!f.error.empty()) return make_error(ErrorCode::bad_config, f.error);
  // Gemma 3's multimodal checkpoints (4B and up): the language model's
  // config is text_config (Gemma3TextConfig's defaults for what it leaves
  // out); the vision tower is not read.
  if (c.model_type == "gemma3") {
    const json* text = f.object("text_config");
    if (!f.error.empty() || !text)
      return make_error(ErrorCode::bad_config, "config.json: model_type \"gemma3\" needs a 'text_config' object (its language model's config)");
    json inner = *text;
    inner["model_type"] = "gemma3_text";
    auto parsed = config_from_json(inner.dump());
    if (!parsed.ok()) {
      Error e = parsed.error();
      e.message = "config.json: text_config: " + e.message.substr(e.message.rfind("config.json: ", 0) == 0 ? 13 : 0);
      return e;
    }
    parsed->model_type = "gemma3";
    return parsed;
  }

  const std::string& t = c.model_type;
  if (t == "gpt2") HS_TRY(read_gpt2(f, c));
  else if (t == "gpt_neo") HS_TRY(read_gpt_neo(f, c));
  else if (t == "gpt_neox") HS_TRY(read_gpt_neox(f, c));
  else if (t == "llama" || t == "mistral" || t == "qwen2" || t == "qwen3" || t == "smollm3" || t == "olmo2")
    HS_TRY(read_llama(f, c));
  else if (t == "gemma" || t == "gemma2" || t == "gemma3_text") HS_TRY(read_gemma(f, c));
  else if (t == "phi3") HS_TRY(read_phi3(f, c));
  else if (t == "stablelm") HS_TRY(read_stablelm(f, c));
  else if (t == "bert") HS_TRY(read_bert(f, c));
  else if (t == "opt") HS_TRY(read_opt(f, c));
  else
    return make_error(ErrorCode::unsupported, "config.json: field 'model_type' is \"" + t +
                                                  "\", which is not supported (supported: " + supported +
                                                  ")");

  if (c.window.empty()) c.window.assign(c.n_layer, 0);
  if (static_cast<long long>(c.n_head) * c.d_head > (1ll << 26))
    return make_error(ErrorCode::bad_config, "config.json: num_attention_heads x head_dim is too large (" +
                                                 std::to_string(c.n_head) + " x " + std::to_string(c.d_head) +
                                                 ")");
  if (c.bos_token_id >= c.d_vocab) c.bos_token_id = -1;
  if (!(c.norm_eps > 0))
    return make_error(ErrorCode::bad_config, "config.json: the norm epsilon must be positive");
  return c;
}

}  // namespace hs
