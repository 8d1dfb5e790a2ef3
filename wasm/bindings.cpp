// Embind bindings of the core, and nothing else: the core knows nothing of
// JavaScript. Results cross the boundary as plain objects {ok, error, ...};
// wasm/headscope.mjs turns them into thrown HeadscopeError and typed arrays.
// Arrays cross as JS-owned typed-array copies, so no view of wasm memory
// outlives a call that may grow (and so detach) it.
#include <emscripten/bind.h>
#include <emscripten/val.h>

#include <Eigen/SVD>
#include <string>
#include <vector>

#include "linalg.hpp"

using emscripten::val;

namespace {

val error_value(const std::string& message) {
  val out = val::object();
  out.set("ok", false);
  out.set("error", message);
  return out;
}

val ok_value() {
  val out = val::object();
  out.set("ok", true);
  return out;
}

val float32_copy(const float* data, std::size_t n) {
  return val::global("Float32Array").new_(emscripten::typed_memory_view(n, data));
}

// Singular values of a rows x cols row-major matrix: the foundation's
// end-to-end check that the page, the worker and the core agree.
val singular_values(val matrix, int rows, int cols) {
  if (rows <= 0 || cols <= 0) return error_value("singular_values: rows and cols must be positive");
  const auto data = emscripten::convertJSArrayToNumberVector<float>(matrix);
  if (data.size() != static_cast<std::size_t>(rows) * static_cast<std::size_t>(cols))
    return error_value("singular_values: expected " + std::to_string(rows * cols) + " numbers, got " +
                       std::to_string(data.size()));
  hs::ConstMapRM m(data.data(), rows, cols);
  Eigen::JacobiSVD<hs::MatrixRM> svd(m);
  const Eigen::VectorXf s = svd.singularValues();
  val out = ok_value();
  out.set("values", float32_copy(s.data(), static_cast<std::size_t>(s.size())));
  return out;
}

}  // namespace

EMSCRIPTEN_BINDINGS(headscope) { emscripten::function("singular_values", &singular_values); }
