// Progress and cancellation of the long weight-geometry computations. A
// GeometryProgress callback is called with the fraction done, in [0, 1];
// returning false cancels, and the computation returns Error{"cancelled"}
// (cancelled_error).
#pragma once

#include <algorithm>
#include <functional>

#include "result.hpp"

namespace hs {

using GeometryProgress = std::function<bool(double fraction)>;

// Reports `fraction` (clamped to [0, 1]) when there is a callback; false when
// the computation should stop.
inline bool keep_going(const GeometryProgress& progress, double fraction) {
  return !progress || progress(std::min(1.0, std::max(0.0, fraction)));
}

inline Error cancelled_error() { return make_error("cancelled"); }

// A progress callback for the part [a, b] of a longer computation (it keeps
// a reference to `progress`).
inline GeometryProgress sub_progress(const GeometryProgress& progress, double a, double b) {
  if (!progress) return {};
  return [&progress, a, b](double f) { return progress(a + (b - a) * f); };
}

}  // namespace hs
