// safetensors reader and writer (SPEC §1). The reader mirrors the reference
// implementation's rules (huggingface/safetensors, tensor.rs `read_metadata`
// and `Metadata::validate`) and adds two of its own: duplicate JSON keys are
// rejected, at every level, instead of silently keeping the last value, and a
// header may list at most kMaxTensors tensors. The header is parsed twice: a
// SAX pass that only checks (duplicates, depth, the tensor count, and gives a
// byte offset for syntax errors) and records the top-level keys in order,
// then a DOM pass. Both are O(n log n) in the number of tensors: a header of
// the 100 MB the format allows parses in seconds, never minutes.
#include "safetensors.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <nlohmann/json.hpp>
#include <numeric>
#include <set>
#include <sstream>

#include "half.hpp"

namespace hs {

namespace {

constexpr std::uint64_t kMaxHeaderSize = 100000000;  // MAX_HEADER_SIZE in tensor.rs
constexpr int kMaxJsonDepth = 128;                   // serde_json's recursion limit; the schema needs 3

struct DtypeEntry {
  Dtype dtype;
  const char* name;
  int bits;
};

constexpr DtypeEntry kDtypes[] = {
    {Dtype::BOOL, "BOOL", 8},
    {Dtype::U8, "U8", 8},
    {Dtype::I8, "I8", 8},
    {Dtype::F8_E5M2, "F8_E5M2", 8},
    {Dtype::F8_E4M3, "F8_E4M3", 8},
    {Dtype::F8_E8M0, "F8_E8M0", 8},
    {Dtype::F8_E4M3FNUZ, "F8_E4M3FNUZ", 8},
    {Dtype::F8_E5M2FNUZ, "F8_E5M2FNUZ", 8},
    {Dtype::I16, "I16", 16},
    {Dtype::U16, "U16", 16},
    {Dtype::F16, "F16", 16},
    {Dtype::BF16, "BF16", 16},
    {Dtype::I32, "I32", 32},
    {Dtype::U32, "U32", 32},
    {Dtype::F32, "F32", 32},
    {Dtype::I64, "I64", 64},
    {Dtype::U64, "U64", 64},
    {Dtype::F64, "F64", 64},
    {Dtype::C64, "C64", 64},
    {Dtype::F4, "F4", 4},
    {Dtype::F6_E2M3, "F6_E2M3", 6},
    {Dtype::F6_E3M2, "F6_E3M2", 6},
};

const DtypeEntry* dtype_entry(Dtype dtype) {
  for (const auto& e : kDtypes)
    if (e.dtype == dtype) return &e;
  return nullptr;
}

// Quotes a name for an error message; control characters are escaped so that
// a hostile name cannot forge lines in a log, and very long names are cut.
std::string quote_name(const std::string& s) {
  std::string out = "'";
  std::size_t n = std::min<std::size_t>(s.size(), 200);
  for (std::size_t i = 0; i < n; ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  if (n < s.size()) out += "...";
  return out + "'";
}

std::string shape_string(const std::vector<std::int64_t>& shape) {
  std::string out = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

std::string offsets_string(std::uint64_t begin, std::uint64_t end) {
  return "[" + std::to_string(begin) + ", " + std::to_string(end) + "]";
}

std::uint64_t read_le64(const std::uint8_t* p) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// Strict UTF-8 as Rust's str::from_utf8: no overlong forms, no surrogates,
// nothing above U+10FFFF. Returns the offset of the first bad byte, or size.
std::size_t utf8_invalid_at(const std::uint8_t* s, std::size_t size) {
  std::size_t i = 0;
  while (i < size) {
    std::uint8_t c = s[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    int len;
    std::uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      return i;
    }
    if (size - i < static_cast<std::size_t>(len)) return i;
    if (s[i + 1] < lo || s[i + 1] > hi) return i;
    for (int k = 2; k < len; ++k)
      if (s[i + k] < 0x80 || s[i + k] > 0xBF) return i;
    i += len;
  }
  return size;
}

using Json = nlohmann::json;

// First pass over the header: syntax errors with their byte offset, duplicate
// keys in any object, a nesting limit and a limit on the top-level keys.
// Records the top-level keys in their order (the DOM's objects are sorted).
class HeaderChecker : public nlohmann::json_sax<Json> {
 public:
  HeaderChecker(std::size_t base, std::size_t max_top_keys, std::string too_many)
      : base_(base), max_top_keys_(max_top_keys), too_many_(std::move(too_many)) {}
  std::string error;
  std::vector<std::string> top_keys;

  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override {
    keys_.emplace_back();
    return check_depth();
  }
  bool key(string_t& k) override {
    if (!keys_.back().insert(k).second) {
      error =
          "duplicate key " + quote_name(k) + (keys_.size() == 1 ? " in the header" : " in a nested object");
      return false;
    }
    if (keys_.size() == 1) {
      if (top_keys.size() == max_top_keys_) {
        error = too_many_;
        return false;
      }
      top_keys.push_back(k);
    }
    return true;
  }
  bool end_object() override {
    keys_.pop_back();
    return true;
  }
  bool start_array(std::size_t) override {
    keys_.emplace_back();  // a placeholder keeps the depth count in one place
    return check_depth();
  }
  bool end_array() override {
    keys_.pop_back();
    return true;
  }
  bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception& ex) override {
    // ex.what() reads "[json.exception.parse_error.101] parse error at line 1,
    // column 3: syntax error while parsing ...": keep the part after the tag.
    std::string what = ex.what();
    auto pos = what.find("] ");
    if (pos != std::string::npos) what = what.substr(pos + 2);
    // `position` counts the characters read, the bad one included.
    error = "invalid JSON at byte " + std::to_string(base_ + (position > 0 ? position - 1 : 0)) + ": " + what;
    return false;
  }

 private:
  bool check_depth() {
    if (keys_.size() > static_cast<std::size_t>(kMaxJsonDepth)) {
      error = "JSON nested deeper than " + std::to_string(kMaxJsonDepth) + " levels";
      return false;
    }
    return true;
  }
  std::size_t base_;  // offset of the text in its file, for messages
  std::size_t max_top_keys_;
  std::string too_many_;  // the error when there are more top-level keys
  std::vector<std::set<std::string>> keys_;
};

// A JSON document and its top-level keys in the order of the text.
struct StrictJson {
  Json doc;
  std::vector<std::string> top_keys;
};

// Runs the checking pass then the DOM pass; `what` prefixes errors and
// `base` is the offset of `begin` in its file (8 for a safetensors header).
// More than `max_top_keys` top-level keys is the error `too_many`.
Result<StrictJson> parse_json_strict(const char* begin, const char* end, const std::string& what,
                                     std::size_t base,
                                     std::size_t max_top_keys = std::numeric_limits<std::size_t>::max(),
                                     std::string too_many = {}) {
  // nlohmann's lexer takes a NUL byte for the end of input, so "{}\0junk"
  // would parse. A raw NUL is never valid JSON (not even inside a string).
  if (const void* nul = std::memchr(begin, 0, static_cast<std::size_t>(end - begin)))
    return make_error(
        ErrorCode::bad_file,
        what + "invalid JSON at byte " +
            std::to_string(base + static_cast<std::size_t>(static_cast<const char*>(nul) - begin)) +
            ": NUL byte");
  // nlohmann skips a leading UTF-8 byte order mark; serde_json (and Python's
  // json) reject it.
  if (end - begin >= 3 && std::memcmp(begin, "\xEF\xBB\xBF", 3) == 0)
    return make_error(ErrorCode::bad_file,
                      what + "invalid JSON at byte " + std::to_string(base) + ": UTF-8 byte order mark");
  HeaderChecker checker(base, max_top_keys, std::move(too_many));
  bool ok = Json::sax_parse(begin, end, &checker);
  if (!ok) {
    if (checker.error.empty()) checker.error = "invalid JSON";
    return make_error(ErrorCode::bad_file, what + checker.error);
  }
  Json doc = Json::parse(begin, end, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return make_error(ErrorCode::bad_file, what + "invalid JSON");
  return StrictJson{std::move(doc), std::move(checker.top_keys)};
}

const char* json_type(const Json& v) {
  if (v.is_number_float()) return "a non-integer number";
  // nlohmann stores every non-negative integer as unsigned: a signed one was
  // written with a '-', "-0" included.
  if (v.is_number_integer() && !v.is_number_unsigned()) return "a negative number";
  return v.type_name();
}

// A non-negative JSON integer as uint64 (usize in the reference reader).
// Floats, negatives and integers past 2^64 (which nlohmann stores as floats)
// are all rejected.
bool json_u64(const Json& v, std::uint64_t& out) {
  if (v.is_number_unsigned()) {
    out = v.get<std::uint64_t>();
    return true;
  }
  // Signed values are all negative, or "-0", which serde_json reads as the
  // float -0.0 and the reference therefore rejects too.
  return false;
}

Result<TensorInfo> parse_tensor_entry(const std::string& name, const Json& entry,
                                      const std::string& prefix) {
  std::string where = prefix + "tensor " + quote_name(name) + ": ";
  if (!entry.is_object())
    return make_error(ErrorCode::bad_file, where + "entry is " + json_type(entry) + ", expected an object");
  TensorInfo t;
  t.name = name;

  auto it = entry.find("dtype");
  if (it == entry.end()) return make_error(ErrorCode::bad_file, where + "missing field \"dtype\"");
  if (!it->is_string())
    return make_error(ErrorCode::bad_file, where + "\"dtype\" is " + json_type(*it) + ", expected a string");
  auto dtype = dtype_from_name(it->get<std::string>());
  if (!dtype) return make_error(ErrorCode::bad_file, where + dtype.error().message);
  t.dtype = *dtype;

  it = entry.find("shape");
  if (it == entry.end()) return make_error(ErrorCode::bad_file, where + "missing field \"shape\"");
  if (!it->is_array())
    return make_error(ErrorCode::bad_file, where + "\"shape\" is " + json_type(*it) + ", expected an array");
  for (std::size_t i = 0; i < it->size(); ++i) {
    const auto& d = (*it)[i];
    std::uint64_t dim = 0;
    if (!json_u64(d, dim))
      return make_error(ErrorCode::bad_file, where + "shape[" + std::to_string(i) + "] is " + json_type(d) +
                                                 ", expected a non-negative integer");
    if (dim > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
      return make_error(ErrorCode::bad_file, where + "shape[" + std::to_string(i) +
                                                 "] = " + std::to_string(dim) +
                                                 " overflows int64 (ValidationOverflow)");
    t.shape.push_back(static_cast<std::int64_t>(dim));
  }

  it = entry.find("data_offsets");
  if (it == entry.end()) return make_error(ErrorCode::bad_file, where + "missing field \"data_offsets\"");
  if (!it->is_array() || it->size() != 2)
    return make_error(ErrorCode::bad_file, where + "\"data_offsets\" must be an array of 2 integers, found " +
                                               (it->is_array() ? "an array of " + std::to_string(it->size())
                                                               : std::string(json_type(*it))));
  for (int k = 0; k < 2; ++k) {
    const auto& v = (*it)[k];
    std::uint64_t off = 0;
    if (!json_u64(v, off))
      return make_error(ErrorCode::bad_file, where + "data_offsets[" + std::to_string(k) + "] is " +
                                                 json_type(v) + ", expected a non-negative integer");
    (k == 0 ? t.begin : t.end) = off;
  }
  return t;
}

// Number of bytes shape x dtype needs, checked as the reference does
// (checked_mul over the dims in order, then times the bit size).
Result<std::uint64_t> tensor_nbytes(const TensorInfo& t, const std::string& where) {
  std::uint64_t n = 1;
  for (auto d : t.shape) {
    std::uint64_t ud = static_cast<std::uint64_t>(d);
    if (ud != 0 && n > std::numeric_limits<std::uint64_t>::max() / ud)
      return make_error(ErrorCode::bad_file,
                        where + "shape " + shape_string(t.shape) +
                            " has more elements than fit in 64 bits (ValidationOverflow)");
    n *= ud;
  }
  std::uint64_t bits = static_cast<std::uint64_t>(dtype_bits(t.dtype));
  if (n > std::numeric_limits<std::uint64_t>::max() / bits)
    return make_error(ErrorCode::bad_file, where + "shape " + shape_string(t.shape) + " x " +
                                               dtype_name(t.dtype) +
                                               " overflows 64 bits (ValidationOverflow)");
  std::uint64_t nbits = n * bits;
  if (nbits % 8 != 0)
    return make_error(ErrorCode::bad_file, where + "shape " + shape_string(t.shape) + " x " +
                                               dtype_name(t.dtype) + " is " + std::to_string(nbits) +
                                               " bits, not a whole number of bytes (MisalignedSlice)");
  return nbits / 8;
}

}  // namespace

std::int64_t TensorInfo::numel() const {
  std::int64_t n = 1;
  for (auto d : shape) {
    // Parsing guarantees the product fits (it is bounded by the data size),
    // but a hand-built TensorInfo may not have been validated.
    if (d != 0 && n > std::numeric_limits<std::int64_t>::max() / d) return -1;
    n *= d;
  }
  return n;
}

const TensorInfo* SafetensorsFile::find(const std::string& name) const {
  for (const auto& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

const char* dtype_name(Dtype dtype) {
  const DtypeEntry* e = dtype_entry(dtype);
  return e ? e->name : "?";
}

int dtype_bits(Dtype dtype) {
  const DtypeEntry* e = dtype_entry(dtype);
  return e ? e->bits : 0;
}

Result<Dtype> dtype_from_name(const std::string& name) {
  for (const auto& e : kDtypes)
    if (name == e.name) return e.dtype;
  return make_error(ErrorCode::bad_file, "unknown dtype " + quote_name(name));
}

Result<std::uint64_t> safetensors_header_length(const std::uint8_t* bytes, std::size_t size,
                                                std::uint64_t file_size, const std::string& source) {
  const std::string prefix = source + ": ";
  if (bytes == nullptr && size != 0) return make_error(ErrorCode::bad_file, prefix + "no bytes given");
  if (size > file_size)
    return make_error(ErrorCode::bad_file, prefix + std::to_string(size) +
                                               " bytes given but the file size is said to be " +
                                               std::to_string(file_size));
  if (file_size < 8)
    return make_error(ErrorCode::bad_file,
                      prefix + "file is " + std::to_string(file_size) +
                          " bytes, fewer than the 8-byte header length (HeaderTooSmall)");
  if (size < 8)
    return make_error(ErrorCode::bad_file, prefix + "only " + std::to_string(size) +
                                               " bytes given, fewer than the 8-byte header length");

  const std::uint64_t n = read_le64(bytes);
  if (n > kMaxHeaderSize)
    return make_error(ErrorCode::bad_file, prefix + "header length " + std::to_string(n) +
                                               " at byte 0 exceeds the limit of " +
                                               std::to_string(kMaxHeaderSize) + " bytes (HeaderTooLarge)");
  if (8 + n > file_size)  // n <= 1e8, no overflow
    return make_error(ErrorCode::bad_file, prefix + "header length " + std::to_string(n) +
                                               " at byte 0 runs past the end of the file: 8 + " +
                                               std::to_string(n) + " = " + std::to_string(8 + n) +
                                               " > file size " + std::to_string(file_size) +
                                               " (InvalidHeaderLength)");
  return n;
}

Result<SafetensorsFile> safetensors_parse_header(const std::uint8_t* bytes, std::size_t size,
                                                 std::uint64_t file_size, const std::string& source) {
  const std::string prefix = source + ": ";
  auto length = safetensors_header_length(bytes, size, file_size, source);
  if (!length) return length.error();
  const std::uint64_t n = *length;
  if (8 + n > size)
    return make_error(ErrorCode::bad_file, prefix + "header needs bytes [0, " + std::to_string(8 + n) +
                                               ") but only " + std::to_string(size) + " were given");

  const std::uint8_t* header = bytes + 8;
  std::size_t bad = utf8_invalid_at(header, static_cast<std::size_t>(n));
  if (bad != n)
    return make_error(ErrorCode::bad_file, prefix + "header is not valid UTF-8 at byte " +
                                               std::to_string(8 + bad) + " (InvalidHeader)");

  // The SAX pass stops early, at one more top-level key than the limit
  // allows tensors ("__metadata__" is one); the exact count is checked below.
  const std::string too_many = "more than " + std::to_string(safetensors_max_tensors) +
                               " tensors, headscope's limit (a checkpoint file holds at most a few thousand)";
  auto parsed = parse_json_strict(reinterpret_cast<const char*>(header), reinterpret_cast<const char*>(header + n),
                                  prefix + "header: ", 8, static_cast<std::size_t>(safetensors_max_tensors) + 1,
                                  too_many);
  if (!parsed) return parsed.error();
  const Json& doc = parsed->doc;
  if (!doc.is_object())
    return make_error(ErrorCode::bad_file,
                      prefix + "header is " + json_type(doc) + ", expected a JSON object");

  SafetensorsFile file;
  file.source = source;
  file.header_size = n;
  file.tensors.reserve(parsed->top_keys.size());
  for (const std::string& key : parsed->top_keys) {
    const auto& value = doc.find(key).value();
    if (key == "__metadata__") {
      if (value.is_null()) continue;  // Option<HashMap> in the reference
      if (!value.is_object())
        return make_error(ErrorCode::bad_file, prefix + "\"__metadata__\" is " + json_type(value) +
                                                   ", expected an object of strings");
      for (const auto& m : value.items()) {
        if (!m.value().is_string())
          return make_error(ErrorCode::bad_file, prefix + "\"__metadata__\" value for key " +
                                                     quote_name(m.key()) + " is " + json_type(m.value()) +
                                                     ", expected a string");
        file.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    auto t = parse_tensor_entry(key, value, prefix);
    if (!t) return t.error();
    file.tensors.push_back(std::move(*t));
  }

  if (file.tensors.size() > static_cast<std::size_t>(safetensors_max_tensors))
    return make_error(ErrorCode::bad_file, prefix + "header: " + too_many);

  // Offsets: sorted by (begin, end), the first begins at 0 and each begins
  // where the previous one ends, so the data buffer is covered exactly once.
  std::vector<std::size_t> order(file.tensors.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    const auto& ta = file.tensors[a];
    const auto& tb = file.tensors[b];
    return ta.begin != tb.begin ? ta.begin < tb.begin : ta.end < tb.end;
  });
  std::uint64_t start = 0;
  const TensorInfo* previous = nullptr;
  for (std::size_t idx : order) {
    const TensorInfo& t = file.tensors[idx];
    std::string where = prefix + "tensor " + quote_name(t.name) + ": ";
    if (t.end < t.begin)
      return make_error(ErrorCode::bad_file, where + "data_offsets " + offsets_string(t.begin, t.end) +
                                                 " end before they begin (InvalidOffset)");
    if (t.begin != start) {
      if (!previous)
        return make_error(ErrorCode::bad_file,
                          where + "data_offsets " + offsets_string(t.begin, t.end) +
                              " leave a hole: the first tensor must begin at 0 (InvalidOffset)");
      std::string rel =
          t.begin > start ? "leave a hole of " + std::to_string(t.begin - start) + " bytes after" : "overlap";
      return make_error(ErrorCode::bad_file, where + "data_offsets " + offsets_string(t.begin, t.end) + " " +
                                                 rel + " tensor " + quote_name(previous->name) + " at " +
                                                 offsets_string(previous->begin, previous->end) +
                                                 " (InvalidOffset)");
    }
    start = t.end;
    previous = &t;
    auto nbytes = tensor_nbytes(t, where);
    if (!nbytes) return nbytes.error();
    if (t.end - t.begin != *nbytes)
      return make_error(ErrorCode::bad_file, where + "data_offsets " + offsets_string(t.begin, t.end) +
                                                 " hold " + std::to_string(t.end - t.begin) +
                                                 " bytes but shape " + shape_string(t.shape) + " x " +
                                                 dtype_name(t.dtype) + " needs " + std::to_string(*nbytes) +
                                                 " (TensorInvalidInfo)");
  }

  const std::uint64_t data_size = file_size - 8 - n;
  if (start != data_size) {
    std::string last = previous ? " (tensor " + quote_name(previous->name) + ")" : "";
    if (start < data_size)
      return make_error(ErrorCode::bad_file,
                        prefix + "tensors end at data byte " + std::to_string(start) + last +
                            " but the file has " + std::to_string(data_size - start) +
                            " trailing bytes after it: file size " + std::to_string(file_size) +
                            ", expected 8 + " + std::to_string(n) + " + " + std::to_string(start) + " = " +
                            std::to_string(8 + n + start) + " (MetadataIncompleteBuffer)");
    return make_error(
        ErrorCode::bad_file,
        prefix + "file is truncated: tensors end at data byte " + std::to_string(start) + last +
            ", i.e. file byte " +
            (start > std::numeric_limits<std::uint64_t>::max() - 8 - n ? std::string("past 2^64")
                                                                       : std::to_string(8 + n + start)) +
            ", but the file has " + std::to_string(file_size) + " bytes (MetadataIncompleteBuffer)");
  }

  file.data_size = data_size;
  file.data = size == file_size ? bytes + 8 + n : nullptr;
  return file;
}

Result<SafetensorsFile> safetensors_parse(const std::uint8_t* bytes, std::size_t size,
                                          const std::string& source) {
  return safetensors_parse_header(bytes, size, size, source);
}

namespace {

// Bytes per value of the dtypes that decode to float32; 0 for the others.
int decoded_bytes_per(Dtype dtype) {
  switch (dtype) {
    case Dtype::F32: return 4;
    case Dtype::F16:
    case Dtype::BF16: return 2;
    case Dtype::F64: return 8;
    default: return 0;
  }
}

// `count` values of a decodable dtype at `bytes` (any alignment) to float32.
void decode_values(Dtype dtype, const std::uint8_t* bytes, std::size_t count, float* out) {
  if (count == 0) return;
  switch (dtype) {
    case Dtype::F32:
      // memcpy: the data may sit at any offset (little-endian host assumed:
      // x86-64 and wasm32 both are).
      std::memcpy(out, bytes, count * 4);
      break;
    case Dtype::F16:
      for (std::size_t i = 0; i < count; ++i)
        out[i] = widen(f16{static_cast<std::uint16_t>(bytes[2 * i] | (bytes[2 * i + 1] << 8))});
      break;
    case Dtype::BF16:
      for (std::size_t i = 0; i < count; ++i)
        out[i] = widen(bf16{static_cast<std::uint16_t>(bytes[2 * i] | (bytes[2 * i + 1] << 8))});
      break;
    case Dtype::F64:
      for (std::size_t i = 0; i < count; ++i) {
        double d;
        std::memcpy(&d, bytes + 8 * i, 8);
        out[i] = static_cast<float>(d);  // IEEE: rounds to nearest, overflows to +-inf
      }
      break;
    default:
      break;
  }
}

}  // namespace

Result<std::vector<float>> safetensors_decode_f32(const TensorInfo& tensor, const std::uint8_t* bytes,
                                                  std::size_t size, const std::string& source) {
  std::string where = source + ": tensor " + quote_name(tensor.name) + ": ";
  if (tensor.end < tensor.begin || tensor.end - tensor.begin != size)
    return make_error(ErrorCode::bad_file,
                      where + std::to_string(size) + " bytes given but data_offsets " +
                          offsets_string(tensor.begin, tensor.end) + " span " +
                          (tensor.end < tensor.begin ? std::string("a negative range")
                                                     : std::to_string(tensor.end - tensor.begin)));
  int bytes_per = 0;
  switch (tensor.dtype) {
    case Dtype::F32:
      bytes_per = 4;
      break;
    case Dtype::F16:
    case Dtype::BF16:
      bytes_per = 2;
      break;
    case Dtype::F64:
      bytes_per = 8;
      break;
    default:
      return make_error(ErrorCode::unsupported,
                        where + "dtype " + dtype_name(tensor.dtype) +
                            " cannot be decoded to float32 (supported: F32, F16, BF16, F64)");
  }
  if (size % bytes_per != 0)
    return make_error(ErrorCode::bad_file, where + std::to_string(size) + " bytes is not a whole number of " +
                                               dtype_name(tensor.dtype) + " values");
  const std::size_t count = size / bytes_per;
  std::int64_t numel = tensor.numel();
  if (numel < 0 || static_cast<std::uint64_t>(numel) != count)
    return make_error(ErrorCode::bad_file, where + std::to_string(size) + " bytes hold " +
                                               std::to_string(count) + " values but shape " +
                                               shape_string(tensor.shape) + " has " +
                                               (numel < 0 ? std::string("too many") : std::to_string(numel)));

  std::vector<float> out(count);
  decode_values(tensor.dtype, bytes, count, out.data());
  return out;
}

Result<std::vector<float>> safetensors_read_f32(const SafetensorsFile& file, const TensorInfo& tensor) {
  std::string where = file.source + ": tensor " + quote_name(tensor.name) + ": ";
  if (file.data == nullptr && file.reader) {
    const std::int64_t n = tensor.numel();
    if (n < 0)
      return make_error(ErrorCode::bad_file,
                        where + "shape " + shape_string(tensor.shape) + " has too many values");
    std::vector<float> out(static_cast<std::size_t>(n));
    HS_TRY(safetensors_read_f32_into(file, tensor, 0, n, out.data()));
    return out;
  }
  if (file.data == nullptr)
    return make_error(ErrorCode::invalid_argument,
                      where + "the data buffer is not loaded (the file was parsed from its header only)");
  if (tensor.end < tensor.begin || tensor.end > file.data_size)
    return make_error(ErrorCode::bad_file,
                      where + "data_offsets " + offsets_string(tensor.begin, tensor.end) +
                          " fall outside the data buffer of " + std::to_string(file.data_size) + " bytes");
  return safetensors_decode_f32(tensor, file.data + tensor.begin,
                                static_cast<std::size_t>(tensor.end - tensor.begin), file.source);
}

namespace {

// Checks that values [first, first + count) of `tensor` can be read at `per`
// bytes each (the dtype's decoded size) from `file`: the offsets hold the
// shape, the range is inside the tensor, and there is data or a reader.
// Returns the byte offset of value `first`.
Result<std::uint64_t> checked_read(const SafetensorsFile& file, const TensorInfo& tensor, int per, std::int64_t first,
                                   std::int64_t count, const std::string& where) {
  if (tensor.end < tensor.begin || tensor.end > file.data_size)
    return make_error(ErrorCode::bad_file,
                      where + "data_offsets " + offsets_string(tensor.begin, tensor.end) +
                          " fall outside the data buffer of " + std::to_string(file.data_size) + " bytes");
  const std::int64_t numel = tensor.numel();
  if (numel < 0 || static_cast<std::uint64_t>(numel) * per != tensor.end - tensor.begin)
    return make_error(ErrorCode::bad_file, where + "data_offsets " +
                                               offsets_string(tensor.begin, tensor.end) +
                                               " do not hold shape " + shape_string(tensor.shape) + " x " +
                                               dtype_name(tensor.dtype));
  if (first < 0 || count < 0 || first > numel || count > numel - first)
    return make_error(ErrorCode::invalid_argument, where + "values [" + std::to_string(first) + ", " +
                                                       std::to_string(first + count) +
                                                       ") are outside the tensor's " + std::to_string(numel));
  if (count > 0 && !file.data && !file.reader)
    return make_error(ErrorCode::invalid_argument,
                      where + "the data buffer is not loaded (the file was parsed from its header only)");
  return tensor.begin + static_cast<std::uint64_t>(first) * per;
}

// The bytes [offset, offset + size) of the file's data, copied into out.
Status read_bytes(const SafetensorsFile& file, std::uint64_t offset, std::size_t size, std::uint8_t* out) {
  if (file.data) {
    std::memcpy(out, file.data + offset, size);
    return Ok{};
  }
  return file.reader(offset, size, out);
}

}  // namespace

Status safetensors_read_f32_into(const SafetensorsFile& file, const TensorInfo& tensor, std::int64_t first,
                                 std::int64_t count, float* out) {
  std::string where = file.source + ": tensor " + quote_name(tensor.name) + ": ";
  const int per = decoded_bytes_per(tensor.dtype);
  if (per == 0)
    return make_error(ErrorCode::unsupported,
                      where + "dtype " + dtype_name(tensor.dtype) +
                          " cannot be decoded to float32 (supported: F32, F16, BF16, F64)");
  auto at = checked_read(file, tensor, per, first, count, where);
  if (!at) return at.error();
  const std::uint64_t offset = *at;
  if (count == 0) return Ok{};
  if (file.data) {
    decode_values(tensor.dtype, file.data + offset, static_cast<std::size_t>(count), out);
    return Ok{};
  }
  if (tensor.dtype == Dtype::F32)
    return file.reader(offset, static_cast<std::size_t>(count) * 4, reinterpret_cast<std::uint8_t*>(out));
  // Narrower or wider dtypes go through a buffer of at most 256 KiB.
  const std::int64_t chunk = (std::int64_t{1} << 18) / per;
  std::vector<std::uint8_t> raw(static_cast<std::size_t>(std::min(chunk, count) * per));
  for (std::int64_t i = 0; i < count; i += chunk) {
    const std::int64_t n = std::min(chunk, count - i);
    HS_TRY(file.reader(offset + static_cast<std::uint64_t>(i) * per, static_cast<std::size_t>(n * per), raw.data()));
    decode_values(tensor.dtype, raw.data(), static_cast<std::size_t>(n), out + i);
  }
  return Ok{};
}

Status safetensors_read_16bit_into(const SafetensorsFile& file, const TensorInfo& tensor, std::int64_t first,
                                   std::int64_t count, std::uint16_t* out) {
  std::string where = file.source + ": tensor " + quote_name(tensor.name) + ": ";
  if (tensor.dtype != Dtype::BF16 && tensor.dtype != Dtype::F16)
    return make_error(ErrorCode::invalid_argument, where + "dtype " + dtype_name(tensor.dtype) + " is not 16-bit");
  auto at = checked_read(file, tensor, 2, first, count, where);
  if (!at) return at.error();
  if (count == 0) return Ok{};
  // (Little-endian, as wasm and x86-64 are.)
  return read_bytes(file, *at, static_cast<std::size_t>(count) * 2, reinterpret_cast<std::uint8_t*>(out));
}

Result<std::map<std::string, std::string>> safetensors_parse_index(const std::string& json_text,
                                                                   const std::string& source) {
  const std::string prefix = source + ": ";
  auto doc = parse_json_strict(json_text.data(), json_text.data() + json_text.size(), prefix, 0);
  if (!doc) return doc.error();
  if (!doc->doc.is_object())
    return make_error(ErrorCode::bad_file,
                      prefix + "top level is " + json_type(doc->doc) + ", expected an object");
  auto it = doc->doc.find("weight_map");
  if (it == doc->doc.end()) return make_error(ErrorCode::bad_file, prefix + "missing field \"weight_map\"");
  if (!it->is_object())
    return make_error(ErrorCode::bad_file,
                      prefix + "\"weight_map\" is " + json_type(*it) + ", expected an object");
  std::map<std::string, std::string> out;
  for (const auto& item : it->items()) {
    const auto& v = item.value();
    if (!v.is_string())
      return make_error(ErrorCode::bad_file, prefix + "\"weight_map\" entry for tensor " +
                                                 quote_name(item.key()) + " is " + json_type(v) +
                                                 ", expected a shard file name");
    std::string shard = v.get<std::string>();
    // Shard names are resolved next to the index: refuse anything that could
    // point elsewhere.
    bool escapes = shard.empty() || shard[0] == '/' || shard.find('\\') != std::string::npos ||
                   shard == ".." || shard.rfind("../", 0) == 0 || shard.find("/../") != std::string::npos ||
                   (shard.size() >= 3 && shard.compare(shard.size() - 3, 3, "/..") == 0);
    if (escapes)
      return make_error(ErrorCode::bad_file, prefix + "\"weight_map\" entry for tensor " +
                                                 quote_name(item.key()) + " names shard " +
                                                 quote_name(shard) +
                                                 ", which is not a relative path inside the model folder");
    const std::string suffix = ".safetensors";
    if (shard.size() <= suffix.size() || shard.compare(shard.size() - suffix.size(), suffix.size(), suffix) != 0)
      return make_error(ErrorCode::bad_file, prefix + "\"weight_map\" entry for tensor " + quote_name(item.key()) +
                                                 " names shard " + quote_name(shard) +
                                                 ", which is not a .safetensors file");
    out[item.key()] = std::move(shard);
  }
  return out;
}

namespace {

// JSON string escaping as serde_json does it: quote, backslash and control
// characters escaped, everything else (UTF-8 included) written as is.
void append_json_string(std::string& out, const std::string& s) {
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
}

}  // namespace

std::vector<std::uint8_t> safetensors_serialize(const std::vector<SafetensorsTensorIn>& tensors,
                                                const std::map<std::string, std::string>& metadata) {
  std::vector<const SafetensorsTensorIn*> order;
  for (const auto& t : tensors) order.push_back(&t);
  std::stable_sort(order.begin(), order.end(),
                   [](const SafetensorsTensorIn* a, const SafetensorsTensorIn* b) {
                     int ba = dtype_bits(a->dtype), bb = dtype_bits(b->dtype);
                     return ba != bb ? ba > bb : a->name < b->name;
                   });

  std::string header = "{";
  bool first = true;
  if (!metadata.empty()) {
    header += "\"__metadata__\":{";
    bool first_m = true;
    for (const auto& kv : metadata) {
      if (!first_m) header += ',';
      first_m = false;
      append_json_string(header, kv.first);
      header += ':';
      append_json_string(header, kv.second);
    }
    header += '}';
    first = false;
  }
  std::uint64_t offset = 0;
  for (const auto* t : order) {
    if (!first) header += ',';
    first = false;
    append_json_string(header, t->name);
    header += ":{\"dtype\":\"";
    header += dtype_name(t->dtype);
    header += "\",\"shape\":[";
    for (std::size_t i = 0; i < t->shape.size(); ++i) {
      if (i) header += ',';
      header += std::to_string(t->shape[i]);
    }
    header += "],\"data_offsets\":[" + std::to_string(offset) + ',' +
              std::to_string(offset + t->data.size()) + "]}";
    offset += t->data.size();
  }
  header += '}';
  header.append((8 - header.size() % 8) % 8, ' ');

  std::vector<std::uint8_t> out;
  out.reserve(8 + header.size() + offset);
  std::uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<std::uint8_t>(n >> (8 * i)));
  out.insert(out.end(), header.begin(), header.end());
  for (const auto* t : order) out.insert(out.end(), t->data.begin(), t->data.end());
  return out;
}

SafetensorsTensorIn safetensors_tensor_f32(std::string name, std::vector<std::int64_t> shape,
                                           const std::vector<float>& values) {
  SafetensorsTensorIn t{std::move(name), Dtype::F32, std::move(shape), {}};
  t.data.resize(values.size() * 4);
  if (!values.empty()) std::memcpy(t.data.data(), values.data(), t.data.size());
  return t;
}

SafetensorsTensorIn safetensors_tensor_bf16(std::string name, std::vector<std::int64_t> shape,
                                            const std::vector<float>& values) {
  SafetensorsTensorIn t{std::move(name), Dtype::BF16, std::move(shape), {}};
  t.data.reserve(values.size() * 2);
  for (float v : values) {
    const std::uint16_t h = to_bf16(v).bits;
    t.data.push_back(static_cast<std::uint8_t>(h & 0xff));
    t.data.push_back(static_cast<std::uint8_t>(h >> 8));
  }
  return t;
}

SafetensorsTensorIn safetensors_tensor_f16(std::string name, std::vector<std::int64_t> shape,
                                           const std::vector<float>& values) {
  SafetensorsTensorIn t{std::move(name), Dtype::F16, std::move(shape), {}};
  t.data.reserve(values.size() * 2);
  for (float v : values) {
    const std::uint16_t h = to_f16(v).bits;
    t.data.push_back(static_cast<std::uint8_t>(h & 0xff));
    t.data.push_back(static_cast<std::uint8_t>(h >> 8));
  }
  return t;
}

Result<std::vector<std::uint8_t>> safetensors_read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(ErrorCode::bad_file, path + ": cannot open file");
  std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) return make_error(ErrorCode::bad_file, path + ": read error");
  return bytes;
}

}  // namespace hs
