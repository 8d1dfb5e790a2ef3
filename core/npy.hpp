// Reading and writing NumPy .npy files (format versions 1.0-3.0, little-endian,
// C order). Used by the CLI to write attention patterns and metrics, and by the
// tests to read the Hugging Face oracle fixtures and numpy reference values.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "result.hpp"

namespace hs {

struct NpyArray {
  std::vector<std::int64_t> shape;
  std::vector<double> data;  // every supported dtype widened to double

  std::int64_t size() const;
  std::vector<float> as_float() const;
  std::vector<std::int64_t> as_int64() const;
};

// Parses .npy bytes; supports dtypes <f4, <f8, <i4, <i8, |u1, |b1.
Result<NpyArray> npy_parse(const std::uint8_t* bytes, std::size_t size);
Result<NpyArray> npy_load(const std::string& path);

// Serialises float32 data of the given shape as .npy (version 1.0, '<f4').
std::vector<std::uint8_t> npy_encode_f32(const float* data, const std::vector<std::int64_t>& shape);
Status npy_save_f32(const std::string& path, const float* data, const std::vector<std::int64_t>& shape);

}  // namespace hs
