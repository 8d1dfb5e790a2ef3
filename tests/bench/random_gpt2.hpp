// Shared by the benchmarks: a random GPT-2-small-shaped model (12 layers,
// 12 heads, d 768, dh 64, LayerNorm, learned positions) and CPU timing.
#pragma once

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <functional>
#include <random>
#include <vector>

#include "model.hpp"
#include "parallel.hpp"

namespace bench {

// Weights N(0, 0.02), norms near 1. with_mlp: the MLP weights too (the
// forward reads them; the weight geometry does not).
inline hs::Model random_gpt2_small(int vocab, bool with_mlp = false) {
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
  c.has_lm_head = true;
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
    if (with_mlp) {
      fill(L.W_in.f32(), d, c.d_mlp);
      vec(L.b_in, c.d_mlp, 0);
      fill(L.W_out.f32(), c.d_mlp, d);
      vec(L.b_out, d, 0);
    }
    m.weights.layers.push_back(std::move(L));
  }
  fill(m.weights.W_E.f32(), vocab, d);
  if (with_mlp) fill(m.weights.W_pos, c.n_ctx, d);
  m.weights.W_U = hs::MatrixRM(m.weights.W_E.f32().transpose());
  vec(m.weights.b_U, vocab, 0);
  vec(m.weights.ln_final_w, d, 1);
  vec(m.weights.ln_final_b, d, 0);
  return m;
}

// Whether times are wall time: only once the core runs on more than one
// thread (use_threads), where CPU time would add the threads' times up.
inline bool& wall_clock() {
  static bool wall = false;
  return wall;
}

// --threads N: the core's thread count (core/parallel.hpp); false when this
// build or machine cannot run N.
inline bool use_threads(int n) {
  if (hs::set_thread_count(n) != n) return false;
  wall_clock() = n > 1;
  return true;
}

// CPU time of this process while it runs one thread: on a shared 2-core
// machine wall time mostly measures the neighbours. Wall time with threads.
inline double now_ms() {
  timespec t{};
  clock_gettime(wall_clock() ? CLOCK_MONOTONIC : CLOCK_PROCESS_CPUTIME_ID, &t);
  return t.tv_sec * 1e3 + t.tv_nsec * 1e-6;
}

// Median time of `repeat` runs of f, which returns false on failure.
inline double time_ms(int repeat, const std::function<bool()>& f) {
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

}  // namespace bench
