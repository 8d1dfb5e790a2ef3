// libFuzzer target for the safetensors reader: parses the input as a whole
// file and as a header-only Range response, decodes every tensor, parses the
// input as an index file, and checks one property: a file the reader accepts
// re-serialises (with the project's writer) into a file it accepts again with
// the same tensors and bytes.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "safetensors.hpp"

namespace {

[[noreturn]] void fail(const char* what, const std::string& detail) {
  std::fprintf(stderr, "property violated: %s: %s\n", what, detail.c_str());
  std::abort();
}

void round_trip(const hs::SafetensorsFile& file) {
  std::vector<hs::SafetensorsTensorIn> in;
  for (const auto& t : file.tensors)
    in.push_back(
        {t.name, t.dtype, t.shape, std::vector<std::uint8_t>(file.data + t.begin, file.data + t.end)});
  auto bytes = hs::safetensors_serialize(in, file.metadata);
  auto again = hs::safetensors_parse(bytes.data(), bytes.size(), "rewritten");
  if (!again) fail("re-serialised file rejected", again.error().message);
  if (again->tensors.size() != file.tensors.size()) fail("tensor count changed", "");
  if (again->metadata != file.metadata) fail("metadata changed", "");
  for (const auto& t : file.tensors) {
    const hs::TensorInfo* u = again->find(t.name);
    if (!u) fail("tensor lost", t.name);
    if (u->dtype != t.dtype || u->shape != t.shape || u->end - u->begin != t.end - t.begin ||
        std::memcmp(again->data + u->begin, file.data + t.begin, t.end - t.begin) != 0)
      fail("tensor changed", t.name);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto file = hs::safetensors_parse(data, size, "fuzz.safetensors");
  if (file) {
    for (const auto& t : file->tensors) {
      auto v = hs::safetensors_read_f32(*file, t);
      if (v && static_cast<std::int64_t>(v->size()) != t.numel()) fail("decoded count != numel", t.name);
    }
    round_trip(*file);
  }

  // The same bytes as a header-only Range response: [0, 8+N) of a file of
  // `size` bytes. It must agree with the whole-file parse.
  if (size >= 8) {
    std::uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | data[i];
    if (n <= size - 8) {
      auto header =
          hs::safetensors_parse_header(data, static_cast<std::size_t>(8 + n), size, "fuzz.safetensors");
      if (header.ok() != file.ok()) fail("header-only and whole-file parses disagree", "");
      if (header) {
        for (const auto& t : header->tensors) {
          auto v = hs::safetensors_decode_f32(t, data + 8 + n + t.begin,
                                              static_cast<std::size_t>(t.end - t.begin), "fuzz.safetensors");
          (void)v;
        }
      }
    }
  }

  auto index = hs::safetensors_parse_index(std::string(reinterpret_cast<const char*>(data), size));
  (void)index;
  return 0;
}
