// The core's one way of using more than one core: parallel_for runs a range
// of independent items as contiguous parts at once, on the calling thread and
// on a pool of threads kept for the process (wasm: the module's pthreads,
// where the build has them; wasm/CMakeLists.txt).
//
// Each item's arithmetic must not depend on which part it falls in: then a
// result has the same bits for any thread count, which the tests check
// (tests/core/test_parallel.cpp). The callers split output columns of a
// product, heads, groups of projector coordinates, texts.
//
// A parallel_for inside another one (a product inside a per-head loop) runs
// on its caller alone, as does one called while the pool is busy with
// another thread's work.
#pragma once

#include <cstddef>
#include <functional>

namespace hs {

// How many threads parallel_for may use, the caller included: 1 (the
// default) runs everything on the caller. n is clamped to
// [1, max_thread_count()]; returns the count now in force. Threads are
// started (or stopped) here, never inside parallel_for.
int set_thread_count(int n);
int thread_count();
// The most this build and machine allow: 1 in a wasm build without threads,
// else the hardware's threads (at least 1), capped at 16.
int max_thread_count();

// body(begin, end) over [0, n) in at most thread_count() contiguous parts
// (part p is [n p / parts, n (p + 1) / parts)); returns when all are done.
// min_items: fewer items per part than this and the parts are fewer (work
// too small to share runs on the caller). An exception thrown by a part is
// rethrown here after every part has finished (the first one, by part).
void parallel_for(std::ptrdiff_t n, const std::function<void(std::ptrdiff_t begin, std::ptrdiff_t end)>& body,
                  std::ptrdiff_t min_items = 1);

}  // namespace hs
