// Progress and cancellation of the core's long operations (the weight
// geometry, leave-one-out, pruning curves, merge reports, the induction
// test): each takes a ProgressFn, calls it with the fraction done, and stops
// with an error of code `cancelled` when it returns false. The wasm bindings
// turn a JS callback into one.
#pragma once

#include <algorithm>
#include <functional>

#include "result.hpp"

namespace hs {

// Called with the fraction done, in [0, 1]; returning false cancels.
using ProgressFn = std::function<bool(double fraction)>;

// Reports `fraction`, clamped to [0, 1] (when there is a callback); false:
// the caller stops and returns cancelled_error().
inline bool report_progress(const ProgressFn& progress, double fraction) {
  return !progress || progress(std::min(1.0, std::max(0.0, fraction)));
}

// The callback for a part [a, b] of a longer operation: its fraction f is
// reported as a + (b - a) f. (The returned function refers to `progress`.)
inline ProgressFn progress_range(const ProgressFn& progress, double a, double b) {
  if (!progress) return {};
  return [&progress, a, b](double f) { return report_progress(progress, a + (b - a) * f); };
}

inline Error cancelled_error() { return make_error(ErrorCode::cancelled, "cancelled"); }

}  // namespace hs
