// Patching benchmark (not a test): on a random GPT-2-small-shaped model and
// an IOI-length pair of texts, the CPU time of activation patching over
// every head (144 patches, each resumed at the patched layer from the cached
// residual) and of path patching from every sender head to the logits,
// against the same number of full forwards with logits (what a patch costs
// when every patch reruns the model from the embeddings, as
// TransformerLens's patching functions do). Prints CPU milliseconds, median
// of --repeat runs.
//
//   bench_patching [--repeat N] [--tokens T]
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "forward.hpp"
#include "patching.hpp"
#include "random_gpt2.hpp"
#include "rng.hpp"

int main(int argc, char** argv) {
  int repeat = 3, tokens = 15;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--repeat")) repeat = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--tokens")) tokens = std::atoi(argv[i + 1]);
  }
  const int vocab = 50257;
  const hs::Model model = bench::random_gpt2_small(vocab, true);
  const int n_heads = model.config.n_layer * model.config.n_head;
  hs::Rng rng(7);
  std::vector<int> clean;
  for (int i = 0; i < tokens; ++i) clean.push_back(rng.below(vocab));
  std::vector<int> corrupt = clean;
  corrupt[tokens / 2] = (corrupt[tokens / 2] + 1) % vocab;

  hs::RunOptions logits_only;
  logits_only.want_patterns = logits_only.want_hidden = logits_only.want_loss = false;
  const double forwards = bench::time_ms(repeat, [&] {
    for (int i = 0; i < n_heads; ++i) {
      if (!hs::run_model(model, corrupt, logits_only).ok()) return false;
    }
    return true;
  });
  hs::PatchOptions o;
  o.metric.answer = 1;
  o.metric.wrong = 2;
  const double heads = bench::time_ms(repeat, [&] { return hs::activation_patch(model, clean, corrupt, o).ok(); });
  hs::PathPatchOptions po;
  po.metric = o.metric;
  const double path = bench::time_ms(repeat, [&] { return hs::path_patch(model, clean, corrupt, po).ok(); });
  const double dla = bench::time_ms(repeat, [&] { return hs::direct_logit_attribution(model, clean, o.metric).ok(); });
  std::printf("patching, %d tokens, GPT-2-small shape (vocab %d), CPU ms, median of %d\n", tokens, vocab, repeat);
  std::printf("%d full forwards with logits          %9.1f ms\n", n_heads, forwards);
  std::printf("activation patching, every head       %9.1f ms   %.3fx the forwards\n", heads, heads / forwards);
  std::printf("path patching to the logits, every head %7.1f ms   %.3fx the forwards\n", path, path / forwards);
  std::printf("direct logit attribution              %9.1f ms   %.3fx one forward\n", dla, dla / (forwards / n_heads));
  return 0;
}
