// Weight-geometry benchmark (not a test): a random GPT-2-small-shaped model
// (12 layers, 12 heads, d 768, dh 64, LayerNorm) and the time of each
// analysis the page runs on it. Prints CPU milliseconds (the process is single-threaded), median of
// --repeat runs.
//
//   bench_geometry [--repeat N] [--vocab V] [--all]
//
// The headline three (the page's first view): all 144 OV + 144 QK spectra,
// the write-subspace redundancy matrix, all Q/K/V composition scores: first
// the one pass (weight_geometry, what the page runs) as the process's first
// call, then each alone and in one pass again (median of --repeat). --all
// adds the processed variant, the other subspace kinds, the random baseline,
// the full-OV copying scores (needs the vocab: W_U W_E costs V d^2) and
// single-head calls.
#include <algorithm>
#include <ctime>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "full_ov_circuit.hpp"
#include "geometry.hpp"
#include "processing.hpp"

namespace {

hs::Model random_gpt2_small(int vocab) {
  hs::Model m;
  hs::ModelConfig& c = m.config;
  c.model_type = "gpt2";
  c.n_layer = 12;
  c.d_model = 768;
  c.n_head = c.n_kv_head = 12;
  c.d_head = 64;
  c.d_mlp = 3072;
  c.d_vocab = vocab;
  c.n_ctx = 1024;
  c.learned_positions = true;
  const int d = c.d_model;
  std::mt19937 rng(1234);
  std::normal_distribution<float> nd(0.f, 0.02f);
  auto fill = [&](hs::MatrixRM& M, int r, int cols) {
    M.resize(r, cols);
    for (Eigen::Index i = 0; i < M.size(); ++i) M.data()[i] = nd(rng);
  };
  auto vec = [&](hs::RowVectorF& v, int n, float base) {
    v.resize(n);
    for (int i = 0; i < n; ++i) v[i] = base + nd(rng);
  };
  for (int l = 0; l < c.n_layer; ++l) {
    hs::LayerWeights L;
    fill(L.W_Q, d, d);
    fill(L.W_K, d, d);
    fill(L.W_V, d, d);
    fill(L.W_O, d, d);
    vec(L.b_Q, d, 0);
    vec(L.b_K, d, 0);
    vec(L.b_V, d, 0);
    vec(L.b_O, d, 0);
    vec(L.ln1_w, d, 1);
    vec(L.ln1_b, d, 0);
    vec(L.ln2_w, d, 1);
    vec(L.ln2_b, d, 0);
    m.weights.layers.push_back(std::move(L));  // MLP weights are not read by the geometry
  }
  fill(m.weights.W_E, vocab, d);
  m.weights.W_U = m.weights.W_E.transpose();
  vec(m.weights.b_U, vocab, 0);
  vec(m.weights.ln_final_w, d, 1);
  vec(m.weights.ln_final_b, d, 0);
  return m;
}

// CPU time of this (single-threaded) process: on a shared 2-core machine wall
// time mostly measures the neighbours.
double now_ms() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return t.tv_sec * 1e3 + t.tv_nsec * 1e-6;
}

// Median time of `repeat` runs of f, which returns false on failure.
double time_ms(int repeat, const std::function<bool()>& f) {
  std::vector<double> t;
  for (int r = 0; r < repeat; ++r) {
    const double t0 = now_ms();
    if (!f()) {
      std::fprintf(stderr, "failed\n");
      std::exit(1);
    }
    t.push_back(now_ms() - t0);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int repeat = 3, vocab = 50257;
  bool all = false;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--repeat") && i + 1 < argc) {
      repeat = std::atoi(argv[++i]);
    } else if (!std::strcmp(argv[i], "--vocab") && i + 1 < argc) {
      vocab = std::atoi(argv[++i]);
    } else if (!std::strcmp(argv[i], "--all")) {
      all = true;
    } else {
      std::fprintf(stderr, "usage: bench_geometry [--repeat N] [--vocab V] [--all]\n");
      return 2;
    }
  }
  const hs::Model model = random_gpt2_small(vocab);
  const auto raw = hs::WeightVariant::raw;
  std::printf("random GPT-2-small-shaped model: 12 layers x 12 heads, d 768, dh 64, vocab %d; CPU ms, median of %d\n", vocab,
              repeat);
  // What the page does once per model: the one pass, first of anything in
  // this process. In wasm that includes V8 compiling the hot functions with
  // its optimizing tier, which counts in the process's CPU time; the
  // first call of a function runs in the baseline tier until it returns.
  const double cold = time_ms(1, [&] { return hs::weight_geometry(model, raw).ok(); });
  std::printf("%-58s %9.1f ms\n", "one pass, the first call in the process (weight_geometry)", cold);
  const double spectra = time_ms(repeat, [&] { return hs::head_spectra(model, raw).ok(); });
  const double write = time_ms(repeat, [&] {
    return hs::subspace_redundancy(model, raw, hs::HeadSubspace::output_write).ok();
  });
  const double comp = time_ms(repeat, [&] { return hs::composition_scores(model, raw).ok(); });
  std::printf("%-58s %9.1f ms\n", "spectra: 144 OV + 144 QK (head_spectra)", spectra);
  std::printf("%-58s %9.1f ms\n", "write-subspace redundancy 144 x 144 (subspace_redundancy O)", write);
  std::printf("%-58s %9.1f ms\n", "Q/K/V composition scores, all l1 < l2 (composition_scores)", comp);
  std::printf("%-58s %9.1f ms\n", "total", spectra + write + comp);
  // What the page runs: the three in one pass, sharing the per-head work.
  const double one = time_ms(repeat, [&] { return hs::weight_geometry(model, raw).ok(); });
  std::printf("%-58s %9.1f ms\n", "all three in one pass (weight_geometry)", one);
  // Where the time goes: the phases of a call, split where its progress
  // passes each boundary (the per-head factors, then the batched pairs).
  auto phases = [&](const char* title, const std::vector<double>& boundaries, const std::vector<const char*>& names,
                    const std::function<bool(const hs::ProgressFn&)>& f) {
    std::vector<double> t(1, now_ms());
    const bool ok = f([&](double x) {
      while (t.size() <= boundaries.size() && x >= boundaries[t.size() - 1] - 1e-12) t.push_back(now_ms());
      return true;
    });
    if (!ok) {
      std::fprintf(stderr, "failed\n");
      std::exit(1);
    }
    t.push_back(now_ms());
    std::printf("  %s:   ", title);
    for (std::size_t p = 0; p + 1 < t.size(); ++p) std::printf("%s %s %.1f ms", p ? "," : "", names[p], t[p + 1] - t[p]);
    std::printf("\n");
  };
  phases("redundancy O", {0.15}, {"per-head factors", "batched pairs"}, [&](const hs::ProgressFn& p) {
    return hs::subspace_redundancy(model, raw, hs::HeadSubspace::output_write, p).ok();
  });
  phases("composition", {0.1}, {"per-head factors", "batched pairs"},
         [&](const hs::ProgressFn& p) { return hs::composition_scores(model, raw, p).ok(); });
  // weight_geometry's progress: per head to 0.25, redundancy's pairs to 0.45, then composition's.
  phases("one pass", {0.25, 0.45}, {"per head", "redundancy pairs", "composition pairs"},
         [&](const hs::ProgressFn& p) { return hs::weight_geometry(model, raw, 4, p).ok(); });
  if (!all) return 0;

  const auto proc = hs::WeightVariant::processed;
  std::printf("%-58s %9.1f ms\n", "spectra, processed variant",
              time_ms(repeat, [&] { return hs::head_spectra(model, proc).ok(); }));
  std::printf("%-58s %9.1f ms\n", "composition scores, processed variant",
              time_ms(repeat, [&] { return hs::composition_scores(model, proc).ok(); }));
  std::printf("%-58s %9.1f ms\n", "value-read redundancy (subspace_redundancy V)",
              time_ms(repeat, [&] { return hs::subspace_redundancy(model, raw, hs::HeadSubspace::value_read).ok(); }));
  std::printf("%-58s %9.1f ms\n", "merge candidates (O + V redundancy, top 20)",
              time_ms(repeat, [&] { return hs::merge_candidates(model, raw, 20).ok(); }));
  std::printf("%-58s %9.1f ms\n", "composition baseline, 300 samples",
              time_ms(repeat, [&] { return hs::composition_baseline(768, 64, 300, 0).ok(); }));
  std::printf("%-58s %9.1f ms\n", "one head's OV factored SVD (QR + SVD, U and V)",
              time_ms(repeat, [&] { return hs::head_circuit_svd(model, raw, 5, 3, hs::Circuit::ov).ok(); }));
  std::printf("%-58s %9.1f ms\n", "one pair's principal angles (L0H0 O vs L1H1 Q)", time_ms(repeat, [&] {
                return hs::head_pair_geometry(model, raw, 0, 0, hs::HeadSubspace::output_write, 1, 1,
                                              hs::HeadSubspace::query_read)
                    .ok();
              }));
  std::printf("%-58s %9.1f ms\n", "OV token read-out, 4 directions x top 10",
              time_ms(repeat, [&] { return hs::ov_token_readout(model, raw, 5, 3, 4, 10).ok(); }));
  hs::MatrixRM ue;
  std::printf("%-58s %9.1f ms\n", "W_U W_E (unembed_embed_product, once per variant)", time_ms(1, [&] {
                auto r = hs::unembed_embed_product(model, raw);
                if (r) ue = std::move(*r);
                return r.ok();
              }));
  std::printf("%-58s %9.1f ms\n", "OV copying scores, 144 heads (given W_U W_E)",
              time_ms(repeat, [&] { return hs::ov_copying_scores(model, raw, ue).ok(); }));
  return 0;
}
