// Eigen type aliases used across the core, and BlockView. Weights and
// activations are float32, row-major, as they come out of safetensors files;
// Map aliases and BlockView view buffers the caller already owns without
// copying.
#pragma once

#include <cstddef>

#include <Eigen/Dense>

namespace hs {

using MatrixRM = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MatrixRMd = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MatrixCd = Eigen::MatrixXd;  // column-major, for Eigen's decompositions
using VectorF = Eigen::VectorXf;
using RowVectorF = Eigen::RowVectorXf;
using MapRM = Eigen::Map<MatrixRM>;
using ConstMapRM = Eigen::Map<const MatrixRM>;

// A float matrix read in place: entry (r, c) is data[r * row_stride + c * col_stride].
struct BlockView {
  const float* data = nullptr;
  std::ptrdiff_t row_stride = 0, col_stride = 0;
  int rows = 0, cols = 0;
  BlockView transposed() const { return {data, col_stride, row_stride, cols, rows}; }
};

// A whole row-major matrix as a BlockView.
inline BlockView view_of(const MatrixRM& M) {
  return {M.data(), M.cols(), 1, static_cast<int>(M.rows()), static_cast<int>(M.cols())};
}

}  // namespace hs
