// Forward-pass benchmark, native. Writes (once) a GPT-2-small-shaped
// checkpoint with random weights — 12 layers, d 768, 12 heads, 128 tokens —
// then reports load time and forward time in tokens/s and GFLOP/s.
//
//   bench_forward DIR [--tokens 128] [--repeats 5]
//
// The wasm twin (tests/bench/bench_wasm.mjs) reads the same DIR.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "forward.hpp"
#include "model.hpp"
#include "safetensors.hpp"

namespace {

constexpr int n_layer = 12, d_model = 768, n_head = 12, n_ctx = 1024, d_vocab = 50257;

const char* config_json = R"({"model_type": "gpt2", "n_layer": 12, "n_embd": 768, "n_head": 12,
  "n_positions": 1024, "vocab_size": 50257, "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5})";

void write_checkpoint(const std::filesystem::path& dir) {
  std::mt19937 rng(1234);
  std::normal_distribution<float> normal(0.f, 0.02f);
  auto random = [&](std::vector<std::int64_t> shape, float scale = 1.f, float offset = 0.f) {
    std::int64_t n = 1;
    for (auto s : shape) n *= s;
    std::vector<float> v(static_cast<std::size_t>(n));
    for (auto& x : v) x = offset + scale * normal(rng);
    return v;
  };
  std::vector<hs::SafetensorsTensorIn> tensors;
  auto add = [&](const std::string& name, std::vector<std::int64_t> shape, float scale = 1.f, float offset = 0.f) {
    tensors.push_back(hs::safetensors_tensor_f32(name, shape, random(shape, scale, offset)));
  };
  add("wte.weight", {d_vocab, d_model});
  add("wpe.weight", {n_ctx, d_model});
  for (int l = 0; l < n_layer; ++l) {
    const std::string p = "h." + std::to_string(l) + ".";
    add(p + "ln_1.weight", {d_model}, 1.f, 1.f);
    add(p + "ln_1.bias", {d_model});
    add(p + "attn.c_attn.weight", {d_model, 3 * d_model});
    add(p + "attn.c_attn.bias", {3 * d_model});
    add(p + "attn.c_proj.weight", {d_model, d_model});
    add(p + "attn.c_proj.bias", {d_model});
    add(p + "ln_2.weight", {d_model}, 1.f, 1.f);
    add(p + "ln_2.bias", {d_model});
    add(p + "mlp.c_fc.weight", {d_model, 4 * d_model});
    add(p + "mlp.c_fc.bias", {4 * d_model});
    add(p + "mlp.c_proj.weight", {4 * d_model, d_model});
    add(p + "mlp.c_proj.bias", {d_model});
  }
  add("ln_f.weight", {d_model}, 1.f, 1.f);
  add("ln_f.bias", {d_model});
  const auto bytes = hs::safetensors_serialize(tensors, {{"format", "pt"}});
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "model.safetensors", std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()),
                                                                   static_cast<std::streamsize>(bytes.size()));
  std::ofstream(dir / "config.json") << config_json;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Multiply-adds x 2 of the forward pass without the LM head: per layer the
// QKV, output and MLP projections (12 T d^2) and the attention products (2 T^2 d).
double forward_flops(int T) {
  const double d = d_model;
  return 2.0 * n_layer * (12.0 * T * d * d + 2.0 * T * T * d);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: bench_forward DIR [--tokens 128] [--repeats 5]\n");
    return 2;
  }
  const std::filesystem::path dir = argv[1];
  int tokens = 128, repeats = 5;
  for (int i = 2; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--tokens")) tokens = std::stoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--repeats")) repeats = std::stoi(argv[i + 1]);
  }
  if (!std::filesystem::exists(dir / "model.safetensors")) {
    std::printf("writing a random GPT-2-small-shaped checkpoint to %s\n", dir.c_str());
    write_checkpoint(dir);
  }

  auto start = std::chrono::steady_clock::now();
  auto bytes = hs::safetensors_read_bytes((dir / "model.safetensors").string());
  std::ifstream config_in(dir / "config.json");
  const std::string config_text((std::istreambuf_iterator<char>(config_in)), std::istreambuf_iterator<char>());
  if (!bytes) return std::fprintf(stderr, "%s\n", bytes.error().message.c_str()), 1;
  auto file = hs::safetensors_parse(bytes->data(), bytes->size(), "model.safetensors");
  auto config = hs::config_from_json(config_text);
  if (!file || !config) return std::fprintf(stderr, "cannot parse the checkpoint\n"), 1;
  auto model = hs::model_from_checkpoint(config.value(), {&file.value()});
  if (!model) return std::fprintf(stderr, "%s\n", model.error().message.c_str()), 1;
  const double load_s = seconds_since(start);

  std::vector<int> ids(static_cast<std::size_t>(tokens));
  for (int t = 0; t < tokens; ++t) ids[static_cast<std::size_t>(t)] = (t * 7919) % d_vocab;
  hs::RunOptions options;
  options.want_hidden = false;
  options.want_logits = false;
  std::vector<double> times;
  for (int r = 0; r < repeats + 1; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    auto result = hs::run_model(model.value(), ids, options);
    if (!result) return std::fprintf(stderr, "%s\n", result.error().message.c_str()), 1;
    if (r > 0) times.push_back(seconds_since(t0));  // the first run warms up
  }
  std::sort(times.begin(), times.end());
  const double median = times[times.size() / 2];
  std::printf("native load: %.3f s (%.1f MB)\n", load_s, static_cast<double>(bytes->size()) / 1e6);
  std::printf("native forward (%d tokens, median of %d, patterns + loss, no hidden/logits copies): %.3f s, %.0f tokens/s, %.1f GFLOP/s\n",
              tokens, repeats, median, tokens / median, forward_flops(tokens) / median / 1e9);
  return 0;
}
