// Eigen type aliases used across the core. Weights and activations are float32,
// row-major, as they come out of safetensors files; Map aliases view buffers
// the caller already owns without copying.
#pragma once

#include <Eigen/Dense>

namespace hs {

using MatrixRM = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MatrixRMd = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using VectorF = Eigen::VectorXf;
using RowVectorF = Eigen::RowVectorXf;
using MapRM = Eigen::Map<MatrixRM>;
using ConstMapRM = Eigen::Map<const MatrixRM>;

}  // namespace hs
