// The all-pairs product engine (core/pair_products.*): the projector kernel
// against the direct one and against per-pair products in double, for every
// pair set, padded layers, zero blocks, and every band of its blocking.
// Each comparison prints its worst mismatch.
#include <catch2/catch.hpp>

#include <algorithm>
#include <string>

#include "../reference/geometry_reference.hpp"
#include "pair_products.hpp"

using hs::MatrixRMd;
using hs_test::at;
using hs_test::Worst;

namespace {
const char* set_name(hs::PairSet set) {
  return set == hs::PairSet::symmetric ? "symmetric" : set == hs::PairSet::later_layer ? "later layer" : "ordered";
}
}  // namespace

TEST_CASE("pair products: both pair kernels give the same all-pairs products", "[pair_products]") {
  // X, Y [d, n*k]: projector and direct kernels must agree for every pair set;
  // d not a multiple of 8 (the panels' zero rows), layers of 1 to 3 heads (padded slots), and a single layer.
  struct Shape {
    int d, k, n, group;
  };
  for (const Shape shape : {Shape{40, 6, 9, 3}, Shape{37, 5, 6, 1}, Shape{37, 4, 8, 2}, Shape{21, 3, 3, 3}}) {
    const int d = shape.d, k = shape.k, n = shape.n, group = shape.group;
    hs::MatrixRM X = hs::MatrixRM::Random(d, n * k), Y = hs::MatrixRM::Random(d, n * k);
    X.middleCols(2 * k, k).setZero();  // an all-zero block
    for (auto set : {hs::PairSet::symmetric, hs::PairSet::later_layer, hs::PairSet::ordered}) {
      auto a = hs::block_frobenius_products(X, Y, k, set, group, hs::PairKernel::projector, {});
      auto b = hs::block_frobenius_products(X, Y, k, set, group, hs::PairKernel::direct, {});
      REQUIRE(a.ok());
      REQUIRE(b.ok());
      Worst w(std::string("projector vs direct kernel, ") +
                  set_name(set),
              1e-5);
      for (int i = 0; i < n; ++i) {
        for (int j = 0; j < n; ++j) {
          // And both against a plain per-pair product in double.
          const hs::MatrixRM& Yr = set == hs::PairSet::symmetric ? X : Y;
          const bool needed = set != hs::PairSet::later_layer || i / group < j / group;
          const double want = needed ? (X.middleCols(i * k, k).cast<double>().transpose() *
                                        Yr.middleCols(j * k, k).cast<double>()).squaredNorm()
                                     : 0.0;
          w.add((*a)(i, j), want, "projector " + at(i, j), std::max(1.0, want));
          w.add((*b)(i, j), want, "direct " + at(i, j), std::max(1.0, want));
        }
      }
      w.check();
    }
  }
}

TEST_CASE("pair products: the projector kernel's blocking (many heads, split coordinate blocks) is exact", "[pair_products]") {
  // Enough heads and width that the packed coordinates are split into
  // several column blocks per band (d 520 > the block width for 176 heads),
  // the symmetric set recurses (> 16 heads) and the later-layer set runs
  // its layer rectangles; d is no multiple of the band (zero rows pad it).
  const int d = 520, k = 3, n = 176, group = 16;
  hs::MatrixRM X = hs::MatrixRM::Random(d, n * k), Y = hs::MatrixRM::Random(d, n * k);
  X.middleCols(5 * k, k).setZero();
  // Every band the head count can choose (0: the automatic one, 128 here),
  // and one that does not divide d.
  for (int band : {0, 64, 32, 16, 44})
  for (auto set : {hs::PairSet::symmetric, hs::PairSet::later_layer, hs::PairSet::ordered}) {
    auto a = hs::block_frobenius_products(X, Y, k, set, group, hs::PairKernel::projector, {}, 0, 1, band);
    REQUIRE(a.ok());
    const hs::MatrixRM& Yr = set == hs::PairSet::symmetric ? X : Y;
    const MatrixRMd Xd = X.cast<double>(), Yd = Yr.cast<double>();
    Worst w(std::string("projector blocks vs double, band ") + std::to_string(band) + ", " +
                set_name(set),
            1e-6);
    for (int i = 0; i < n; ++i) {
      for (int j = 0; j < n; ++j) {
        const bool needed = set != hs::PairSet::later_layer || i / group < j / group;
        const double want = needed ? (Xd.middleCols(i * k, k).transpose() * Yd.middleCols(j * k, k)).squaredNorm() : 0.0;
        // Relative to the pair's scale ||X_i||^2 ||Y_j||^2 (the sum's magnitude).
        const double scale = Xd.middleCols(i * k, k).squaredNorm() * Yd.middleCols(j * k, k).squaredNorm();
        w.add((*a)(i, j), want, at(i, j), std::max(1.0, scale));
      }
    }
    w.check();
  }
}
