#include "npy.hpp"

#include <cstring>
#include <fstream>
#include <iterator>
#include <regex>

namespace hs {

std::int64_t NpyArray::size() const {
  std::int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

std::vector<float> NpyArray::as_float() const { return std::vector<float>(data.begin(), data.end()); }

std::vector<std::int64_t> NpyArray::as_int64() const {
  std::vector<std::int64_t> out(data.size());
  for (std::size_t i = 0; i < data.size(); ++i) out[i] = static_cast<std::int64_t>(data[i]);
  return out;
}

namespace {

template <class T>
void widen(const std::uint8_t* src, std::size_t n, std::vector<double>& out) {
  out.resize(n);
  for (std::size_t i = 0; i < n; ++i) {
    T v;
    std::memcpy(&v, src + i * sizeof(T), sizeof(T));
    out[i] = static_cast<double>(v);
  }
}

}  // namespace

Result<NpyArray> npy_parse(const std::uint8_t* bytes, std::size_t size) {
  static const char magic[] = "\x93NUMPY";
  if (size < 10 || std::memcmp(bytes, magic, 6) != 0) return make_error("npy: not a .npy file (bad magic)");
  const int major = bytes[6];
  std::size_t header_len = 0, offset = 0;
  if (major == 1) {
    header_len = bytes[8] | (bytes[9] << 8);
    offset = 10;
  } else if (major == 2 || major == 3) {
    if (size < 12) return make_error("npy: truncated header");
    header_len = bytes[8] | (bytes[9] << 8) | (bytes[10] << 16) | (std::size_t(bytes[11]) << 24);
    offset = 12;
  } else {
    return make_error("npy: unsupported format version " + std::to_string(major));
  }
  if (offset + header_len > size) return make_error("npy: header runs past the end of the file");
  const std::string header(reinterpret_cast<const char*>(bytes + offset), header_len);

  std::smatch m;
  if (!std::regex_search(header, m, std::regex("'descr':\\s*'([^']+)'")))
    return make_error("npy: header has no descr");
  const std::string descr = m[1];
  if (std::regex_search(header, m, std::regex("'fortran_order':\\s*True")))
    return make_error("npy: Fortran-ordered arrays are not supported");
  if (!std::regex_search(header, m, std::regex("'shape':\\s*\\(([^)]*)\\)")))
    return make_error("npy: header has no shape");

  NpyArray array;
  const std::string dims = m[1];
  std::regex number("\\d+");
  for (auto it = std::sregex_iterator(dims.begin(), dims.end(), number); it != std::sregex_iterator(); ++it)
    array.shape.push_back(std::stoll(it->str()));

  const std::size_t n = static_cast<std::size_t>(array.size());
  const std::uint8_t* data = bytes + offset + header_len;
  const std::size_t available = size - offset - header_len;
  auto need = [&](std::size_t item) -> Status {
    if (n * item > available) return make_error("npy: data shorter than its shape");
    return Ok{};
  };
  if (descr == "<f4") {
    HS_TRY(need(4));
    widen<float>(data, n, array.data);
  } else if (descr == "<f8") {
    HS_TRY(need(8));
    widen<double>(data, n, array.data);
  } else if (descr == "<i4") {
    HS_TRY(need(4));
    widen<std::int32_t>(data, n, array.data);
  } else if (descr == "<i8") {
    HS_TRY(need(8));
    widen<std::int64_t>(data, n, array.data);
  } else if (descr == "|u1" || descr == "|b1") {
    HS_TRY(need(1));
    widen<std::uint8_t>(data, n, array.data);
  } else {
    return make_error("npy: unsupported dtype " + descr);
  }
  return array;
}

Result<NpyArray> npy_load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error("npy: cannot open " + path);
  std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto parsed = npy_parse(bytes.data(), bytes.size());
  if (!parsed) return make_error(path + ": " + parsed.error().message);
  return parsed;
}

std::vector<std::uint8_t> npy_encode_f32(const float* data, const std::vector<std::int64_t>& shape) {
  std::string dims;
  std::int64_t n = 1;
  for (auto d : shape) {
    dims += std::to_string(d) + ", ";
    n *= d;
  }
  // numpy spells shapes "(5,)" and "(2, 3)".
  if (shape.size() == 1) dims.pop_back();
  if (shape.size() > 1) dims.resize(dims.size() - 2);
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
  // Pad so that magic (6) + version (2) + length (2) + header ends on a multiple of 64.
  const std::size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header.push_back('\n');

  std::vector<std::uint8_t> out = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
  out.push_back(static_cast<std::uint8_t>(header.size() & 0xff));
  out.push_back(static_cast<std::uint8_t>(header.size() >> 8));
  out.insert(out.end(), header.begin(), header.end());
  const auto* raw = reinterpret_cast<const std::uint8_t*>(data);
  out.insert(out.end(), raw, raw + n * sizeof(float));
  return out;
}

Status npy_save_f32(const std::string& path, const float* data, const std::vector<std::int64_t>& shape) {
  std::ofstream out(path, std::ios::binary);
  if (!out) return make_error("npy: cannot write " + path);
  const auto bytes = npy_encode_f32(data, shape);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!out) return make_error("npy: write failed for " + path);
  return Ok{};
}

}  // namespace hs
