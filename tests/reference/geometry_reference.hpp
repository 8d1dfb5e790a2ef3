// Helpers shared by the weight-geometry tests (tests/core/test_geometry.cpp,
// test_decompositions.cpp, test_factored_matrix.cpp, test_pair_products.cpp,
// test_processing.cpp): where the numpy reference values are, how
// to read them, how to rebuild a Model from the canonical-layout .npy weights
// the reference script writes, and a worst-mismatch tracker so that every
// comparison reports its largest error and where it happened.
#pragma once

#include <catch2/catch.hpp>

#include <cmath>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "linalg.hpp"
#include "model.hpp"
#include "npy.hpp"

#ifndef HEADSCOPE_GEOMETRY_REF
#define HEADSCOPE_GEOMETRY_REF ""
#endif

namespace hs_test {

inline std::string geometry_ref_dir() { return HEADSCOPE_GEOMETRY_REF; }

// Fails the test (rather than skipping) when the reference data is missing.
inline void require_geometry_reference() {
  std::ifstream done(geometry_ref_dir() + "/DONE");
  INFO("numpy reference data missing in '" << geometry_ref_dir()
                                           << "': run ctest (fixture test reference.geometry) or "
                                              "/usr/bin/python3 tests/reference/geometry_reference.py <dir>");
  REQUIRE(done.good());
}

// A file of the reference data, by its path inside the reference folder.
inline std::string ref_path(const std::string& rel) { return geometry_ref_dir() + "/" + rel; }

inline hs::NpyArray load_npy(const std::string& path) {
  auto a = hs::npy_load(path);
  INFO(path << ": " << (a ? "" : a.error().message));
  REQUIRE(a.ok());
  return std::move(*a);
}

inline hs::MatrixRMd npy_matrix(const hs::NpyArray& a) {
  REQUIRE(a.shape.size() == 2);
  hs::MatrixRMd m(a.shape[0], a.shape[1]);
  for (std::int64_t i = 0; i < a.size(); ++i) m.data()[i] = a.data[i];
  return m;
}

inline hs::MatrixRMd load_matrix(const std::string& path) { return npy_matrix(load_npy(path)); }

// The number of cases in a folder of the reference data (its count.npy).
inline int count_of(const std::string& dir) { return static_cast<int>(load_npy(ref_path(dir + "/count.npy")).data[0]); }

// "[a,b]": where a mismatch of a pair (or matrix entry) is.
inline std::string at(int a, int b) { return "[" + std::to_string(a) + "," + std::to_string(b) + "]"; }

inline std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream f(path);
  INFO(path);
  REQUIRE(f.good());
  std::vector<std::string> lines;
  for (std::string line; std::getline(f, line);) {
    if (!line.empty()) lines.push_back(line);
  }
  return lines;
}

// Tracks the worst |got - want| (optionally scaled) over a comparison.
struct Worst {
  std::string what;
  double tolerance = 0;
  double error = 0;
  double got = 0, want = 0;
  std::string where = "(none)";
  long count = 0;

  Worst(std::string what_, double tolerance_) : what(std::move(what_)), tolerance(tolerance_) {}

  void add(double g, double w, const std::string& at, double scale = 1.0) {
    double e = std::abs(g - w) / scale;
    if (std::isnan(e)) e = INFINITY;  // NaN on either side counts as the worst
    if (count++ == 0 || e > error) {
      error = e;
      got = g;
      want = w;
      where = at;
    }
  }
  // Reports the worst mismatch and checks it against the tolerance.
  void check() const {
    INFO(what << ": worst error " << error << " (tolerance " << tolerance << ") at " << where << ": got " << got
              << ", numpy " << want << " over " << count << " values");
    CHECK(count > 0);
    CHECK(error <= tolerance);
    std::cout << "  " << summary() << " (tolerance " << tolerance << ", " << count << " values)\n";
  }
  std::string summary() const {
    std::ostringstream s;
    s << what << " max err " << error << " at " << where;
    return s.str();
  }
};

// config.npy: [L, d, H, G, dh, V, d_mlp, rms, n_pos, rotary_dim, gated, parallel].
inline hs::Model model_from_reference(const std::string& name, const std::string& variant = "raw") {
  const std::string base = geometry_ref_dir() + "/models/" + name;
  const auto cfg = load_npy(base + "/config.npy").as_int64();
  REQUIRE(cfg.size() == 12);
  hs::Model m;
  hs::ModelConfig& c = m.config;
  c.model_type = name;
  c.n_layer = static_cast<int>(cfg[0]);
  c.d_model = static_cast<int>(cfg[1]);
  c.n_head = static_cast<int>(cfg[2]);
  c.n_kv_head = static_cast<int>(cfg[3]);
  c.d_head = static_cast<int>(cfg[4]);
  c.d_vocab = static_cast<int>(cfg[5]);
  c.d_mlp = static_cast<int>(cfg[6]);
  c.norm = cfg[7] ? hs::NormKind::rms_norm : hs::NormKind::layer_norm;
  c.family = cfg[7] ? hs::Family::llama : (cfg[11] ? hs::Family::gpt_neox : hs::Family::gpt2);
  c.learned_positions = cfg[8] > 0;
  c.n_ctx = cfg[8] > 0 ? static_cast<int>(cfg[8]) : 64;
  c.rotary_dim = static_cast<int>(cfg[9]);
  c.gated_mlp = cfg[10] != 0;
  c.parallel_residual = cfg[11] != 0;
  c.act = cfg[7] ? hs::Activation::silu : hs::Activation::gelu_new;
  c.attn_scale = 1.0f / std::sqrt(static_cast<float>(c.d_head));
  c.tied_embeddings = false;
  const std::string dir = base + "/" + variant + "/";
  auto mat = [&](const std::string& key) -> hs::MatrixRM {
    const auto a = load_npy(dir + key + ".npy");
    if (a.size() == 0) return hs::MatrixRM();
    REQUIRE(a.shape.size() == 2);
    return npy_matrix(a).cast<float>();
  };
  auto vec = [&](const std::string& key) -> hs::RowVectorF {
    const auto a = load_npy(dir + key + ".npy");
    hs::RowVectorF v(a.size());
    for (std::int64_t i = 0; i < a.size(); ++i) v[i] = static_cast<float>(a.data[i]);
    return v;
  };
  hs::ModelWeights& w = m.weights;
  w.W_E = mat("W_E");
  w.W_pos = mat("W_pos");
  w.ln_final_w = vec("ln_final_w");
  w.ln_final_b = vec("ln_final_b");
  w.W_U = mat("W_U");
  w.b_U = vec("b_U");
  for (int l = 0; l < c.n_layer; ++l) {
    const std::string s = "." + std::to_string(l);
    hs::LayerWeights L;
    L.W_Q = mat("W_Q" + s);
    L.W_K = mat("W_K" + s);
    L.W_V = mat("W_V" + s);
    L.W_O = mat("W_O" + s);
    L.b_Q = vec("b_Q" + s);
    L.b_K = vec("b_K" + s);
    L.b_V = vec("b_V" + s);
    L.b_O = vec("b_O" + s);
    L.ln1_w = vec("ln1_w" + s);
    L.ln1_b = vec("ln1_b" + s);
    L.ln2_w = vec("ln2_w" + s);
    L.ln2_b = vec("ln2_b" + s);
    L.W_in = mat("W_in" + s);
    L.W_gate = mat("W_gate" + s);
    L.b_in = vec("b_in" + s);
    L.W_out = mat("W_out" + s);
    L.b_out = vec("b_out" + s);
    w.layers.push_back(std::move(L));
  }
  return m;
}

}  // namespace hs_test
