// The all-pairs product engine of the weight geometry: n_ij =
// ||X_i^T Y_j||_F^2 for every needed pair of N heads' factors X_i, Y_j
// [d, k] (k = dh columns each), as float products summed in double. The
// analyses (geometry.hpp) reduce both of their all-pairs quantities to it:
// subspace redundancy (Y = X, orthonormal bases: all pairs) and composition
// scores (every ordered pair i != j, three right-hand kinds at once: the
// pairs with layer(i) < layer(j) are the scores, the others their null).
//
// How it is evaluated (PairKernel):
//   projector: <X_i X_i^T, Y_j Y_j^T> over the packed upper triangle of the
//              d x d coordinates: forming costs d^2 k / 2 per factor, each
//              pair d^2 / 2;
//   direct:    the k x k blocks of X^T Y: k^2 d per pair.
// For GPT-2-small shapes (d 768, k 64, 144 heads) the projector form is ~5x
// cheaper: the analyses run it, their builders writing each head's factor
// straight into the panels (FactorPanels::lane, factor_into_lane) and then
// calling projector_products once. The projectors are formed block by block
// of coordinates as quads (4 heads' same coordinate in one SIMD vector,
// kernels.hpp) and the pairs summed as large outer products of those quads.
// The direct form is the tests' second opinion (block_frobenius_products).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "linalg.hpp"
#include "progress.hpp"
#include "result.hpp"

namespace hs {

enum class PairKernel { projector, direct };
enum class PairSet {
  symmetric,    // Y = X, all pairs (mirrored)
  later_layer,  // pairs with layer(i) < layer(j), layer = index / group
  ordered,      // every ordered pair (i, j), the diagonal included
};

// X, Y [d, n*k] (blocks side by side, zero columns allowed); result [n, n] in
// double, entries outside the pair set 0. Y is ignored for symmetric. `band`:
// the projector kernel's band of coordinate rows, a multiple of 4 (0: chosen
// from the head count, as the analyses do; tests set it).
Result<MatrixRMd> block_frobenius_products(const MatrixRM& X, const MatrixRM& Y, int k, PairSet set, int group,
                                           PairKernel kernel, const ProgressFn& progress,
                                           double progress_from = 0, double progress_to = 1, int band = 0);

// ---------------------------------------------------------------------------
// The projector kernel's parts, for the analyses' builders

// An uninitialized float buffer whose data starts on a 64-byte boundary
// (wasm's malloc aligns to 8): the kernels' 16-byte loads then never straddle
// cache lines. Uninitialized because the buffers are large (~100 MB of
// factors) and written before they are read.
class AlignedFloats {
 public:
  explicit AlignedFloats(std::size_t n) : buffer_(new float[n + 16]) {
    const auto address = reinterpret_cast<std::uintptr_t>(buffer_.get());
    data_ = buffer_.get() + (64 - address % 64) % 64 / sizeof(float);
  }
  float* data() { return data_; }
  const float* data() const { return data_; }

 private:
  std::unique_ptr<float[]> buffer_;
  float* data_;
};

// The band of coordinate rows for projector products over `slots` factors:
// 128, halved while a block of band^2 coordinates per slot would exceed the
// memory budget.
int band_rows(int slots);

// Heads' factors [d, k], one per slot, in groups of 4 slots: quad (g, r, t)
// holds entry (r, t) of the factors of slots 4g .. 4g+3 (lane = slot % 4),
// so that one vector product forms the same coordinate of 4 projectors. The
// rows are d padded with zeros to a multiple of the band. `head` gives each
// slot's head, -1 for padding: padding slots are zero, and every other slot
// must be written before use (set(), or factor_into_lane into its lane()).
struct FactorPanels {
  int band = 0, rows = 0, k = 0;
  AlignedFloats data;
  FactorPanels(const std::vector<int>& head, int d, int k_, int band_);
  // Row r of group g: k quads.
  const float* row(int g, int r) const { return data.data() + (std::size_t(g) * rows + r) * k * 4; }
  // Slot `slot` as one lane of quads (factor_into_lane's output).
  float* lane(int slot) { return data.data() + std::size_t(slot / 4) * rows * k * 4 + slot % 4; }
  // Slot `slot` := X's columns [col0, col0 + k).
  void set(int slot, const MatrixRM& X, Eigen::Index col0);
};

// Where each head's factor goes in the projector products: "slots", 4 per
// quad. The symmetric set puts head i at slot i. later_layer puts layer l's
// left heads (l < L - 1: the last layer never composes forward) at
// l * Hx + h and its right (head, kind) rows (l >= 1) at
// (l - 1) * Hy + h * n_y + y, with Hx, Hy the layer's counts rounded up to
// 4 so that every layer rectangle starts on a quad. ordered puts every
// layer on both sides: left l * Hx + h, right l * Hy + h * n_y + y.
// Padding slots stay zero.
struct PairLayout {
  bool sym = false, ordered = false;
  int n = 0, L = 1, n_y = 0, Hx = 0, Hy = 0, slots_x = 0, slots_y = 0;
  std::vector<int> head_x, head_y, kind_y;  // by slot, -1 for padding
  std::vector<int> x_slot, y_base;          // by head, -1 for none
  // n_heads heads in layers of `group` (later_layer, ordered), `kinds`
  // right-hand factors per head (the symmetric set has one side).
  PairLayout(int n_heads, int group, PairSet set, int kinds);
  int y_slot(int i, int y) const { return y_base[i] < 0 ? -1 : y_base[i] + y; }
};

// The projector products of the pairs in `layout`, from the left factors in
// FX and the right ones in FY (the symmetric set reads FX only): [n, n] per
// right-hand kind (one for the symmetric set), entries outside the pair set
// 0. Progress runs from p0 to p1.
Result<std::vector<MatrixRMd>> projector_products(const PairLayout& layout, const FactorPanels& FX,
                                                  const FactorPanels& FY, const ProgressFn& progress, double p0,
                                                  double p1);

}  // namespace hs
