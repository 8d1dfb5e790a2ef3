// WeightMatrix: float32 or 16-bit storage; see weight_matrix.hpp.
#include "weight_matrix.hpp"

#include <cassert>
#include <cstring>

#include "kernels.hpp"

namespace hs {

namespace {

float widen_bits(WeightStorage storage, std::uint16_t bits) {
  return storage == WeightStorage::bf16 ? widen(bf16{bits}) : widen(f16{bits});
}

std::uint16_t narrow_bits(WeightStorage storage, float value) {
  return storage == WeightStorage::bf16 ? to_bf16(value).bits : to_f16(value).bits;
}

}  // namespace

WeightMatrix WeightMatrix::sixteen_bit(WeightStorage storage, Eigen::Index rows, Eigen::Index cols) {
  assert(storage != WeightStorage::f32);
  WeightMatrix w;
  w.storage_ = storage;
  w.rows_ = rows;
  w.cols_ = cols;
  w.half_.assign(static_cast<std::size_t>(rows * cols), 0);
  return w;
}

const MatrixRM& WeightMatrix::f32() const {
  assert(is_f32() && "WeightMatrix::f32: the matrix is 16-bit (widen it, or read it through rows_f32)");
  return f32_;
}

MatrixRM& WeightMatrix::f32() {
  assert(is_f32() && "WeightMatrix::f32: the matrix is 16-bit (call to_f32 first)");
  return f32_;
}

MatrixRM WeightMatrix::rows_f32(Eigen::Index r0, Eigen::Index n) const {
  if (is_f32()) return f32_.middleRows(r0, n);
  MatrixRM out(n, cols_);
  const std::uint16_t* src = half_.data() + static_cast<std::size_t>(r0 * cols_);
  float* dst = out.data();
  for (Eigen::Index i = 0, total = n * cols_; i < total; ++i) dst[i] = widen_bits(storage_, src[i]);
  return out;
}

MatrixRM WeightMatrix::cols_f32(Eigen::Index c0, Eigen::Index n) const {
  if (is_f32()) return f32_.middleCols(c0, n);
  MatrixRM out(rows_, n);
  for (Eigen::Index r = 0; r < rows_; ++r) {
    const std::uint16_t* src = half_.data() + static_cast<std::size_t>(r * cols_ + c0);
    for (Eigen::Index c = 0; c < n; ++c) out(r, c) = widen_bits(storage_, src[c]);
  }
  return out;
}

MatrixRM WeightMatrix::widened() const { return is_f32() ? f32_ : rows_f32(0, rows_); }

void WeightMatrix::to_f32() {
  if (is_f32()) return;
  f32_ = widened();
  half_ = {};
  storage_ = WeightStorage::f32;
}

void WeightMatrix::set_row_span(Eigen::Index r, Eigen::Index c, const float* values, Eigen::Index n) {
  assert(r >= 0 && r < rows() && c >= 0 && c + n <= cols());
  if (is_f32()) {
    std::memcpy(f32_.data() + r * f32_.cols() + c, values, static_cast<std::size_t>(n) * sizeof(float));
    return;
  }
  std::uint16_t* dst = half_.data() + static_cast<std::size_t>(r * cols_ + c);
  for (Eigen::Index i = 0; i < n; ++i) dst[i] = narrow_bits(storage_, values[i]);
}

void WeightMatrix::set_row_bits(Eigen::Index r, Eigen::Index c, const std::uint16_t* bits, Eigen::Index n) {
  assert(!is_f32() && r >= 0 && r < rows() && c >= 0 && c + n <= cols());
  std::memcpy(half_.data() + static_cast<std::size_t>(r * cols_ + c), bits, static_cast<std::size_t>(n) * 2);
}

bool operator==(const WeightMatrix& a, const WeightMatrix& b) {
  if (a.rows() != b.rows() || a.cols() != b.cols()) return false;
  if (a.is_f32() && b.is_f32()) return a.f32() == b.f32();
  return a.widened() == b.widened();
}

void matmul(MatrixRM& C, const MatrixRM& A, const WeightMatrix& W, const RowVectorF* bias) {
  if (W.is_f32()) return matmul(C, A, W.f32(), bias);
  C.resize(A.rows(), W.cols());
  const float* b = (bias && bias->size() == W.cols()) ? bias->data() : nullptr;
  const int M = static_cast<int>(A.rows()), N = static_cast<int>(W.cols()), K = static_cast<int>(A.cols());
  W.visit([&](const auto* w) { gemm(M, N, K, A.data(), K, w, N, C.data(), N, b); });
}

MatrixRM matmul_bt(const MatrixRM& A, const WeightMatrix& W) {
  const int M = static_cast<int>(A.rows()), N = static_cast<int>(W.rows()), K = static_cast<int>(A.cols());
  MatrixRM C(M, N);
  W.visit([&](const auto* w) { gemm_nt(M, N, K, A.data(), K, w, K, C.data(), N); });
  return C;
}

}  // namespace hs
