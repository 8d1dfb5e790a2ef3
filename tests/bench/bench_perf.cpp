// The issue-8 benchmark, native and (built by tests/bench/run.sh with em++)
// wasm under node: GEMM GFLOP/s on the forward's shapes, checkpoint load, and
// the GPT-2-small-shaped forward (12 layers, d 768, 12 heads, T tokens) with
// and without the LM head + loss. Writes the random checkpoint to DIR once
// (tests/bench/torch_reference.py reads the same file). Prints human lines and
// `RESULT <key> <value>` lines for run.sh. Times are CPU seconds of this
// (single-threaded) process, medians of repeated runs: on a shared machine
// wall time mostly measures the neighbours. In wasm the CPU time is node's
// process.cpuUsage() (see node_cpu_clock.js). With --threads N > 1 the core
// shares its products and heads over N threads (core/parallel.hpp) and the
// times are wall seconds (CPU time would add the threads' times up).
//
//   bench_perf DIR [--tokens 128] [--repeats 7] [--label native] [--threads 1]
#include <algorithm>
#include <cstdio>
#include <ctime>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "checkpoint.hpp"
#include "config.hpp"
#include "forward.hpp"
#include "kernels.hpp"
#include "model.hpp"
#include "parallel.hpp"
#include "safetensors.hpp"

namespace {

constexpr int n_layer = 12, d_model = 768, n_ctx = 1024, d_vocab = 50257;

const char* config_json = R"({"model_type": "gpt2", "n_layer": 12, "n_embd": 768, "n_head": 12,
  "n_positions": 1024, "vocab_size": 50257, "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5})";

void write_checkpoint(const std::filesystem::path& dir) {
  std::mt19937 rng(1234);
  std::normal_distribution<float> normal(0.f, 0.02f);
  std::vector<hs::SafetensorsTensorIn> tensors;
  auto add = [&](const std::string& name, std::vector<std::int64_t> shape, float scale = 1.f, float offset = 0.f) {
    std::int64_t n = 1;
    for (auto s : shape) n *= s;
    std::vector<float> v(static_cast<std::size_t>(n));
    for (auto& x : v) x = offset + scale * normal(rng);
    tensors.push_back(hs::safetensors_tensor_f32(name, shape, std::move(v)));
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
  std::error_code no_throw;
  std::filesystem::create_directories(dir, no_throw);
  std::ofstream(dir / "model.safetensors", std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  std::ofstream(dir / "config.json") << config_json;
}

// CPU time (wall time with threads); in wasm, run.sh links
// tests/bench/node_cpu_clock.js, which serves the CPU clock from node's
// process.cpuUsage().
bool wall_clock = false;
double now_s() {
  timespec t{};
  clock_gettime(wall_clock ? CLOCK_MONOTONIC : CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) * 1e-9;
}

// Median CPU time of `repeats` runs after two warm-up runs (V8 tiers wasm up
// in the background: the first calls run baseline code).
double median_s(int repeats, const std::function<void()>& f) {
  f();
  f();
  std::vector<double> t;
  for (int r = 0; r < repeats; ++r) {
    const double t0 = now_s();
    f();
    t.push_back(now_s() - t0);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// 2 x multiply-adds of the forward without the LM head: QKV, output and MLP
// projections (12 T d^2) and the attention products (2 T^2 d) per layer.
double forward_flops(int T) {
  const double d = d_model;
  return 2.0 * n_layer * (12.0 * T * d * d + 2.0 * T * T * d);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: bench_perf DIR [--tokens 128] [--repeats 7] [--label native] [--threads 1]\n");
    return 2;
  }
  const std::filesystem::path dir = argv[1];
  int tokens = 128, repeats = 7;
  std::string label = "native";
#ifdef __EMSCRIPTEN__
  label = "wasm";
#endif
  for (int i = 2; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--tokens")) tokens = std::stoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--repeats")) repeats = std::stoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--label")) label = argv[i + 1];
    if (!std::strcmp(argv[i], "--threads")) {
      const int asked = std::stoi(argv[i + 1]);
      if (hs::set_thread_count(asked) != asked) {
        std::fprintf(stderr, "bench_perf: this build runs at most %d threads\n", hs::max_thread_count());
        return 2;
      }
      wall_clock = asked > 1;
    }
  }
  std::error_code no_throw;  // wasm builds have exceptions disabled
  if (!std::filesystem::exists(dir / "model.safetensors", no_throw)) {
    std::printf("writing a random GPT-2-small-shaped checkpoint to %s\n", dir.c_str());
    write_checkpoint(dir);
  }
  const char* L = label.c_str();

  std::printf("times: %s seconds, median of %d runs (GEMM: %d), %d thread(s)\n", wall_clock ? "wall" : "CPU", repeats,
              repeats * 3, hs::thread_count());
  // 1. GEMM on the forward's shapes: [T, K] x [K, N] + bias.
  struct Shape {
    const char* name;
    int K, N;
  };
  const Shape shapes[] = {{"qkv", 768, 2304}, {"attn_out", 768, 768}, {"mlp_in", 768, 3072}, {"mlp_out", 3072, 768}};
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  double gemm_flops = 0, gemm_time = 0;
  // Two passes over the shapes, the first unreported: in wasm, V8 compiles the
  // optimised tier in background threads whose CPU time this clock counts.
  for (int pass = 0; pass < 2; ++pass)
  for (const Shape& s : shapes) {
    std::vector<float> A(static_cast<std::size_t>(tokens) * s.K), B(static_cast<std::size_t>(s.K) * s.N), bias(s.N),
        C(static_cast<std::size_t>(tokens) * s.N);
    for (auto& x : A) x = u(rng);
    for (auto& x : B) x = u(rng);
    for (auto& x : bias) x = u(rng);
    const double t = median_s(repeats * 3, [&] {
      hs::gemm(tokens, s.N, s.K, A.data(), s.K, B.data(), s.N, C.data(), s.N, bias.data());
    });
    const double flops = 2.0 * tokens * s.K * s.N;
    if (pass == 0) continue;
    gemm_flops += flops;
    gemm_time += t;
    std::printf("%s gemm %-8s [%d, %d] x [%d, %d]: %.3f ms, %.1f GFLOP/s\n", L, s.name, tokens, s.K, s.K, s.N, t * 1e3,
                flops / t / 1e9);
    std::printf("RESULT %s.gemm_%s_gflops %.2f\n", L, s.name, flops / t / 1e9);
  }
  std::printf("RESULT %s.gemm_gflops %.2f\n", L, gemm_flops / gemm_time / 1e9);

  // 2. Load.
  const double t_load0 = now_s();
  auto bytes = hs::safetensors_read_bytes((dir / "model.safetensors").string());
  std::ifstream config_in(dir / "config.json");
  const std::string config_text((std::istreambuf_iterator<char>(config_in)), std::istreambuf_iterator<char>());
  if (!bytes) return std::fprintf(stderr, "%s\n", bytes.error().message.c_str()), 1;
  auto file = hs::safetensors_parse(bytes->data(), bytes->size(), "model.safetensors");
  auto config = hs::config_from_json(config_text);
  if (!file || !config) return std::fprintf(stderr, "cannot parse the checkpoint\n"), 1;
  auto model = hs::model_from_checkpoint(config.value(), {&file.value()});
  if (!model) return std::fprintf(stderr, "%s\n", model.error().message.c_str()), 1;
  const double load_s = now_s() - t_load0;
  std::printf("RESULT %s.load_s %.4f\n", L, load_s);

  // 3. Forward: the same token ids as torch_reference.py.
  std::vector<int> ids(static_cast<std::size_t>(tokens));
  for (int t = 0; t < tokens; ++t) ids[static_cast<std::size_t>(t)] = (t * 7919) % d_vocab;
  hs::RunOptions body;  // patterns (as output_attentions), no hidden copies, no LM head
  body.want_hidden = false;
  body.want_logits = false;
  body.want_loss = false;
  hs::RunOptions with_head = body;  // + LM head and the next-token loss
  with_head.want_loss = true;
  float loss = 0;
  bool ok = true;
  const double t_body = median_s(repeats, [&] { ok = ok && hs::run_model(model.value(), ids, body).ok(); });
  const double t_head = median_s(repeats, [&] {
    auto r = hs::run_model(model.value(), ids, with_head);
    ok = ok && r.ok();
    if (r) loss = r->loss;
  });
  if (!ok) return std::fprintf(stderr, "run_model failed\n"), 1;
  std::printf("%s forward, %d tokens, no LM head: %.3f s (%.1f GFLOP/s); with LM head + loss: %.3f s; loss %.6f\n", L,
              tokens, t_body, forward_flops(tokens) / t_body / 1e9, t_head, loss);
  std::printf("RESULT %s.forward_s %.4f\n", L, t_body);
  std::printf("RESULT %s.forward_head_s %.4f\n", L, t_head);
  std::printf("RESULT %s.loss %.6f\n", L, loss);
  return 0;
}
