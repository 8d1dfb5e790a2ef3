// TransformerLens weight processing (core/processing.*): every processed
// tensor against a numpy implementation of TL's process_weights
// (tests/reference/geometry_reference.py), on random models and on the
// hf-oracle fixtures; the invariants that justify processing (attention
// patterns and log-probabilities unchanged, through the real forward pass);
// idempotence; the on-the-fly per-head variant equal to the processed copy;
// post-LN models refused.
#include <catch2/catch.hpp>

#include <cmath>
#include <string>

#include "../reference/geometry_reference.hpp"
#include "fixture_model.hpp"
#include "forward.hpp"
#include "full_circuits.hpp"
#include "geometry.hpp"
#include "processing.hpp"

using hs_test::Worst;

namespace {

std::string ref_path(const std::string& rel) { return hs_test::geometry_ref_dir() + "/" + rel; }

// Compares two matrices of the same shape, relative to the reference's largest
// magnitude; empty references must stay empty (or be filled with the
// neutral value the loader uses).
// A weight as a dense float32 matrix, whatever its storage.
hs::MatrixRM dense(const hs::WeightMatrix& w) { return w.widened(); }
template <class M>
const M& dense(const M& m) {
  return m;
}

template <class A>
void add_tensor(Worst& w, const A& got, const hs::NpyArray& want, const std::string& name) {
  if (want.size() == 0) return;
  INFO(name << ": got " << got.size() << " values, numpy " << want.size());
  REQUIRE(static_cast<std::int64_t>(got.size()) == want.size());
  double scale = 0;
  for (double x : want.data) scale = std::max(scale, std::abs(x));
  if (scale == 0) scale = 1;
  Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> g = dense(got);  // row-major flat order
  for (std::int64_t i = 0; i < want.size(); ++i) w.add(g.data()[i], want.data[i], name + "[" + std::to_string(i) + "]", scale);
}

void compare_weights(Worst& w, const hs::Model& m, const std::string& dir) {
  auto load = [&](const std::string& key) { return hs_test::load_npy(dir + key + ".npy"); };
  add_tensor(w, m.weights.W_E, load("W_E"), "W_E");
  add_tensor(w, m.weights.W_pos, load("W_pos"), "W_pos");
  add_tensor(w, hs::unembedding_matrix(m.weights), load("W_U"), "W_U");  // W_U, or W_E^T when tied
  add_tensor(w, m.weights.b_U, load("b_U"), "b_U");
  add_tensor(w, m.weights.ln_final_w, load("ln_final_w"), "ln_final_w");
  add_tensor(w, m.weights.ln_final_b, load("ln_final_b"), "ln_final_b");
  for (std::size_t l = 0; l < m.weights.layers.size(); ++l) {
    const hs::LayerWeights& L = m.weights.layers[l];
    const std::string s = "." + std::to_string(l);
    add_tensor(w, L.W_Q, load("W_Q" + s), "W_Q" + s);
    add_tensor(w, L.W_K, load("W_K" + s), "W_K" + s);
    add_tensor(w, L.W_V, load("W_V" + s), "W_V" + s);
    add_tensor(w, L.W_O, load("W_O" + s), "W_O" + s);
    add_tensor(w, L.b_Q, load("b_Q" + s), "b_Q" + s);
    add_tensor(w, L.b_K, load("b_K" + s), "b_K" + s);
    add_tensor(w, L.b_V, load("b_V" + s), "b_V" + s);
    add_tensor(w, L.b_O, load("b_O" + s), "b_O" + s);
    add_tensor(w, L.ln1_w, load("ln1_w" + s), "ln1_w" + s);
    add_tensor(w, L.ln1_b, load("ln1_b" + s), "ln1_b" + s);
    add_tensor(w, L.ln2_w, load("ln2_w" + s), "ln2_w" + s);
    add_tensor(w, L.ln2_b, load("ln2_b" + s), "ln2_b" + s);
    add_tensor(w, L.W_in, load("W_in" + s), "W_in" + s);
    add_tensor(w, L.W_gate, load("W_gate" + s), "W_gate" + s);
    add_tensor(w, L.b_in, load("b_in" + s), "b_in" + s);
    add_tensor(w, L.W_out, load("W_out" + s), "W_out" + s);
    add_tensor(w, L.b_out, load("b_out" + s), "b_out" + s);
  }
}

}  // namespace

TEST_CASE("processing: process_weights matches a numpy TransformerLens implementation", "[processing]") {
  hs_test::require_geometry_reference();
  int n = 0;
  for (const std::string& name : hs_test::read_lines(ref_path("models/names.txt"))) {
    const hs::Model raw = hs_test::model_from_reference(name);
    auto processed = hs::process_weights(raw);
    REQUIRE(processed.ok());
    // float32 processing against float64 numpy, relative to each tensor's largest entry.
    Worst w(name + " processed tensors", 2e-6);
    compare_weights(w, *processed, ref_path("models/" + name + "/processed/"));
    w.check();
    ++n;
  }
  CHECK(n >= 3);
}

TEST_CASE("processing: fixture checkpoints load to the same weights as the numpy mapping", "[processing]") {
  hs_test::require_geometry_reference();
  for (const std::string name : {"gpt2", "llama", "gpt_neox"}) {
    auto model = hs::test::load_fixture_model(name);
    INFO(name << ": " << (model ? "" : model.error().message));
    REQUIRE(model.ok());
    Worst w(name + " loaded weights vs numpy mapping (SPEC 2.2)", 0.0);
    compare_weights(w, *model, ref_path("models/fixture_" + name + "/raw/"));
    w.check();
  }
}

TEST_CASE("processing: attention patterns and log-probs are unchanged by processing", "[processing]") {
  for (const std::string name : {"gpt2", "gpt_neox", "llama", "gpt_neo", "opt"}) {
    auto model = hs::test::load_fixture_model(name);
    INFO(name << ": " << (model ? "" : model.error().message));
    REQUIRE(model.ok());
    auto ids = hs::test::load_fixture_ids(name);
    REQUIRE(ids.ok());
    auto processed = hs::process_weights(*model);
    REQUIRE(processed.ok());
    auto a = hs::run_model(*model, *ids);
    auto b = hs::run_model(*processed, *ids);
    REQUIRE(a.ok());
    REQUIRE(b.ok());
    const auto pat = hs::test::compare_arrays(b->patterns, a->patterns, 1e-5);
    INFO(name << " patterns: " << pat.describe());
    CHECK(pat.n_over == 0);
    // Logits move by a constant per position (center_unembed): compare log-softmax.
    auto log_softmax = [&](const std::vector<float>& logits) {
      const int V = a->d_vocab, T = a->n_tokens;
      std::vector<double> out(logits.size());
      for (int t = 0; t < T; ++t) {
        double mx = -INFINITY, sum = 0;
        for (int v = 0; v < V; ++v) mx = std::max(mx, double(logits[t * V + v]));
        for (int v = 0; v < V; ++v) sum += std::exp(logits[t * V + v] - mx);
        for (int v = 0; v < V; ++v) out[t * V + v] = logits[t * V + v] - mx - std::log(sum);
      }
      return out;
    };
    const auto lp = hs::test::compare_arrays(log_softmax(b->logits), log_softmax(a->logits), 1e-4);
    INFO(name << " log-probs: " << lp.describe());
    CHECK(lp.n_over == 0);
    CHECK(b->loss == Approx(a->loss).margin(1e-5));
    std::cout << "  " << name << " processed vs raw: patterns max |diff| " << pat.max_abs << ", log-probs max |diff| "
              << lp.max_abs << "\n";
  }
}

TEST_CASE("processing: processing twice changes nothing beyond rounding", "[processing]") {
  hs_test::require_geometry_reference();
  for (const std::string name : {"synthetic_ln", "synthetic_gqa_rms"}) {
    const hs::Model raw = hs_test::model_from_reference(name);
    auto once = hs::process_weights(raw);
    REQUIRE(once.ok());
    auto twice = hs::process_weights(*once);
    REQUIRE(twice.ok());
    Worst w(name + " process(process(m)) vs process(m)", 1e-6);
    auto add = [&](const auto& x_any, const auto& y_any, const std::string& what) {
      const auto& x = dense(x_any);
      const auto& y = dense(y_any);
      const double scale = std::max(1e-30, double(y.cwiseAbs().maxCoeff()));
      for (Eigen::Index i = 0; i < y.size(); ++i) w.add(x.data()[i], y.data()[i], what, scale);
    };
    add(twice->weights.W_E, once->weights.W_E, "W_E");
    add(twice->weights.W_U, once->weights.W_U, "W_U");
    add(twice->weights.b_U, once->weights.b_U, "b_U");
    for (std::size_t l = 0; l < raw.weights.layers.size(); ++l) {
      const auto &x = twice->weights.layers[l], &y = once->weights.layers[l];
      add(x.W_Q, y.W_Q, "W_Q." + std::to_string(l));
      add(x.W_V, y.W_V, "W_V." + std::to_string(l));
      add(x.W_O, y.W_O, "W_O." + std::to_string(l));
      add(x.b_Q, y.b_Q, "b_Q." + std::to_string(l));
      add(x.b_O, y.b_O, "b_O." + std::to_string(l));
      add(x.W_in, y.W_in, "W_in." + std::to_string(l));
      add(x.b_in, y.b_in, "b_in." + std::to_string(l));
    }
    w.check();
  }
}

TEST_CASE("processing: the processed variant equals the geometry of the processed copy", "[processing]") {
  hs_test::require_geometry_reference();
  const hs::Model raw = hs_test::model_from_reference("synthetic_ln");
  auto processed = hs::process_weights(raw);
  REQUIRE(processed.ok());
  // On the fly (head_matrix, VocabView) vs the materialised copy read raw.
  auto a = hs::head_spectra(raw, hs::WeightVariant::processed);
  auto b = hs::head_spectra(*processed, hs::WeightVariant::raw);
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  Worst ws("spectra: processed variant vs raw read of process_weights", 1e-5);
  for (std::size_t i = 0; i < a->ov.sigma.size(); ++i) {
    ws.add(a->ov.sigma[i], b->ov.sigma[i], "ov " + std::to_string(i), std::max(1.0, b->ov.sigma[i]));
    ws.add(a->qk.sigma[i], b->qk.sigma[i], "qk " + std::to_string(i), std::max(1.0, b->qk.sigma[i]));
  }
  ws.check();
  auto ua = hs::unembed_embed_product(raw, hs::WeightVariant::processed);
  auto ub = hs::unembed_embed_product(*processed, hs::WeightVariant::raw);
  REQUIRE(ua.ok());
  REQUIRE(ub.ok());
  const double scale = ub->cwiseAbs().maxCoeff();
  Worst wu("W_U W_E: processed variant vs process_weights", 1e-5);
  for (Eigen::Index i = 0; i < ua->size(); ++i) wu.add(ua->data()[i], ub->data()[i], "entry " + std::to_string(i), scale);
  wu.check();
  // Raw and processed differ for a LayerNorm model: the variant matters.
  auto r = hs::head_spectra(raw, hs::WeightVariant::raw);
  REQUIRE(r.ok());
  double diff = 0;
  for (std::size_t i = 0; i < r->ov.sigma.size(); ++i) diff = std::max(diff, std::abs(r->ov.sigma[i] - a->ov.sigma[i]));
  CHECK(diff > 1e-3);
}

TEST_CASE("processing: head_matrix_f is head_matrix rounded to float, raw and processed", "[processing]") {
  hs_test::require_geometry_reference();
  hs::Model model = hs_test::model_from_reference("synthetic_ln");
  for (auto variant : {hs::WeightVariant::raw, hs::WeightVariant::processed}) {
    for (auto which : {hs::HeadMatrix::W_Q, hs::HeadMatrix::W_K, hs::HeadMatrix::W_V, hs::HeadMatrix::W_O}) {
      auto d = hs::head_matrix(model, variant, 1, 2, which);
      auto f = hs::head_matrix_f(model, variant, 1, 2, which);
      REQUIRE(d.ok());
      REQUIRE(f.ok());
      INFO(hs::weight_variant_name(variant) << " " << hs::head_matrix_name(which));
      CHECK(*f == hs::MatrixRM(d->cast<float>()));
      if (variant == hs::WeightVariant::raw) CHECK(f->cast<double>() == *d);  // the stored floats, exactly
    }
  }
  model.weights.layers[1].W_V(5, hs::kv_head_of(model.config, 2) * model.config.d_head) = NAN;
  auto bad = hs::head_matrix_f(model, hs::WeightVariant::raw, 1, 2, hs::HeadMatrix::W_V);
  REQUIRE_FALSE(bad.ok());
  CHECK_THAT(bad.error().message, Catch::Contains("NaN or Inf"));
}

TEST_CASE("processing: raw_layer_blocks copies every head's block of a layer, checked", "[processing]") {
  hs_test::require_geometry_reference();
  hs::Model model = hs_test::model_from_reference("synthetic_gqa_rms");
  const hs::ModelConfig& c = model.config;
  REQUIRE(c.n_kv_head < c.n_head);  // K and V blocks shared by several heads
  std::vector<hs::MatrixRM> blocks{hs::MatrixRM(3, 3)};  // resized, whatever it held
  for (auto which : {hs::HeadMatrix::W_Q, hs::HeadMatrix::W_K, hs::HeadMatrix::W_V}) {
    INFO(hs::head_matrix_name(which));
    REQUIRE(hs::raw_layer_blocks(model, 1, which, blocks).ok());
    REQUIRE(blocks.size() == std::size_t(which == hs::HeadMatrix::W_Q ? c.n_head : c.n_kv_head));
    for (int h = 0; h < c.n_head; ++h) {
      auto f = hs::head_matrix_f(model, hs::WeightVariant::raw, 1, h, which);
      REQUIRE(f.ok());
      CHECK(blocks[which == hs::HeadMatrix::W_Q ? h : hs::kv_head_of(c, h)] == *f);
    }
  }
  CHECK_FALSE(hs::raw_layer_blocks(model, 1, hs::HeadMatrix::W_O, blocks).ok());
  CHECK_FALSE(hs::raw_layer_blocks(model, 99, hs::HeadMatrix::W_Q, blocks).ok());
  // NaN in KV head 1's W_K block: named by the first head that reads it.
  const int first = c.n_head / c.n_kv_head;
  REQUIRE(hs::kv_head_of(c, first) == 1);
  model.weights.layers[1].W_K(7, 1 * c.d_head + 2) = NAN;
  auto bad = hs::raw_layer_blocks(model, 1, hs::HeadMatrix::W_K, blocks);
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().message == "L1H" + std::to_string(first) + " W_K contains NaN or Inf");
  auto geometry = hs::weight_geometry(model, hs::WeightVariant::raw, 4);
  REQUIRE_FALSE(geometry.ok());
  CHECK(geometry.error().message == bad.error().message);
}

TEST_CASE("processing: post-LN models are refused", "[processing]") {
  auto bert = hs::test::load_fixture_model("bert");
  INFO((bert ? "" : bert.error().message));
  REQUIRE(bert.ok());
  REQUIRE(bert->config.post_ln);
  auto p = hs::process_weights(*bert);
  REQUIRE_FALSE(p.ok());
  CHECK_THAT(p.error().message, Catch::Contains("pre-LN"));
  auto h = hs::head_matrix(*bert, hs::WeightVariant::processed, 0, 0, hs::HeadMatrix::W_Q);
  REQUIRE_FALSE(h.ok());
  CHECK_THAT(h.error().message, Catch::Contains("pre-LN"));
  // Raw geometry of a post-LN model is fine.
  CHECK(hs::head_spectra(*bert, hs::WeightVariant::raw).ok());
  CHECK(hs::subspace_redundancy(*bert, hs::WeightVariant::raw, hs::HeadSubspace::output_write).ok());
}
