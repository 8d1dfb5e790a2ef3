// Corpus-statistics benchmark (not a test): on a random GPT-2-small-shaped
// model, the CPU time of a corpus pass (corpus_stats: per text the forward,
// the detectors and pattern statistics, and the chance level's uniform
// pattern; then the bootstrap) against the forwards alone (run_model with
// the patterns, no LM head: what the statistics need), and the gradient
// importance over the same texts against those forwards. Prints CPU
// milliseconds (wall milliseconds with --threads N > 1), median of --repeat
// runs.
//
//   bench_corpus [--repeat N] [--texts N] [--tokens T] [--threads N]
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "corpus.hpp"
#include "forward.hpp"
#include "interventions.hpp"
#include "random_gpt2.hpp"
#include "rng.hpp"

int main(int argc, char** argv) {
  int repeat = 3, n_texts = 64, tokens = 128;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--repeat")) repeat = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--texts")) n_texts = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--tokens")) tokens = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--threads") && !bench::use_threads(std::atoi(argv[i + 1]))) {
      std::fprintf(stderr, "bench_corpus: at most %d threads here\n", hs::max_thread_count());
      return 2;
    }
  }
  const int vocab = 50257;
  const hs::Model model = bench::random_gpt2_small(vocab, true);
  // Texts with repeats (a random prefix, then part of it again), as real text has.
  hs::Rng rng(7);
  std::vector<std::vector<int>> texts(n_texts);
  for (auto& t : texts) {
    for (int i = 0; i < tokens; ++i) t.push_back(i < tokens / 2 ? rng.below(vocab) : t[i - tokens / 2]);
  }
  hs::RunOptions patterns_only;
  patterns_only.want_hidden = patterns_only.want_logits = patterns_only.want_loss = false;
  const double forwards = bench::time_ms(repeat, [&] {
    for (const auto& t : texts) {
      if (!hs::run_model(model, t, patterns_only).ok()) return false;
    }
    return true;
  });
  hs::CorpusOptions o;
  o.max_tokens = tokens;
  const double corpus = bench::time_ms(repeat, [&] { return hs::corpus_stats(model, texts, o).ok(); });
  const double gradient = bench::time_ms(repeat, [&] {
    for (const auto& t : texts) {
      if (!hs::gradient_importance(model, t).ok()) return false;
    }
    return true;
  });
  std::printf("corpus of %d texts x %d tokens, GPT-2-small shape (vocab %d), %s ms, median of %d, %d thread(s)\n", n_texts,
              tokens, vocab, bench::wall_clock() ? "wall" : "CPU", repeat, hs::thread_count());
  std::printf("forwards with patterns, no LM head   %9.1f ms\n", forwards);
  std::printf("corpus pass (corpus_stats)           %9.1f ms   %.3fx the forwards\n", corpus, corpus / forwards);
  std::printf("gradient importance, every text      %9.1f ms   %.3fx the forwards\n", gradient, gradient / forwards);
  return 0;
}
