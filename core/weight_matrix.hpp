// A weight matrix as its checkpoint stored it: float32, or bfloat16 and
// float16 kept in 16 bits (half the memory of float32), widened to float32
// where they are used: by the packed GEMM as it packs its operands
// (kernels.hpp), or a block at a time (rows_f32, cols_f32). The model keeps
// its largest matrices this way, the MLP's and the embedding and
// unembedding (model.hpp); the attention weights, which every metric reads,
// are float32 whatever the checkpoint holds. Widening is exact, so a 16-bit
// matrix gives the same numbers as its float32 copy.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "half.hpp"
#include "linalg.hpp"

namespace hs {

enum class WeightStorage { f32, bf16, f16 };

class WeightMatrix {
 public:
  WeightMatrix() = default;
  WeightMatrix(MatrixRM m) : f32_(std::move(m)) {}  // float32 storage
  // A 16-bit matrix [rows, cols] of zeros.
  static WeightMatrix sixteen_bit(WeightStorage storage, Eigen::Index rows, Eigen::Index cols);

  WeightStorage storage() const { return storage_; }
  bool is_f32() const { return storage_ == WeightStorage::f32; }
  Eigen::Index rows() const { return is_f32() ? f32_.rows() : rows_; }
  Eigen::Index cols() const { return is_f32() ? f32_.cols() : cols_; }
  Eigen::Index size() const { return rows() * cols(); }
  std::size_t bytes() const { return static_cast<std::size_t>(size()) * (is_f32() ? 4 : 2); }

  // The float32 matrix (float32 storage only).
  const MatrixRM& f32() const;
  MatrixRM& f32();
  // Rows [r0, r0 + n) and columns [c0, c0 + n) as float32, and the whole matrix.
  MatrixRM rows_f32(Eigen::Index r0, Eigen::Index n) const;
  MatrixRM cols_f32(Eigen::Index c0, Eigen::Index n) const;
  MatrixRM widened() const;
  // Becomes float32 storage (what rewrites the weights, such as weight processing, needs).
  void to_f32();
  // Sets entries from float32 values that the storage holds exactly (a
  // checkpoint's 16-bit values decoded): n values from (r, c) along a row.
  void set_row_span(Eigen::Index r, Eigen::Index c, const float* values, Eigen::Index n);
  void set(Eigen::Index r, Eigen::Index c, float value) { set_row_span(r, c, &value, 1); }
  // 16-bit storage: n stored 16-bit patterns from (r, c) along a row, as
  // they are (a checkpoint's tensor of this matrix's dtype).
  void set_row_bits(Eigen::Index r, Eigen::Index c, const std::uint16_t* bits, Eigen::Index n);

  // f(data) with the typed data pointer (const float*, const bf16* or const
  // f16*), row-major [rows, cols]: for the GEMM's overloads.
  template <class F>
  decltype(auto) visit(F&& f) const {
    switch (storage_) {
      case WeightStorage::bf16: return f(reinterpret_cast<const bf16*>(half_.data()));
      case WeightStorage::f16: return f(reinterpret_cast<const f16*>(half_.data()));
      default: return f(static_cast<const float*>(f32_.data()));
    }
  }

 private:
  WeightStorage storage_ = WeightStorage::f32;
  MatrixRM f32_;
  std::vector<std::uint16_t> half_;
  Eigen::Index rows_ = 0, cols_ = 0;  // of the 16-bit storage (float32: f32_'s)
};

// The same shape and values (as float32), whatever the storage.
bool operator==(const WeightMatrix& a, const WeightMatrix& b);

// C [N, n] = A [N, k] W [k, n] (+ bias [n] when it has n entries).
void matmul(MatrixRM& C, const MatrixRM& A, const WeightMatrix& W, const RowVectorF* bias = nullptr);
// A [N, n] W^T for W [k, n]: [N, k].
MatrixRM matmul_bt(const MatrixRM& A, const WeightMatrix& W);

}  // namespace hs
