// WeightMatrix (core/weight_matrix.hpp): 16-bit storage holds what it is
// given exactly when the format can, reads back by rows, columns or whole,
// and its products (the GEMM widening as it packs) equal those of the same
// values in float32 bit for bit, on shapes that cross the blocking's edges.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <random>

#include "kernels.hpp"
#include "weight_matrix.hpp"

using namespace hs;

namespace {

// Values bfloat16 (8 significant bits) and float16 (11, up to 65504) hold exactly.
float representable(std::mt19937& rng, WeightStorage storage) {
  std::uniform_int_distribution<int> mantissa(-127, 127), exponent(-12, 6);
  const float v = std::ldexp(static_cast<float>(mantissa(rng)), exponent(rng));
  return storage == WeightStorage::f16 && std::fabs(v) < 6.2e-5f ? 0.f : v;
}

WeightMatrix filled(WeightStorage storage, int rows, int cols, unsigned seed) {
  std::mt19937 rng(seed);
  WeightMatrix W = WeightMatrix::sixteen_bit(storage, rows, cols);
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c) W.set(r, c, representable(rng, storage));
  return W;
}

}  // namespace

TEST_CASE("weight matrix: 16-bit storage keeps representable values exactly, in half the bytes", "[weight_matrix]") {
  for (WeightStorage storage : {WeightStorage::bf16, WeightStorage::f16}) {
    INFO((storage == WeightStorage::bf16 ? "bf16" : "f16"));
    std::mt19937 rng(7);
    MatrixRM want(5, 9);
    for (Eigen::Index i = 0; i < want.size(); ++i) want.data()[i] = representable(rng, storage);
    want(0, 0) = 1.5f, want(0, 1) = -0.25f, want(0, 2) = 3.f, want(0, 3) = 1.f / 1024;
    WeightMatrix W = WeightMatrix::sixteen_bit(storage, 5, 9);
    for (int r = 0; r < 5; ++r) W.set_row_span(r, 0, want.data() + r * 9, 9);
    CHECK(W.storage() == storage);
    CHECK(W.bytes() == 5 * 9 * 2);
    CHECK(W.widened() == want);
    CHECK(W.rows_f32(2, 2) == want.middleRows(2, 2));
    CHECK(W.cols_f32(3, 4) == want.middleCols(3, 4));
    CHECK(W == WeightMatrix(want));
    W.to_f32();
    CHECK(W.is_f32());
    CHECK(W.bytes() == 5 * 9 * 4);
    CHECK(W.f32() == want);
  }
  // bfloat16 rounds what it cannot hold to the nearest (even) value.
  WeightMatrix B = WeightMatrix::sixteen_bit(WeightStorage::bf16, 1, 2);
  B.set(0, 0, 1.f + 1.f / 256 + 1.f / 1024);  // nearer 1 + 1/128 than 1
  B.set(0, 1, 1.f + 1.f / 256);               // a tie: to even, 1
  CHECK(B.widened()(0, 0) == 1.f + 1.f / 128);
  CHECK(B.widened()(0, 1) == 1.f);
}

TEST_CASE("weight matrix: products with a 16-bit matrix equal those of its float32 copy bit for bit",
          "[weight_matrix]") {
  struct Shape {
    int N, k, n;
  };
  std::printf("gemm runs: %s\n", gemm_kernel_name());
  for (WeightStorage storage : {WeightStorage::bf16, WeightStorage::f16})
    for (const Shape& s : {Shape{1, 1, 1}, Shape{3, 7, 5}, Shape{13, 257, 33}, Shape{130, 300, 1030}, Shape{7, 600, 17}}) {
      INFO((storage == WeightStorage::bf16 ? "bf16 " : "f16 ") << s.N << " x " << s.k << " x " << s.n);
      const WeightMatrix W = filled(storage, s.k, s.n, static_cast<unsigned>(s.k * 31 + s.n));
      const WeightMatrix wide(W.widened());
      std::mt19937 rng(3);
      std::uniform_real_distribution<float> u(-1.f, 1.f);
      MatrixRM A(s.N, s.k), G(s.N, s.n);
      for (Eigen::Index i = 0; i < A.size(); ++i) A.data()[i] = u(rng);
      for (Eigen::Index i = 0; i < G.size(); ++i) G.data()[i] = u(rng);
      RowVectorF bias(s.n);
      for (Eigen::Index i = 0; i < bias.size(); ++i) bias[i] = u(rng);
      MatrixRM c16, c32;
      matmul(c16, A, W, &bias);
      matmul(c32, A, wide, &bias);
      CHECK(c16 == c32);
      CHECK(matmul_bt(G, W) == matmul_bt(G, wide));  // [N, n] W^T: what the reverse pass reads
      // As the first operand, as the tied unembedding reads W_E: W [k, n] G^T [n, N].
      MatrixRM t16(s.k, s.N), t32(s.k, s.N);
      const MatrixRM Gt = G.transpose();
      W.visit([&](const auto* w) { gemm(s.k, s.N, s.n, w, s.n, Gt.data(), s.N, t16.data(), s.N); });
      gemm(s.k, s.N, s.n, wide.f32().data(), s.n, Gt.data(), s.N, t32.data(), s.N);
      CHECK(t16 == t32);
    }
}
