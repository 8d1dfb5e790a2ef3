// Reader for the safetensors format (SPEC §1) over a byte buffer owned by the
// caller. Parsing validates every rule of the reference implementation and
// reports the first violation as an Error naming the file, tensor and offset;
// tensor data is decoded to float32 on request (F32, F16, BF16), with memcpy
// so that unaligned offsets are fine.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "result.hpp"

namespace hs {

enum class Dtype {
  BOOL,
  U8,
  I8,
  F8_E5M2,
  F8_E4M3,
  F8_E8M0,
  F8_E4M3FNUZ,
  F8_E5M2FNUZ,
  I16,
  U16,
  F16,
  BF16,
  I32,
  U32,
  F32,
  I64,
  U64,
  F64,
  C64,
  F4,
  F6_E2M3,
  F6_E3M2
};

struct TensorInfo {
  std::string name;
  Dtype dtype;
  std::vector<std::int64_t> shape;
  std::uint64_t begin = 0;  // offsets relative to the start of the data buffer
  std::uint64_t end = 0;
  std::int64_t numel() const;  // product of shape; -1 if it overflows (never for a parsed file)
};

// Copies bytes [offset, offset + n) of a file's data buffer (offsets as in
// TensorInfo) into `out`; an Error when it cannot.
using SafetensorsReader = std::function<Status(std::uint64_t offset, std::size_t n, std::uint8_t* out)>;

// A parsed safetensors file. It does not own the bytes: `data` points at the
// start of the data buffer inside the caller's buffer, which must outlive it.
// A file parsed from its header only has no `data`; giving it a `reader`
// (e.g. the wasm module asking JS for bytes it keeps outside wasm memory)
// lets safetensors_read_f32 / safetensors_read_f32_into read it all the same.
struct SafetensorsFile {
  std::string source;               // file name used in error messages
  std::vector<TensorInfo> tensors;  // in header order
  std::map<std::string, std::string> metadata;
  std::uint64_t header_size = 0;  // N
  const std::uint8_t* data = nullptr;
  std::uint64_t data_size = 0;
  SafetensorsReader reader;  // used when data is null

  const TensorInfo* find(const std::string& name) const;
};

// The most tensors one file's header may list. The format itself has no such
// limit (only the header's 100 MB); checkpoint files hold hundreds to a few
// thousand, and the limit keeps a hostile header's parse short.
inline constexpr std::int64_t safetensors_max_tensors = 100000;

// N, the header's length, from the first 8 bytes of a file of `file_size`
// bytes (`size` of them given), checked as the reference does: the file holds
// the 8 bytes, N is at most 100,000,000 and 8 + N fits in the file. What a
// reader that fetches the header by Range requests asks first.
Result<std::uint64_t> safetensors_header_length(const std::uint8_t* bytes, std::size_t size,
                                                std::uint64_t file_size, const std::string& source);

// Parses only the first 8 + N bytes: what a Range request returns. `file_size`
// is the total size of the file, needed for the no-trailing-bytes rule.
Result<SafetensorsFile> safetensors_parse_header(const std::uint8_t* bytes, std::size_t size,
                                                 std::uint64_t file_size, const std::string& source);
// Parses a whole file held in memory.
Result<SafetensorsFile> safetensors_parse(const std::uint8_t* bytes, std::size_t size,
                                          const std::string& source);

// Decodes a tensor's data to float32 (F32, F16, BF16, and F64 narrowed).
// Other dtypes parse fine but are an error here, naming the tensor. A file
// from safetensors_parse_header alone (data == nullptr) needs a reader;
// without one, use safetensors_decode_f32 on the bytes fetched for the tensor.
Result<std::vector<float>> safetensors_read_f32(const SafetensorsFile& file, const TensorInfo& tensor);

// Decodes values [first, first + count) of a tensor (flat C order) into
// out[0, count), with no temporary beyond a small conversion buffer (F32
// through a reader lands in `out` directly). Errors as safetensors_read_f32,
// and for a range outside the tensor.
Status safetensors_read_f32_into(const SafetensorsFile& file, const TensorInfo& tensor, std::int64_t first,
                                 std::int64_t count, float* out);

// Values [first, first + count) of a BF16 or F16 tensor as they are stored
// (the 16-bit patterns, little-endian), into out[0, count): what keeps them
// 16-bit (weight_matrix.hpp) copies, without decoding and narrowing back.
// Errors as safetensors_read_f32_into, and for a tensor of another dtype.
Status safetensors_read_16bit_into(const SafetensorsFile& file, const TensorInfo& tensor, std::int64_t first,
                                   std::int64_t count, std::uint16_t* out);

// Decodes the `size` bytes of one tensor, e.g. those an HTTP Range request for
// [8+N+begin, 8+N+end) returned. `size` must equal end - begin.
Result<std::vector<float>> safetensors_decode_f32(const TensorInfo& tensor, const std::uint8_t* bytes,
                                                  std::size_t size, const std::string& source);

const char* dtype_name(Dtype dtype);
// The dtype's size in bits (4 for F4, 6 for the F6 types).
int dtype_bits(Dtype dtype);
// The dtype named `name` ("F32", "BF16", ...); an error for unknown names.
Result<Dtype> dtype_from_name(const std::string& name);

// model.safetensors.index.json: tensor name -> shard file name. Unknown
// fields are ignored; `source` names the file in error messages. A shard name
// must be a relative path inside the model folder ending in ".safetensors".
Result<std::map<std::string, std::string>> safetensors_parse_index(
    const std::string& json_text, const std::string& source = "model.safetensors.index.json");

// One tensor to write: raw little-endian bytes in C order.
struct SafetensorsTensorIn {
  std::string name;
  Dtype dtype = Dtype::F32;
  std::vector<std::int64_t> shape;
  std::vector<std::uint8_t> data;
};

// Serialises tensors as the reference writer does: sorted by descending dtype
// size then by name, packed back to back, the compact JSON header padded with
// spaces to a multiple of 8, "__metadata__" first when not empty. The input is
// written as given, not validated: a data size that disagrees with shape x
// dtype, or a repeated name, yields a file the reader rejects (the corrupt-file
// tests rely on that).
std::vector<std::uint8_t> safetensors_serialize(const std::vector<SafetensorsTensorIn>& tensors,
                                                const std::map<std::string, std::string>& metadata = {});

// Helpers to build SafetensorsTensorIn from float32 values: F32 stored as is,
// BF16 and F16 rounded to nearest even.
SafetensorsTensorIn safetensors_tensor_f32(std::string name, std::vector<std::int64_t> shape,
                                           const std::vector<float>& values);
SafetensorsTensorIn safetensors_tensor_bf16(std::string name, std::vector<std::int64_t> shape,
                                            const std::vector<float>& values);
SafetensorsTensorIn safetensors_tensor_f16(std::string name, std::vector<std::int64_t> shape,
                                           const std::vector<float>& values);

// The bytes of a whole file on disk (native callers: tests, tools).
Result<std::vector<std::uint8_t>> safetensors_read_bytes(const std::string& path);

}  // namespace hs
