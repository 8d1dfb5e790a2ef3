// Reader for the safetensors format (SPEC §1) over a byte buffer owned by the
// caller. Parsing validates every rule of the reference implementation and
// reports the first violation as an Error naming the file, tensor and offset;
// tensor data is decoded to float32 on request (F32, F16, BF16), with memcpy
// so that unaligned offsets are fine.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "result.hpp"

namespace hs {

enum class Dtype { BOOL, U8, I8, F8_E5M2, F8_E4M3, F8_E8M0, F8_E4M3FNUZ, F8_E5M2FNUZ, I16, U16, F16, BF16,
                   I32, U32, F32, I64, U64, F64, C64, F4, F6_E2M3, F6_E3M2 };

struct TensorInfo {
  std::string name;
  Dtype dtype;
  std::vector<std::int64_t> shape;
  std::uint64_t begin = 0;  // offsets relative to the start of the data buffer
  std::uint64_t end = 0;
  std::int64_t numel() const;
};

// A parsed safetensors file. It does not own the bytes: `data` points at the
// start of the data buffer inside the caller's buffer, which must outlive it.
struct SafetensorsFile {
  std::string source;  // file name used in error messages
  std::vector<TensorInfo> tensors;  // in header order
  std::map<std::string, std::string> metadata;
  std::uint64_t header_size = 0;  // N
  const std::uint8_t* data = nullptr;
  std::uint64_t data_size = 0;

  const TensorInfo* find(const std::string& name) const;
};

// Parses only the first 8 + N bytes: what a Range request returns. `file_size`
// is the total size of the file, needed for the no-trailing-bytes rule.
Result<SafetensorsFile> safetensors_parse_header(const std::uint8_t* bytes, std::size_t size,
                                                 std::uint64_t file_size, const std::string& source);
// Parses a whole file held in memory.
Result<SafetensorsFile> safetensors_parse(const std::uint8_t* bytes, std::size_t size, const std::string& source);

// Decodes a tensor's data to float32 (F32, F16, BF16, and F64 narrowed).
Result<std::vector<float>> safetensors_read_f32(const SafetensorsFile& file, const TensorInfo& tensor);

const char* dtype_name(Dtype dtype);

// model.safetensors.index.json: tensor name -> shard file name.
Result<std::map<std::string, std::string>> safetensors_parse_index(const std::string& json_text);

}  // namespace hs
