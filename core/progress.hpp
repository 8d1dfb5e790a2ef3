// Progress and cancellation of the core's long operations (leave-one-out,
// pruning curves, merge reports, the induction test): each takes a
// ProgressFn, calls it with the fraction done, and stops with the error
// "cancelled" when it returns false. The wasm bindings turn a JS callback
// into one.
#pragma once

#include <functional>

#include "result.hpp"

namespace hs {

// Called with the fraction done, in [0, 1]; returning false cancels.
using ProgressFn = std::function<bool(double fraction)>;

// Reports `fraction` (when there is a callback); false: the caller stops and
// returns cancelled_error().
inline bool report_progress(const ProgressFn& progress, double fraction) {
  return !progress || progress(fraction);
}

inline Error cancelled_error() { return make_error("cancelled"); }

}  // namespace hs
