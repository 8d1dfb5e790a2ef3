// The thread pool (core/parallel.hpp) and what runs on it: every result must
// have the same bits with one thread as with several (each item's arithmetic
// does not depend on the split), so these tests compare exactly.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstring>
#include <random>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

#include "../bench/random_gpt2.hpp"
#include "corpus.hpp"
#include "forward.hpp"
#include "geometry.hpp"
#include "interventions.hpp"
#include "kernels.hpp"
#include "parallel.hpp"

namespace {

// Runs f with n threads, then restores the count the test started with.
template <class F>
auto with_threads(int n, F&& f) {
  const int before = hs::thread_count();
  hs::set_thread_count(n);
  struct Restore {
    int n;
    ~Restore() { hs::set_thread_count(n); }
  } restore{before};
  return f();
}

template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

// f()'s value (f returns a Result, which must be ok) with 1 thread and with 2.
template <class F>
auto on_one_and_two(F&& f) {
  const auto value = [&] {
    auto r = f();
    REQUIRE(r.ok());
    return std::move(*r);
  };
  auto one = with_threads(1, value);
  return std::make_pair(std::move(one), with_threads(2, value));
}

// A random GPT-2-small-shaped model (tests/bench/random_gpt2.hpp) cut to its first `layers` layers.
hs::Model random_model(int vocab, int layers, bool with_mlp) {
  hs::Model model = bench::random_gpt2_small(vocab, with_mlp);
  model.weights.layers.resize(static_cast<std::size_t>(layers));
  model.config.n_layer = layers;
  return model;
}

// Non-empty, and the same bits.
bool same(const std::vector<double>& a, const std::vector<double>& b) { return !a.empty() && same_bits(a, b); }

}  // namespace

TEST_CASE("parallel: parallel_for covers the range once, in parts, and nests inline", "[parallel]") {
  with_threads(4, [] {
    for (std::ptrdiff_t n : {1, 2, 3, 7, 64, 1001}) {
      std::vector<std::atomic<int>> seen(static_cast<std::size_t>(n));
      std::atomic<int> parts{0}, nested_parts{0};
      hs::parallel_for(n, [&](std::ptrdiff_t b, std::ptrdiff_t e) {
        ++parts;
        for (std::ptrdiff_t i = b; i < e; ++i) ++seen[static_cast<std::size_t>(i)];
        // (With one part the caller runs it as a plain call, and a product
        // inside may still use the pool.)
        if (n > 1)
          hs::parallel_for(8, [&](std::ptrdiff_t nb, std::ptrdiff_t ne) {
            ++nested_parts;
            CHECK(nb == 0);
            CHECK(ne == 8);
          });
      });
      for (auto& s : seen) CHECK(s.load() == 1);
      CHECK(parts.load() == std::min<std::ptrdiff_t>(n, hs::thread_count()));
      if (n > 1) CHECK(nested_parts.load() == parts.load());
    }
    // min_items: 10 items of at least 4 per part are at most 2 parts.
    std::atomic<int> parts{0};
    hs::parallel_for(10, [&](std::ptrdiff_t, std::ptrdiff_t) { ++parts; }, 4);
    CHECK(parts.load() <= 2);
  });
}

TEST_CASE("parallel: an exception in a part reaches the caller after every part ends", "[parallel]") {
  with_threads(4, [] {
    const int parts = std::min(4, hs::thread_count());
    std::atomic<int> finished{0};
    CHECK_THROWS_WITH(hs::parallel_for(4, [&](std::ptrdiff_t b, std::ptrdiff_t e) {
                        if (b <= 1 && 1 < e) throw std::runtime_error("item 1 failed");
                        std::this_thread::sleep_for(std::chrono::milliseconds(20));
                        ++finished;
                      }),
                      "item 1 failed");
    CHECK(finished.load() == parts - 1);
    // The pool still works after it.
    std::atomic<int> sum{0};
    hs::parallel_for(100, [&](std::ptrdiff_t b, std::ptrdiff_t e) { sum += static_cast<int>(e - b); });
    CHECK(sum.load() == 100);
  });
}

TEST_CASE("parallel: set_thread_count clamps to what the machine allows", "[parallel]") {
  with_threads(1, [] {
    CHECK(hs::set_thread_count(0) == 1);
    CHECK(hs::set_thread_count(1000) == hs::max_thread_count());
    CHECK(hs::thread_count() == hs::max_thread_count());
    return 0;
  });
  CHECK(hs::max_thread_count() >= 1);
}

TEST_CASE("parallel: products split over threads have the same bits as on one", "[parallel][kernels]") {
  std::mt19937 rng(7);
  std::normal_distribution<float> nd;
  // Shapes past the split size, split by columns and by rows, with edges.
  const int shapes[][3] = {{128, 2304, 768}, {129, 775, 301}, {1000, 40, 300}, {15, 50257, 64}, {300, 301, 299}};
  for (const auto& s : shapes) {
    const int M = s[0], N = s[1], K = s[2];
    std::vector<float> A(static_cast<std::size_t>(M) * K), B(static_cast<std::size_t>(K) * N), bias(N);
    for (float& x : A) x = nd(rng);
    for (float& x : B) x = nd(rng);
    for (float& x : bias) x = nd(rng);
    const auto product = [&](bool nt) {
      std::vector<float> C(static_cast<std::size_t>(M) * N);
      if (nt) hs::gemm_nt(M, N, K, A.data(), K, B.data(), K, C.data(), N);  // B read as [N, K]
      else hs::gemm(M, N, K, A.data(), K, B.data(), N, C.data(), N, bias.data());
      return C;
    };
    for (bool nt : {false, true}) {
      INFO(M << "x" << N << "x" << K << (nt ? " nt" : ""));
      const auto one = with_threads(1, [&] { return product(nt); });
      const auto two = with_threads(2, [&] { return product(nt); });
      const auto four = with_threads(4, [&] { return product(nt); });
      CHECK(same_bits(one, two));
      CHECK(same_bits(one, four));
    }
  }
}

TEST_CASE("parallel: a forward on threads has the same bits as on one", "[parallel][forward]") {
  const hs::Model model = bench::random_gpt2_small(500, true);
  std::vector<int> ids(64);
  for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int>((i * 37 + 11) % 500);
  const auto [one, two] = on_one_and_two([&] { return hs::run_model(model, ids); });
  CHECK(same_bits(one.patterns, two.patterns));
  CHECK(same_bits(one.hidden, two.hidden));
  CHECK(same_bits(one.logits, two.logits));
  CHECK(std::memcmp(&one.loss, &two.loss, sizeof(float)) == 0);
}

TEST_CASE("parallel: the weight geometry on threads has the same bits as on one", "[parallel][geometry]") {
  const hs::Model model = random_model(100, 4, false);  // 48 heads: every pair product is still split
  const auto [one, two] = on_one_and_two([&] { return hs::weight_geometry(model, hs::WeightVariant::raw); });
  CHECK(same(one.spectra.ov.sigma, two.spectra.ov.sigma));
  CHECK(same(one.spectra.qk.sigma, two.spectra.qk.sigma));
  CHECK(same(one.write_redundancy.overlap, two.write_redundancy.overlap));
  CHECK(one.write_redundancy.rank == two.write_redundancy.rank);
  CHECK(same(one.composition.q, two.composition.q));
  CHECK(same(one.composition.k, two.composition.k));
  CHECK(same(one.composition.v, two.composition.v));
  CHECK(same(one.composition.null_k, two.composition.null_k));
}

TEST_CASE("parallel: a corpus pass on threads has the same bits as on one", "[parallel][corpus]") {
  const hs::Model model = random_model(300, 2, true);
  std::vector<std::vector<int>> texts(6);
  for (std::size_t t = 0; t < texts.size(); ++t) {
    for (int i = 0; i < 40; ++i) texts[t].push_back(static_cast<int>((t * 131 + (i % 20) * 17) % 300));  // a repeat
  }
  hs::CorpusOptions options;
  options.resamples = 200;
  const auto [one, two] = on_one_and_two([&] { return hs::corpus_stats(model, texts, options); });
  REQUIRE(one.metrics.size() == two.metrics.size());
  for (std::size_t k = 0; k < one.metrics.size(); ++k) {
    INFO(one.metrics[k].name);
    CHECK(same(one.metrics[k].per_text, two.metrics[k].per_text));
    CHECK(same(one.metrics[k].lo, two.metrics[k].lo));
    CHECK(same(one.metrics[k].hi, two.metrics[k].hi));
    CHECK(same(one.metrics[k].chance, two.metrics[k].chance));
  }
  CHECK(same(one.role_share, two.role_share));
  CHECK(one.dominant_offset == two.dominant_offset);
  REQUIRE(one.examples.size() == two.examples.size());
  for (std::size_t e = 0; e < one.examples.size(); ++e) {
    CHECK(one.examples[e].text == two.examples[e].text);
    CHECK(one.examples[e].query == two.examples[e].query);
    CHECK(one.examples[e].weight == two.examples[e].weight);
  }
}

TEST_CASE("parallel: the gradient importance on threads has the same bits as on one", "[parallel][interventions]") {
  const hs::Model model = random_model(500, 3, true);
  std::vector<int> ids(64);
  for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int>((i * 53 + 5) % 500);
  const auto [one, two] = on_one_and_two([&] { return hs::gradient_importance(model, ids); });
  REQUIRE(one.gradient.size() == 36);
  CHECK(same(one.gradient, two.gradient));
  CHECK(one.loss == two.loss);
}
