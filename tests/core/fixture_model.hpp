// Test helpers for the Hugging Face oracle fixtures (../shared/fixtures/hf-oracle):
// load a fixture folder's model, read its .npy outputs, and compare arrays
// with a tolerance while reporting the worst mismatch and its index.
// Header-only so that any test file can include it (Catch2 tests only: the
// must* helpers REQUIRE success).
#pragma once

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "checkpoint.hpp"
#include "config.hpp"
#include "model.hpp"
#include "npy.hpp"
#include "safetensors.hpp"

namespace hs::test {

inline std::string fixture_dir(const std::string& name) {
  return std::string(HEADSCOPE_FIXTURES) + "/hf-oracle/" + name;
}

inline Result<std::string> read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(path + ": cannot open file");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A fixture's parsed config.json.
inline Result<ModelConfig> load_fixture_config(const std::string& name) {
  auto text = read_text_file(fixture_dir(name) + "/config.json");
  if (!text.ok()) return text.error();
  return config_from_json(*text);
}

// The model of fixture folder `name` ("gpt2", "gpt_neox", "llama", "bert",
// "gpt_neo", "opt"), built by config_from_json + model_from_checkpoint.
inline Result<Model> load_fixture_model(const std::string& name) {
  auto config = load_fixture_config(name);
  if (!config.ok()) return config.error();
  auto bytes = safetensors_read_bytes(fixture_dir(name) + "/model.safetensors");
  if (!bytes.ok()) return bytes.error();
  auto file = safetensors_parse(bytes->data(), bytes->size(), name + "/model.safetensors");
  if (!file.ok()) return file.error();
  return model_from_checkpoint(*config, {&*file});
}

// The fixture's input ids (int64 [1, T]) as ints.
inline Result<std::vector<int>> load_fixture_ids(const std::string& name) {
  auto a = npy_load(fixture_dir(name) + "/input_ids.npy");
  if (!a.ok()) return a.error();
  std::vector<int> ids;
  for (double v : a->data) ids.push_back(static_cast<int>(v));
  return ids;
}

// Element-wise comparison of two arrays of the same length.
struct Mismatch {
  bool same_size = true;
  double max_abs = 0;     // worst |a - b|
  std::size_t index = 0;  // its flat index
  double a = 0, b = 0;
  std::size_t n_over = 0;  // elements with |a - b| > tol (NaN counts)

  std::string describe(const std::vector<std::int64_t>& shape = {}) const {
    if (!same_size) return "arrays differ in size";
    std::ostringstream os;
    os << "max |diff| = " << max_abs << " at flat index " << index;
    if (!shape.empty()) {
      // Unravel into a multi-index.
      std::vector<std::int64_t> idx(shape.size());
      std::size_t rest = index;
      for (std::size_t k = shape.size(); k-- > 0;) {
        idx[k] = static_cast<std::int64_t>(rest % shape[k]);
        rest /= shape[k];
      }
      os << " [";
      for (std::size_t k = 0; k < idx.size(); ++k) os << (k ? ", " : "") << idx[k];
      os << "]";
    }
    os << " (got " << a << ", expected " << b << "), " << n_over << " element(s) over tolerance";
    return os.str();
  }
};

template <class A, class B>
Mismatch compare_arrays(const A& got, const B& expected, double tol) {
  Mismatch m;
  if (got.size() != expected.size()) {
    m.same_size = false;
    m.max_abs = INFINITY;
    return m;
  }
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double diff = std::fabs(static_cast<double>(got[i]) - static_cast<double>(expected[i]));
    const bool bad = !(diff <= tol);
    if (bad) ++m.n_over;
    if (!(diff <= m.max_abs)) {  // NaN wins
      m.max_abs = std::isnan(diff) ? INFINITY : diff;
      m.index = i;
      m.a = got[i];
      m.b = expected[i];
    }
  }
  return m;
}

// The value of a Result, or the test stops with its message.
template <class T>
T must(Result<T> r) {
  INFO((r.ok() ? "" : r.error().message));
  REQUIRE(r.ok());
  return std::move(r).value();
}

inline Model must_model(const std::string& name) { return must(load_fixture_model(name)); }
inline std::vector<int> must_ids(const std::string& name) { return must(load_fixture_ids(name)); }

}  // namespace hs::test
