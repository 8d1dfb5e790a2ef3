// Weight-geometry benchmark (not a test): a random GPT-2-small-shaped model
// (12 layers, 12 heads, d 768, dh 64, LayerNorm) and the time of each
// analysis the page runs on it. Prints CPU milliseconds (wall milliseconds
// with --threads N > 1), median of --repeat runs.
//
//   bench_geometry [--repeat N] [--vocab V] [--all] [--threads N]
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

#include "full_circuits.hpp"
#include "geometry.hpp"
#include "processing.hpp"
#include "random_gpt2.hpp"


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
    } else if (!std::strcmp(argv[i], "--threads") && i + 1 < argc && bench::use_threads(std::atoi(argv[i + 1]))) {
      ++i;
    } else {
      std::fprintf(stderr, "usage: bench_geometry [--repeat N] [--vocab V] [--all] [--threads N (at most %d here)]\n",
                   hs::max_thread_count());
      return 2;
    }
  }
  const hs::Model model = bench::random_gpt2_small(vocab);
  const auto raw = hs::WeightVariant::raw;
  std::printf("random GPT-2-small-shaped model: 12 layers x 12 heads, d 768, dh 64, vocab %d; %s ms, median of %d, %d thread(s)\n",
              vocab, bench::wall_clock() ? "wall" : "CPU", repeat, hs::thread_count());
  // What the page does once per model: the one pass, first of anything in
  // this process. In wasm that includes V8 compiling the hot functions with
  // its optimizing tier, which counts in the process's CPU time; the
  // first call of a function runs in the baseline tier until it returns.
  const double cold = bench::time_ms(1, [&] { return hs::weight_geometry(model, raw).ok(); });
  std::printf("%-58s %9.1f ms\n", "one pass, the first call in the process (weight_geometry)", cold);
  const double spectra = bench::time_ms(repeat, [&] { return hs::head_spectra(model, raw).ok(); });
  const double write = bench::time_ms(repeat, [&] {
    return hs::subspace_redundancy(model, raw, hs::HeadSubspace::output_write).ok();
  });
  const double comp = bench::time_ms(repeat, [&] { return hs::composition_scores(model, raw).ok(); });
  std::printf("%-58s %9.1f ms\n", "spectra: 144 OV + 144 QK (head_spectra)", spectra);
  std::printf("%-58s %9.1f ms\n", "write-subspace redundancy 144 x 144 (subspace_redundancy O)", write);
  std::printf("%-58s %9.1f ms\n", "Q/K/V composition scores, all l1 < l2 (composition_scores)", comp);
  std::printf("%-58s %9.1f ms\n", "total", spectra + write + comp);
  // What the page runs: the three in one pass, sharing the per-head work.
  const double one = bench::time_ms(repeat, [&] { return hs::weight_geometry(model, raw).ok(); });
  std::printf("%-58s %9.1f ms\n", "all three in one pass (weight_geometry)", one);
  // Where the time goes: the phases of a call, split where its progress
  // passes each boundary (the per-head factors, then the batched pairs).
  auto phases = [&](const char* title, const std::vector<double>& boundaries, const std::vector<const char*>& names,
                    const std::function<bool(const hs::ProgressFn&)>& f) {
    std::vector<double> t(1, bench::now_ms());
    const bool ok = f([&](double x) {
      while (t.size() <= boundaries.size() && x >= boundaries[t.size() - 1] - 1e-12) t.push_back(bench::now_ms());
      return true;
    });
    if (!ok) {
      std::fprintf(stderr, "failed\n");
      std::exit(1);
    }
    t.push_back(bench::now_ms());
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
              bench::time_ms(repeat, [&] { return hs::head_spectra(model, proc).ok(); }));
  std::printf("%-58s %9.1f ms\n", "composition scores, processed variant",
              bench::time_ms(repeat, [&] { return hs::composition_scores(model, proc).ok(); }));
  std::printf("%-58s %9.1f ms\n", "value-read redundancy (subspace_redundancy V)",
              bench::time_ms(repeat, [&] { return hs::subspace_redundancy(model, raw, hs::HeadSubspace::value_read).ok(); }));
  std::printf("%-58s %9.1f ms\n", "merge candidates (O + V redundancy, top 20)",
              bench::time_ms(repeat, [&] { return hs::merge_candidates(model, raw, 20).ok(); }));
  std::printf("%-58s %9.1f ms\n", "composition baseline, 300 samples",
              bench::time_ms(repeat, [&] { return hs::composition_baseline(768, 64, 300, 0).ok(); }));
  std::printf("%-58s %9.1f ms\n", "one head's OV factored SVD (QR + SVD, U and V)",
              bench::time_ms(repeat, [&] { return hs::head_circuit_svd(model, raw, 5, 3, hs::Circuit::ov).ok(); }));
  std::printf("%-58s %9.1f ms\n", "one pair's principal angles (L0H0 O vs L1H1 Q)", bench::time_ms(repeat, [&] {
                return hs::head_pair_geometry(model, raw, 0, 0, hs::HeadSubspace::output_write, 1, 1,
                                              hs::HeadSubspace::query_read)
                    .ok();
              }));
  std::printf("%-58s %9.1f ms\n", "OV token read-out, 4 directions x top 10",
              bench::time_ms(repeat, [&] { return hs::ov_token_readout(model, raw, 5, 3, 4, 10).ok(); }));
  hs::MatrixRM ue;
  std::printf("%-58s %9.1f ms\n", "W_U W_E (unembed_embed_product, once per variant)", bench::time_ms(1, [&] {
                auto r = hs::unembed_embed_product(model, raw);
                if (r) ue = std::move(*r);
                return r.ok();
              }));
  std::printf("%-58s %9.1f ms\n", "OV copying scores, 144 heads (given W_U W_E)",
              bench::time_ms(repeat, [&] { return hs::ov_copying_scores(model, raw, ue).ok(); }));
  return 0;
}
