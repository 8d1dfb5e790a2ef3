// Tests of the safetensors reader and writer (SPEC §1): round trips through
// the writer, one hand-made corrupt file per validation rule of the reference
// reader (each checks that the message names the file and the problem), F16
// and BF16 decoding of every bit pattern against the IEEE formulas, unaligned
// offsets, header-only parsing, index files, and the oracle fixtures.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "safetensors.hpp"

using hs::Dtype;

namespace {

const std::string kSource = "test.safetensors";

// A file from a header string and data bytes, with no padding added: the
// corrupt-file tests need byte-exact control.
std::vector<std::uint8_t> raw_file(const std::string& header, const std::vector<std::uint8_t>& data = {},
                                   std::uint64_t n_override = 0, bool use_override = false) {
  std::vector<std::uint8_t> out;
  std::uint64_t n = use_override ? n_override : header.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<std::uint8_t>(n >> (8 * i)));
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

std::vector<std::uint8_t> zeros(std::size_t n) { return std::vector<std::uint8_t>(n, 0); }

hs::Result<hs::SafetensorsFile> parse(const std::vector<std::uint8_t>& bytes) {
  return hs::safetensors_parse(bytes.data(), bytes.size(), kSource);
}
// The parsed file points into `bytes`: parsing a temporary would leave it
// dangling, so that is a compile error here.
hs::Result<hs::SafetensorsFile> parse(std::vector<std::uint8_t>&& bytes) = delete;

// "" if the reader accepts `bytes`, else its message (so a failed check
// shows why).
std::string rejection(const std::vector<std::uint8_t>& bytes) {
  auto f = parse(bytes);
  return f.ok() ? "" : f.error().message;
}

// Parses `bytes`, requires failure, and returns the message (also printed on
// failure of a later check).
std::string parse_error(const std::vector<std::uint8_t>& bytes) {
  auto f = parse(bytes);
  REQUIRE_FALSE(f.ok());
  const std::string& m = f.error().message;
  INFO(m);
  CHECK(m.rfind(kSource + ": ", 0) == 0);  // every message names the file
  return m;
}

#define CHECK_CONTAINS(haystack, needle)                 \
  do {                                                   \
    INFO("message: " << (haystack));                     \
    CHECK((haystack).find(needle) != std::string::npos); \
  } while (0)

std::uint32_t float_bits(float f) {
  std::uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

bool same_float(float a, float b) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
  return float_bits(a) == float_bits(b);  // distinguishes -0 from +0
}

// IEEE 754 binary16 value of a bit pattern, from the definition:
// (-1)^s * 2^(e-15) * 1.m for normal numbers, 2^-14 * 0.m for subnormals.
double half_reference(std::uint16_t h) {
  int s = h >> 15, e = (h >> 10) & 0x1f, m = h & 0x3ff;
  double sign = s ? -1.0 : 1.0;
  if (e == 0x1f)
    return m ? std::numeric_limits<double>::quiet_NaN() : sign * std::numeric_limits<double>::infinity();
  if (e == 0) return sign * std::ldexp(static_cast<double>(m), -24);
  return sign * std::ldexp(static_cast<double>(1024 + m), e - 25);
}

// bfloat16: 8 exponent bits (bias 127), 7 mantissa bits.
double bf16_reference(std::uint16_t h) {
  int s = h >> 15, e = (h >> 7) & 0xff, m = h & 0x7f;
  double sign = s ? -1.0 : 1.0;
  if (e == 0xff)
    return m ? std::numeric_limits<double>::quiet_NaN() : sign * std::numeric_limits<double>::infinity();
  if (e == 0) return sign * std::ldexp(static_cast<double>(m), -133);
  return sign * std::ldexp(static_cast<double>(128 + m), e - 134);
}

std::vector<std::uint8_t> u16_bytes(const std::vector<std::uint16_t>& v) {
  std::vector<std::uint8_t> out;
  for (auto x : v) {
    out.push_back(static_cast<std::uint8_t>(x & 0xff));
    out.push_back(static_cast<std::uint8_t>(x >> 8));
  }
  return out;
}

std::vector<std::uint8_t> f32_bytes(const std::vector<float>& v) {
  std::vector<std::uint8_t> out(v.size() * 4);
  if (!v.empty()) std::memcpy(out.data(), v.data(), out.size());
  return out;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

const char* kFixtureModels[] = {"gpt2", "gpt_neox", "llama", "bert", "gpt_neo", "opt"};

std::string fixture_dir(const std::string& model) {
  return std::string(HEADSCOPE_FIXTURES) + "/hf-oracle/" + model;
}

}  // namespace

// ---------------------------------------------------------------- round trips

TEST_CASE(
    "A file written by safetensors_serialize reads back with the same names, shapes, dtypes, values and "
    "metadata",
    "[safetensors]") {
  std::vector<float> a = {1.f, -2.5f, 3.25f, 0.f, 1e-3f, -7.f};
  std::vector<float> b = {0.5f, -0.25f, 4.f, 1024.f};
  std::vector<double> c = {1.0 / 3.0, -2.0, 1e-310, 1e300};
  hs::SafetensorsTensorIn tc{"c.f64", Dtype::F64, {4}, std::vector<std::uint8_t>(32)};
  std::memcpy(tc.data.data(), c.data(), 32);
  std::vector<hs::SafetensorsTensorIn> in = {
      hs::safetensors_tensor_f32("z.weight", {2, 3}, a), hs::safetensors_tensor_bf16("b.bf16", {2, 2}, b),
      hs::safetensors_tensor_f16("a.f16", {4}, b),       tc,
      hs::safetensors_tensor_f32("scalar", {}, {42.f}),  hs::safetensors_tensor_f32("empty", {0, 5}, {}),
  };
  auto bytes = hs::safetensors_serialize(in, {{"format", "pt"}, {"note", "quote \" and \\ and \n"}});
  auto f = parse(bytes);
  INFO((f.ok() ? "" : f.error().message));
  REQUIRE(f.ok());
  REQUIRE(f->tensors.size() == in.size());
  CHECK(f->metadata.size() == 2);
  CHECK(f->metadata.at("format") == "pt");
  CHECK(f->metadata.at("note") == "quote \" and \\ and \n");

  for (const auto& t : in) {
    const hs::TensorInfo* info = f->find(t.name);
    INFO("tensor " << t.name);
    REQUIRE(info != nullptr);
    CHECK(info->dtype == t.dtype);
    CHECK(info->shape == t.shape);
    CHECK(info->end - info->begin == t.data.size());
    // The stored bytes are exactly the bytes given.
    CHECK(std::equal(t.data.begin(), t.data.end(), f->data + info->begin));
  }
  auto va = hs::safetensors_read_f32(*f, *f->find("z.weight"));
  REQUIRE(va.ok());
  CHECK(*va == a);
  // b's values are exact in both 16-bit formats.
  auto vb = hs::safetensors_read_f32(*f, *f->find("b.bf16"));
  REQUIRE(vb.ok());
  CHECK(*vb == b);
  auto vh = hs::safetensors_read_f32(*f, *f->find("a.f16"));
  REQUIRE(vh.ok());
  CHECK(*vh == b);
  auto vc = hs::safetensors_read_f32(*f, *f->find("c.f64"));
  REQUIRE(vc.ok());
  REQUIRE(vc->size() == 4);
  CHECK(same_float((*vc)[0], static_cast<float>(1.0 / 3.0)));
  CHECK((*vc)[1] == -2.f);
  CHECK(same_float((*vc)[2], 0.f));  // below float's smallest subnormal
  CHECK(std::isinf((*vc)[3]));       // F64 narrowed overflows to +inf
  auto vs = hs::safetensors_read_f32(*f, *f->find("scalar"));
  REQUIRE(vs.ok());
  CHECK(*vs == std::vector<float>{42.f});
  CHECK(f->find("scalar")->numel() == 1);
  auto ve = hs::safetensors_read_f32(*f, *f->find("empty"));
  REQUIRE(ve.ok());
  CHECK(ve->empty());
  CHECK(f->find("missing") == nullptr);
}

TEST_CASE(
    "The writer follows the reference conventions: descending dtype size then name, 8-byte header padding",
    "[safetensors]") {
  // The reference's test_empty: "{}" then 6 spaces.
  auto empty = hs::safetensors_serialize({});
  std::vector<std::uint8_t> expected = {8, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' ', ' ', ' ', ' ', ' '};
  CHECK(empty == expected);
  auto fe = parse(empty);
  REQUIRE(fe.ok());
  CHECK(fe->tensors.empty());
  CHECK(fe->data_size == 0);

  std::vector<hs::SafetensorsTensorIn> in = {
      hs::safetensors_tensor_bf16("a", {3}, {1, 2, 3}),
      hs::safetensors_tensor_f32("b", {1}, {1}),
      hs::safetensors_tensor_f32("a32", {1}, {1}),
      {"u8", Dtype::U8, {5}, zeros(5)},
      {"i64", Dtype::I64, {1}, zeros(8)},
  };
  auto bytes = hs::safetensors_serialize(in);
  auto f = parse(bytes);
  REQUIRE(f.ok());
  CHECK(f->header_size % 8 == 0);
  // Header order is the writer's order.
  std::vector<std::string> names;
  for (const auto& t : f->tensors) names.push_back(t.name);
  CHECK(names == std::vector<std::string>{"i64", "a32", "b", "a", "u8"});
  // Back to back, each at a multiple of its element size.
  std::uint64_t at = 0;
  for (const auto& t : f->tensors) {
    CHECK(t.begin == at);
    CHECK(t.begin % (hs::dtype_bits(t.dtype) / 8) == 0);
    at = t.end;
  }
  // The padding is spaces.
  std::string header(bytes.begin() + 8, bytes.begin() + 8 + static_cast<std::ptrdiff_t>(f->header_size));
  auto last_brace = header.rfind('}');
  CHECK(header.find_first_not_of(' ', last_brace + 1) == std::string::npos);
}

TEST_CASE("Tensors keep the order in which the header lists them, whatever their offsets", "[safetensors]") {
  std::string h =
      R"({"zeta":{"dtype":"U8","shape":[2],"data_offsets":[2,4]},"alpha":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})";
  auto bytes = raw_file(h, {1, 2, 3, 4});  // f points into it: keep it alive
  auto f = parse(bytes);
  REQUIRE(f.ok());
  REQUIRE(f->tensors.size() == 2);
  CHECK(f->tensors[0].name == "zeta");
  CHECK(f->tensors[1].name == "alpha");
  CHECK(f->data[f->find("zeta")->begin] == 3);
}

TEST_CASE("Whitespace before and after the header JSON is accepted", "[safetensors]") {
  // The reference's test_whitespace_leading_padded_header.
  CHECK(rejection(raw_file("\t\n{}")) == "");
  CHECK(rejection(raw_file("{}  \r\n\t ")) == "");
  CHECK(rejection(raw_file("  {\"__metadata__\":{\"k\":\"v\"}}  ")) == "");
  // A null __metadata__ is the reference's None.
  CHECK(rejection(raw_file(R"({"__metadata__":null})")) == "");
}

TEST_CASE("Unknown fields in a tensor entry are ignored, as the reference's serde structs do",
          "[safetensors]") {
  auto bytes = raw_file(R"({"t":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"extra":[1,{"x":2}]}})", {9});
  auto f = parse(bytes);
  INFO((f.ok() ? "" : f.error().message));
  REQUIRE(f.ok());
  CHECK(f->tensors.size() == 1);
}

TEST_CASE("Every declared dtype parses, sub-byte ones included when they fill whole bytes", "[safetensors]") {
  const char* names[] = {"BOOL", "U8",  "I8",  "F8_E5M2", "F8_E4M3", "F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ",
                         "I16",  "U16", "F16", "BF16",    "I32",     "U32",     "F32",         "I64",
                         "U64",  "F64", "C64", "F4",      "F6_E2M3", "F6_E3M2"};
  for (const char* name : names) {
    auto d = hs::dtype_from_name(name);
    REQUIRE(d.ok());
    CHECK(std::string(hs::dtype_name(*d)) == name);
    int bits = hs::dtype_bits(*d);
    // 8 elements always fill whole bytes (F4: 4 bytes, F6: 6 bytes).
    std::uint64_t nbytes = static_cast<std::uint64_t>(bits);
    std::string h = std::string(R"({"t":{"dtype":")") + name + R"(","shape":[8],"data_offsets":[0,)" +
                    std::to_string(nbytes) + "]}}";
    INFO(name);
    CHECK(rejection(raw_file(h, zeros(nbytes))) == "");
  }
}

// ------------------------------------------------------------- corrupt files

TEST_CASE("A file shorter than 8 bytes is rejected as HeaderTooSmall", "[safetensors][corrupt]") {
  for (std::size_t n : {0, 1, 7}) {
    auto m = parse_error(zeros(n));
    CHECK_CONTAINS(m, "HeaderTooSmall");
    CHECK_CONTAINS(m, std::to_string(n) + " bytes");
  }
}

TEST_CASE("A header length past the end of the file is rejected as InvalidHeaderLength",
          "[safetensors][corrupt]") {
  auto m = parse_error(raw_file("{}", {}, 3, true));
  CHECK_CONTAINS(m, "InvalidHeaderLength");
  CHECK_CONTAINS(m, "header length 3");
  CHECK_CONTAINS(m, "file size 10");
  // Exactly at the limit is not too large, only too long for this file.
  auto m2 = parse_error(raw_file("{}", {}, 100000000, true));
  CHECK_CONTAINS(m2, "InvalidHeaderLength");
}

TEST_CASE("A header length over 100,000,000 bytes is rejected as HeaderTooLarge", "[safetensors][corrupt]") {
  auto m = parse_error(raw_file("{}", {}, 100000001, true));
  CHECK_CONTAINS(m, "HeaderTooLarge");
  CHECK_CONTAINS(m, "100000001");
  // The largest u64 must not wrap around in 8 + N.
  auto m2 = parse_error(raw_file("{}", {}, std::numeric_limits<std::uint64_t>::max(), true));
  CHECK_CONTAINS(m2, "HeaderTooLarge");
}

// A header of `count` zero-size tensors (the cheapest tensors a header can
// list), with or without metadata.
std::string zero_size_header(std::int64_t count, bool metadata) {
  std::string header = metadata ? "{\"__metadata__\":{\"format\":\"pt\"}" : "{";
  for (std::int64_t i = 0; i < count; ++i) {
    if (i || metadata) header += ',';
    header += "\"t" + std::to_string(i) + "\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}";
  }
  return header + "}";
}

TEST_CASE("A header may list at most safetensors_max_tensors tensors, metadata aside", "[safetensors][corrupt]") {
  const std::int64_t limit = hs::safetensors_max_tensors;
  REQUIRE(limit == 100000);
  for (bool metadata : {false, true}) {
    INFO("with metadata: " << metadata);
    const auto at_limit = raw_file(zero_size_header(limit, metadata), {});
    auto f = parse(at_limit);
    INFO((f.ok() ? "" : f.error().message));
    REQUIRE(f.ok());
    CHECK(static_cast<std::int64_t>(f->tensors.size()) == limit);
    CHECK(f->tensors.back().name == "t" + std::to_string(limit - 1));  // header order kept
    const auto m = parse_error(raw_file(zero_size_header(limit + 1, metadata), {}));
    CHECK_CONTAINS(m, "more than 100000 tensors");
  }
}

TEST_CASE("A header that is not valid UTF-8 is rejected with the offset of the bad byte",
          "[safetensors][corrupt]") {
  // 0xff inside a string: byte 8 (length) + 7 ("{\"name\x") .
  std::string h = "{\"na\xffme\":{}}";
  auto m = parse_error(raw_file(h));
  CHECK_CONTAINS(m, "not valid UTF-8 at byte 12");
  CHECK_CONTAINS(m, "InvalidHeader");
  // Overlong encoding of '/', a UTF-16 surrogate, a code point past U+10FFFF,
  // and a truncated sequence are all invalid, as in Rust's str::from_utf8.
  for (std::string bad : {"\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe2\x82"}) {
    auto mb = parse_error(raw_file("{\"" + bad + "\":1}"));
    CHECK_CONTAINS(mb, "not valid UTF-8 at byte 10");
  }
  // Valid multi-byte names parse.
  CHECK(rejection(raw_file("{\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\":{\"dtype\":\"U8\",\"shape\":[0],\"data_"
                           "offsets\":[0,0]}}")) == "");
}

TEST_CASE("A header that is not valid JSON is rejected with the offset of the error",
          "[safetensors][corrupt]") {
  // The '}' is header byte 6, file byte 14.
  auto m = parse_error(raw_file("{\"a\": }"));
  CHECK_CONTAINS(m, "header: invalid JSON at byte 14: ");
  CHECK_CONTAINS(parse_error(raw_file(std::string("{}\0 ", 4))), "invalid JSON at byte 10: NUL byte");
  CHECK(parse_error(raw_file("")).find("invalid JSON") != std::string::npos);
  CHECK(parse_error(raw_file("{} {}")).find("invalid JSON") != std::string::npos);
  CHECK(parse_error(raw_file(std::string("{}\0", 3))).find("invalid JSON") != std::string::npos);
  // Out-of-range numbers are an error for serde_json, even in ignored fields.
  CHECK_CONTAINS(parse_error(raw_file(R"({"__metadata__":null,"x":{"y":1e400}})")), "number overflow");
  // A byte order mark is not JSON whitespace for serde_json.
  CHECK_CONTAINS(parse_error(raw_file("\xEF\xBB\xBF{}")), "invalid JSON at byte 8: UTF-8 byte order mark");
  // A lone surrogate escape is not a valid string.
  CHECK(parse_error(raw_file(R"({"\ud800":1})")).find("invalid JSON") != std::string::npos);
  // Nesting is capped long before it could exhaust memory.
  std::string deep = "{\"t\":" + std::string(1000, '[') + std::string(1000, ']') + "}";
  CHECK_CONTAINS(parse_error(raw_file(deep)), "nested deeper");
}

TEST_CASE("A header that is valid JSON but not an object is rejected", "[safetensors][corrupt]") {
  CHECK_CONTAINS(parse_error(raw_file("[]")), "expected a JSON object");
  CHECK_CONTAINS(parse_error(raw_file("42")), "expected a JSON object");
}

TEST_CASE("Duplicate keys are rejected, at the top level and inside a tensor entry",
          "[safetensors][corrupt]") {
  std::string e = R"({"dtype":"U8","shape":[1],"data_offsets":[0,1]})";
  auto m = parse_error(raw_file("{\"w\":" + e + ",\"w\":" + e + "}", {1}));
  CHECK_CONTAINS(m, "duplicate key 'w'");
  auto m2 =
      parse_error(raw_file(R"({"w":{"dtype":"U8","dtype":"F32","shape":[1],"data_offsets":[0,1]}})", {1}));
  CHECK_CONTAINS(m2, "duplicate key 'dtype'");
  auto m3 = parse_error(raw_file(R"({"__metadata__":{"a":"1","a":"2"}})"));
  CHECK_CONTAINS(m3, "duplicate key 'a'");
  // Same name written twice by the writer.
  auto bytes = hs::safetensors_serialize(
      {hs::safetensors_tensor_f32("x", {1}, {1}), hs::safetensors_tensor_f32("x", {1}, {2})});
  CHECK_CONTAINS(parse_error(bytes), "duplicate key 'x'");
}

TEST_CASE("Metadata must map strings to strings", "[safetensors][corrupt]") {
  auto m = parse_error(raw_file(R"({"__metadata__":{"format":"pt","total":3}})"));
  CHECK_CONTAINS(m, "\"__metadata__\" value for key 'total' is number");
  CHECK_CONTAINS(parse_error(raw_file(R"({"__metadata__":{"k":{"nested":"x"}}})")), "key 'k' is object");
  CHECK_CONTAINS(parse_error(raw_file(R"({"__metadata__":["pt"]})")), "\"__metadata__\" is array");
  CHECK_CONTAINS(parse_error(raw_file(R"({"__metadata__":"pt"})")), "\"__metadata__\" is string");
}

TEST_CASE("An unknown dtype is rejected naming the tensor and the dtype", "[safetensors][corrupt]") {
  auto m = parse_error(raw_file(R"({"w.0":{"dtype":"F33","shape":[1],"data_offsets":[0,4]}})", zeros(4)));
  CHECK_CONTAINS(m, "tensor 'w.0'");
  CHECK_CONTAINS(m, "unknown dtype 'F33'");
  // Dtype names are case-sensitive in the reference.
  CHECK_CONTAINS(parse_error(raw_file(R"({"w":{"dtype":"f32","shape":[1],"data_offsets":[0,4]}})", zeros(4))),
                 "unknown dtype 'f32'");
}

TEST_CASE("Missing fields and ill-typed fields in a tensor entry are rejected by name",
          "[safetensors][corrupt]") {
  CHECK_CONTAINS(parse_error(raw_file(R"({"w":{"shape":[1],"data_offsets":[0,1]}})", {0})),
                 "missing field \"dtype\"");
  CHECK_CONTAINS(parse_error(raw_file(R"({"w":{"dtype":"U8","data_offsets":[0,1]}})", {0})),
                 "missing field \"shape\"");
  CHECK_CONTAINS(parse_error(raw_file(R"({"w":{"dtype":"U8","shape":[1]}})", {0})),
                 "missing field \"data_offsets\"");
  CHECK_CONTAINS(parse_error(raw_file(R"({"w":[1,2]})")), "tensor 'w': entry is array");
  CHECK_CONTAINS(parse_error(raw_file(R"({"w":{"dtype":8,"shape":[1],"data_offsets":[0,1]}})", {0})),
                 "\"dtype\" is number");
  CHECK_CONTAINS(parse_error(raw_file(R"({"w":{"dtype":"U8","shape":1,"data_offsets":[0,1]}})", {0})),
                 "\"shape\" is number");
  CHECK_CONTAINS(parse_error(raw_file(R"({"w":{"dtype":"U8","shape":[-1],"data_offsets":[0,1]}})", {0})),
                 "shape[0] is a negative number");
  // serde_json reads -0 as the float -0.0, which is not a usize.
  CHECK_CONTAINS(parse_error(raw_file(R"({"w":{"dtype":"U8","shape":[-0],"data_offsets":[0,0]}})")),
                 "shape[0] is a negative number");
  CHECK_CONTAINS(parse_error(raw_file(R"({"w":{"dtype":"U8","shape":[1.0],"data_offsets":[0,1]}})", {0})),
                 "shape[0] is a non-integer number");
  CHECK_CONTAINS(parse_error(raw_file(R"({"w":{"dtype":"U8","shape":["1"],"data_offsets":[0,1]}})", {0})),
                 "shape[0] is string");
  CHECK_CONTAINS(parse_error(raw_file(R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1,2]}})", {0})),
                 "\"data_offsets\" must be an array of 2 integers, found an array of 3");
  CHECK_CONTAINS(parse_error(raw_file(R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[0,-1]}})", {0})),
                 "data_offsets[1] is a negative number");
  CHECK_CONTAINS(parse_error(raw_file(R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1e0]}})", {0})),
                 "data_offsets[1] is a non-integer number");
  // Past 2^64: not an integer that fits u64.
  CHECK_CONTAINS(parse_error(raw_file(
                     R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[0,18446744073709551616]}})", {0})),
                 "data_offsets[1] is a non-integer number");
}

TEST_CASE("Overlapping offsets are rejected as InvalidOffset naming both tensors", "[safetensors][corrupt]") {
  std::string h = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                  R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})";
  auto m = parse_error(raw_file(h, zeros(12)));
  CHECK_CONTAINS(m, "tensor 'b': data_offsets [4, 12] overlap tensor 'a' at [0, 8]");
  CHECK_CONTAINS(m, "InvalidOffset");
  // Two tensors on the same bytes.
  std::string h2 = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                   R"("b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  CHECK_CONTAINS(parse_error(raw_file(h2, zeros(8))), "overlap");
}

TEST_CASE("Offsets with a hole between tensors are rejected as InvalidOffset", "[safetensors][corrupt]") {
  std::string h = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                  R"("b":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}})";
  auto m = parse_error(raw_file(h, zeros(20)));
  CHECK_CONTAINS(m, "tensor 'b': data_offsets [12, 20] leave a hole of 4 bytes after tensor 'a'");
  // A first tensor that does not begin at 0 leaves a hole too.
  auto m2 = parse_error(raw_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", zeros(8)));
  CHECK_CONTAINS(m2, "tensor 'a': data_offsets [4, 8] leave a hole: the first tensor must begin at 0");
}

TEST_CASE("Offsets that end before they begin are rejected as InvalidOffset", "[safetensors][corrupt]") {
  auto m = parse_error(raw_file(R"({"a":{"dtype":"U8","shape":[0],"data_offsets":[0,0]},)"
                                R"("b":{"dtype":"U8","shape":[0],"data_offsets":[4,0]}})",
                                zeros(4)));
  CHECK_CONTAINS(m, "data_offsets [4, 0] end before they begin");
}

TEST_CASE("Offsets past the end of the file are rejected, without overflow", "[safetensors][corrupt]") {
  auto m = parse_error(raw_file(R"({"a":{"dtype":"U8","shape":[100],"data_offsets":[0,100]}})", zeros(10)));
  CHECK_CONTAINS(m, "truncated");
  CHECK_CONTAINS(m, "tensor 'a'");
  CHECK_CONTAINS(m, "MetadataIncompleteBuffer");
  // An END near 2^64 must not wrap 8 + N + END around to the file size.
  std::uint64_t big = std::numeric_limits<std::uint64_t>::max() - 20;
  std::string h = R"({"a":{"dtype":"U8","shape":[)" + std::to_string(big) + R"(],"data_offsets":[0,)" +
                  std::to_string(big) + "]}}";
  auto m2 = parse_error(raw_file(h, zeros(4)));
  INFO(m2);
  CHECK((m2.find("overflows int64") != std::string::npos || m2.find("truncated") != std::string::npos));
  std::uint64_t big2 = std::uint64_t{1} << 60;  // 2^63 bits: no overflow, just far too long
  std::string h2 = R"({"a":{"dtype":"U8","shape":[)" + std::to_string(big2) + R"(],"data_offsets":[0,)" +
                   std::to_string(big2) + "]}}";
  CHECK_CONTAINS(parse_error(raw_file(h2, zeros(4))), "truncated");
}

TEST_CASE("A byte count that does not match shape x dtype is rejected with both numbers",
          "[safetensors][corrupt]") {
  std::string h = R"({"h.0.attn.c_attn.weight":{"dtype":"F32","shape":[64,192],"data_offsets":[0,100]}})";
  auto m = parse_error(raw_file(h, zeros(100)));
  CHECK_CONTAINS(
      m,
      "test.safetensors: tensor 'h.0.attn.c_attn.weight': data_offsets [0, 100] hold 100 bytes but "
      "shape [64, 192] x F32 needs 49152");
  CHECK_CONTAINS(m, "TensorInvalidInfo");
  // Writer input whose data disagrees with its shape.
  hs::SafetensorsTensorIn t{"x", Dtype::F16, {3}, zeros(4)};
  CHECK_CONTAINS(parse_error(hs::safetensors_serialize({t})), "hold 4 bytes but shape [3] x F16 needs 6");
}

TEST_CASE("Sub-byte dtypes that do not fill whole bytes are rejected as MisalignedSlice",
          "[safetensors][corrupt]") {
  auto m = parse_error(raw_file(R"({"q":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}})", zeros(2)));
  CHECK_CONTAINS(m, "tensor 'q'");
  CHECK_CONTAINS(m, "MisalignedSlice");
  CHECK_CONTAINS(
      parse_error(raw_file(R"({"q":{"dtype":"F6_E2M3","shape":[2],"data_offsets":[0,2]}})", zeros(2))),
      "MisalignedSlice");
}

TEST_CASE("A shape whose element count overflows 64 bits is rejected as ValidationOverflow",
          "[safetensors][corrupt]") {
  auto m =
      parse_error(raw_file(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}})"));
  CHECK_CONTAINS(m, "tensor 'w'");
  CHECK_CONTAINS(m, "ValidationOverflow");
  // Fits as a count but not once multiplied by the dtype's 64 bits.
  CHECK_CONTAINS(
      parse_error(raw_file(R"({"w":{"dtype":"F64","shape":[1152921504606846976],"data_offsets":[0,0]}})")),
      "ValidationOverflow");
  // As in the reference, a zero before the large dims makes the count 0.
  CHECK(rejection(raw_file(
            R"({"w":{"dtype":"F32","shape":[0,4294967296,4294967296],"data_offsets":[0,0]}})")) == "");
}

TEST_CASE("Trailing bytes after the last tensor are rejected as MetadataIncompleteBuffer",
          "[safetensors][corrupt]") {
  auto bytes = hs::safetensors_serialize({hs::safetensors_tensor_f32("w", {2}, {1, 2})});
  REQUIRE(parse(bytes).ok());
  bytes.push_back(0);
  bytes.push_back(0);
  auto m = parse_error(bytes);
  CHECK_CONTAINS(m, "2 trailing bytes");
  CHECK_CONTAINS(m, "MetadataIncompleteBuffer");
  // With no tensors at all, any data byte is trailing.
  CHECK_CONTAINS(parse_error(raw_file("{}", {7})), "1 trailing bytes");
}

TEST_CASE("A truncated file is rejected, at every cut point", "[safetensors][corrupt]") {
  auto bytes = hs::safetensors_serialize(
      {hs::safetensors_tensor_f32("w", {3}, {1, 2, 3}), hs::safetensors_tensor_bf16("v", {2}, {1, 2})});
  REQUIRE(parse(bytes).ok());
  for (std::size_t cut = 0; cut < bytes.size(); ++cut) {
    std::vector<std::uint8_t> part(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(cut));
    auto f = parse(part);
    INFO("cut at " << cut);
    REQUIRE_FALSE(f.ok());
    CHECK(f.error().message.rfind(kSource, 0) == 0);
  }
  std::vector<std::uint8_t> part(bytes.begin(), bytes.end() - 1);
  CHECK_CONTAINS(parse_error(part), "truncated");
}

TEST_CASE("Control characters in a tensor name are escaped in error messages", "[safetensors][corrupt]") {
  auto m = parse_error(raw_file(R"({"a\nb":{"dtype":"X","shape":[],"data_offsets":[0,0]}})"));
  CHECK_CONTAINS(m, "tensor 'a\\x0ab'");
  CHECK(m.find('\n') == std::string::npos);
}

// ------------------------------------------------------------------ decoding

TEST_CASE("F16 decoding matches the IEEE binary16 formula for all 65536 bit patterns",
          "[safetensors][decode]") {
  std::vector<std::uint16_t> all(65536);
  for (std::uint32_t i = 0; i < 65536; ++i) all[i] = static_cast<std::uint16_t>(i);
  auto bytes = raw_file(R"({"h":{"dtype":"F16","shape":[65536],"data_offsets":[0,131072]}})", u16_bytes(all));
  auto f = parse(bytes);
  REQUIRE(f.ok());
  auto v = hs::safetensors_read_f32(*f, f->tensors[0]);
  REQUIRE(v.ok());
  REQUIRE(v->size() == 65536);
  int mismatches = 0;
  std::uint32_t first_bad = 0;
  for (std::uint32_t i = 0; i < 65536; ++i) {
    // Every binary16 value is exact in float32, so equality is the test
    // (NaN must stay NaN; the sign of zero must be kept).
    float expected = static_cast<float>(half_reference(static_cast<std::uint16_t>(i)));
    if (!same_float((*v)[i], expected) || std::signbit((*v)[i]) != ((i >> 15) != 0)) {
      if (mismatches++ == 0) first_bad = i;
    }
  }
  INFO("first mismatch at bits 0x" << std::hex << first_bad << ": got " << (*v)[first_bad] << " expected "
                                   << half_reference(static_cast<std::uint16_t>(first_bad)));
  CHECK(mismatches == 0);
  // Landmarks, spelled out.
  CHECK((*v)[0x0001] == std::ldexp(1.f, -24));     // smallest subnormal
  CHECK((*v)[0x03ff] == std::ldexp(1023.f, -24));  // largest subnormal
  CHECK((*v)[0x0400] == std::ldexp(1.f, -14));     // smallest normal
  CHECK((*v)[0x3c00] == 1.f);
  CHECK((*v)[0x7bff] == 65504.f);  // max
  CHECK((*v)[0xfbff] == -65504.f);
  CHECK(std::isinf((*v)[0x7c00]));
  CHECK((*v)[0x7c00] > 0);
  CHECK(std::isinf((*v)[0xfc00]));
  CHECK((*v)[0xfc00] < 0);
  CHECK(std::isnan((*v)[0x7e00]));
  CHECK(std::isnan((*v)[0x7c01]));  // signalling NaN pattern
  CHECK(std::isnan((*v)[0xfe00]));
  CHECK(((*v)[0x8000] == 0.f && std::signbit((*v)[0x8000])));
}

TEST_CASE("BF16 decoding matches the bfloat16 formula for all 65536 bit patterns", "[safetensors][decode]") {
  std::vector<std::uint16_t> all(65536);
  for (std::uint32_t i = 0; i < 65536; ++i) all[i] = static_cast<std::uint16_t>(i);
  auto bytes =
      raw_file(R"({"b":{"dtype":"BF16","shape":[256,256],"data_offsets":[0,131072]}})", u16_bytes(all));
  auto f = parse(bytes);
  REQUIRE(f.ok());
  auto v = hs::safetensors_read_f32(*f, f->tensors[0]);
  REQUIRE(v.ok());
  int mismatches = 0;
  std::uint32_t first_bad = 0;
  for (std::uint32_t i = 0; i < 65536; ++i) {
    float expected = static_cast<float>(bf16_reference(static_cast<std::uint16_t>(i)));
    if (!same_float((*v)[i], expected) || std::signbit((*v)[i]) != ((i >> 15) != 0)) {
      if (mismatches++ == 0) first_bad = i;
    }
  }
  INFO("first mismatch at bits 0x" << std::hex << first_bad << ": got " << (*v)[first_bad]);
  CHECK(mismatches == 0);
  CHECK((*v)[0x3f80] == 1.f);
  CHECK((*v)[0xc000] == -2.f);
  CHECK((*v)[0x0001] == std::ldexp(1.f, -133));  // smallest bf16 subnormal, a float32 subnormal
}

TEST_CASE("The F16 and BF16 writers round to nearest even", "[safetensors][decode]") {
  // 1 + 2^-11 is halfway between F16 neighbours 1 and 1 + 2^-10: ties go to
  // the even mantissa (1). 1 + 3*2^-11 is halfway between 1 + 2^-10 (odd)
  // and 1 + 2^-9 (even). 65520 is halfway between 65504 and 2^16: Inf.
  std::vector<float> in = {1.f + std::ldexp(1.f, -11), 1.f + 3 * std::ldexp(1.f, -11), 65520.f, 65519.f,
                           std::ldexp(1.f, -25) * 1.5f};
  auto t = hs::safetensors_tensor_f16("h", {5}, in);
  auto bytes = hs::safetensors_serialize({t});
  auto f = parse(bytes);
  REQUIRE(f.ok());
  auto v = hs::safetensors_read_f32(*f, f->tensors[0]);
  REQUIRE(v.ok());
  CHECK((*v)[0] == 1.f);
  CHECK((*v)[1] == 1.f + std::ldexp(1.f, -9));
  CHECK(std::isinf((*v)[2]));
  CHECK((*v)[3] == 65504.f);
  CHECK((*v)[4] == std::ldexp(1.f, -24));  // 1.5 x the half of the smallest subnormal rounds up to it

  // BF16: 1 + 2^-8 is halfway between 1 and 1 + 2^-7 -> 1; 1 + 3*2^-8 -> 1 + 2^-6.
  std::vector<float> bin = {1.f + std::ldexp(1.f, -8), 1.f + 3 * std::ldexp(1.f, -8),
                            std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::max()};
  auto bytes_b = hs::safetensors_serialize({hs::safetensors_tensor_bf16("b", {4}, bin)});
  auto fb = parse(bytes_b);
  REQUIRE(fb.ok());
  auto vb = hs::safetensors_read_f32(*fb, fb->tensors[0]);
  REQUIRE(vb.ok());
  CHECK((*vb)[0] == 1.f);
  CHECK((*vb)[1] == 1.f + std::ldexp(1.f, -6));
  CHECK(std::isnan((*vb)[2]));
  CHECK(std::isinf((*vb)[3]));  // float max rounds past bf16's max
}

TEST_CASE("Tensors at odd, unaligned offsets decode correctly", "[safetensors][decode]") {
  // A 1-byte U8 tensor first puts the F32 tensor at data offset 1; an
  // even-length header makes its absolute offset 8 + N + 1 odd as well.
  std::vector<float> w = {1.5f, -2.f, 3.75f, std::ldexp(1.f, -140)};
  std::vector<std::uint8_t> data = {0xAB};
  auto wb = f32_bytes(w);
  data.insert(data.end(), wb.begin(), wb.end());
  auto hb = u16_bytes({0x3c00, 0xc000, 0x0001});  // F16 1, -2, 2^-24
  data.insert(data.end(), hb.begin(), hb.end());
  std::string h = R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                  R"("w":{"dtype":"F32","shape":[2,2],"data_offsets":[1,17]},)"
                  R"("h":{"dtype":"F16","shape":[3],"data_offsets":[17,23]}}  )";
  if (h.size() % 2 == 1) h += ' ';
  auto bytes = raw_file(h, data);
  auto f = parse(bytes);
  INFO((f.ok() ? "" : f.error().message));
  REQUIRE(f.ok());
  CHECK((8 + f->header_size + f->find("w")->begin) % 4 != 0);
  auto v = hs::safetensors_read_f32(*f, *f->find("w"));
  REQUIRE(v.ok());
  CHECK(*v == w);
  auto vh = hs::safetensors_read_f32(*f, *f->find("h"));
  REQUIRE(vh.ok());
  CHECK(*vh == std::vector<float>{1.f, -2.f, std::ldexp(1.f, -24)});
}

TEST_CASE("Decoding a dtype other than F32, F16, BF16 or F64 is an error naming the tensor",
          "[safetensors][decode]") {
  auto bytes =
      hs::safetensors_serialize({{"ids", Dtype::I64, {2}, zeros(16)}, {"mask", Dtype::BOOL, {2}, zeros(2)}});
  auto f = parse(bytes);
  REQUIRE(f.ok());  // parsing them is fine
  for (const char* name : {"ids", "mask"}) {
    auto v = hs::safetensors_read_f32(*f, *f->find(name));
    REQUIRE_FALSE(v.ok());
    CHECK_CONTAINS(v.error().message, std::string("tensor '") + name + "'");
    CHECK_CONTAINS(v.error().message, "cannot be decoded to float32");
  }
}

TEST_CASE("Parsing the header alone gives the tensor table, and tensors decode from separately fetched bytes",
          "[safetensors][decode]") {
  std::vector<float> a = {1, 2, 3}, b = {4, 5};
  auto bytes = hs::safetensors_serialize(
      {hs::safetensors_tensor_f32("a", {3}, a), hs::safetensors_tensor_bf16("b", {2}, b)});
  auto full = parse(bytes);
  REQUIRE(full.ok());
  std::size_t header_end = static_cast<std::size_t>(8 + full->header_size);
  // What two Range requests return: bytes [0, 8+N), plus the total size.
  auto f = hs::safetensors_parse_header(bytes.data(), header_end, bytes.size(), kSource);
  REQUIRE(f.ok());
  CHECK(f->data == nullptr);
  CHECK(f->data_size == bytes.size() - header_end);
  REQUIRE(f->tensors.size() == 2);
  auto no_data = hs::safetensors_read_f32(*f, *f->find("a"));
  REQUIRE_FALSE(no_data.ok());
  CHECK_CONTAINS(no_data.error().message, "not loaded");
  for (const auto& t : f->tensors) {
    const std::uint8_t* p = bytes.data() + header_end + t.begin;
    auto v = hs::safetensors_decode_f32(t, p, static_cast<std::size_t>(t.end - t.begin), kSource);
    REQUIRE(v.ok());
    CHECK(*v == (t.name == "a" ? a : b));
    auto wrong = hs::safetensors_decode_f32(t, p, static_cast<std::size_t>(t.end - t.begin) - 1, kSource);
    CHECK_FALSE(wrong.ok());
  }
  // The total size still enforces the no-trailing-bytes rule.
  auto bad = hs::safetensors_parse_header(bytes.data(), header_end, bytes.size() + 4, kSource);
  REQUIRE_FALSE(bad.ok());
  CHECK_CONTAINS(bad.error().message, "4 trailing bytes");
  auto short_buf = hs::safetensors_parse_header(bytes.data(), header_end - 1, bytes.size(), kSource);
  REQUIRE_FALSE(short_buf.ok());
  CHECK_CONTAINS(short_buf.error().message, "were given");
}

TEST_CASE("A header-only file with a reader decodes any range of values, without the bytes in memory",
          "[safetensors][decode]") {
  // F32, BF16 and F16 tensors, each read whole and by sub-ranges at odd
  // offsets through the reader, against the in-memory decode.
  std::vector<float> a(700), b(300), c(50);
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = 0.25f * static_cast<float>(i) - 40.f;
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = 1.f + 0.5f * static_cast<float>(i % 7);
  for (std::size_t i = 0; i < c.size(); ++i) c[i] = -2.f + 0.125f * static_cast<float>(i);
  auto bytes = hs::safetensors_serialize({hs::safetensors_tensor_f32("a", {7, 100}, a),
                                          hs::safetensors_tensor_bf16("b", {300}, b),
                                          hs::safetensors_tensor_f16("c", {5, 10}, c)});
  auto full = parse(bytes);
  REQUIRE(full.ok());
  const std::size_t header_end = static_cast<std::size_t>(8 + full->header_size);
  auto f = hs::safetensors_parse_header(bytes.data(), header_end, bytes.size(), kSource);
  REQUIRE(f.ok());
  REQUIRE(f->data == nullptr);
  int calls = 0;
  f->reader = [&](std::uint64_t offset, std::size_t n, std::uint8_t* out) -> hs::Status {
    ++calls;
    if (offset + n > f->data_size) return hs::make_error("past the end");
    std::memcpy(out, bytes.data() + header_end + offset, n);
    return hs::Ok{};
  };
  for (const std::string name : {"a", "b", "c"}) {
    INFO(name);
    const hs::TensorInfo& t = *f->find(name);
    const std::vector<float> want = *hs::safetensors_read_f32(*full, t);  // from memory
    auto whole = hs::safetensors_read_f32(*f, t);                            // through the reader
    REQUIRE(whole.ok());
    CHECK(*whole == want);
    for (std::int64_t first : {std::int64_t{0}, std::int64_t{1}, std::int64_t{13}}) {
      const std::int64_t count = static_cast<std::int64_t>(want.size()) - first - 3;
      std::vector<float> got(static_cast<std::size_t>(count), -1.f);
      REQUIRE(hs::safetensors_read_f32_into(*f, t, first, count, got.data()).ok());
      CHECK(std::equal(got.begin(), got.end(), want.begin() + first));
      // The in-memory file gives the same range.
      std::vector<float> mem(static_cast<std::size_t>(count));
      REQUIRE(hs::safetensors_read_f32_into(*full, t, first, count, mem.data()).ok());
      CHECK(mem == got);
    }
    std::vector<float> one(1);
    auto past = hs::safetensors_read_f32_into(*f, t, static_cast<std::int64_t>(want.size()), 1, one.data());
    REQUIRE_FALSE(past.ok());
    CHECK_CONTAINS(past.error().message, "outside the tensor");
    CHECK_CONTAINS(past.error().message, name);
  }
  CHECK(calls > 0);
  // F32 lands in the output in one reader call; a reader's error is the result.
  calls = 0;
  std::vector<float> out(700);
  REQUIRE(hs::safetensors_read_f32_into(*f, *f->find("a"), 0, 700, out.data()).ok());
  CHECK(calls == 1);
  f->reader = [](std::uint64_t, std::size_t, std::uint8_t*) -> hs::Status { return hs::make_error("network gone"); };
  auto failed = hs::safetensors_read_f32(*f, *f->find("b"));
  REQUIRE_FALSE(failed.ok());
  CHECK_CONTAINS(failed.error().message, "network gone");
  // Without data or reader: the old message.
  f->reader = nullptr;
  auto none = hs::safetensors_read_f32_into(*f, *f->find("a"), 0, 1, out.data());
  REQUIRE_FALSE(none.ok());
  CHECK_CONTAINS(none.error().message, "not loaded");
}

// -------------------------------------------------------------------- index

TEST_CASE("An index file maps tensor names to shard files and ignores unknown fields",
          "[safetensors][index]") {
  std::string text = R"({"metadata":{"total_size":123,"format":"pt"},"dtype":"bfloat16",
    "weight_map":{"model.embed_tokens.weight":"model-00001-of-00002.safetensors",
                  "lm_head.weight":"model-00002-of-00002.safetensors"}})";
  auto m = hs::safetensors_parse_index(text);
  INFO((m.ok() ? "" : m.error().message));
  REQUIRE(m.ok());
  CHECK(m->size() == 2);
  CHECK(m->at("model.embed_tokens.weight") == "model-00001-of-00002.safetensors");
  CHECK(m->at("lm_head.weight") == "model-00002-of-00002.safetensors");
  auto sub = hs::safetensors_parse_index(R"({"weight_map":{"a":"sub/model-1.safetensors"}})");
  CHECK(sub.ok());
}

TEST_CASE("A malformed index file is rejected naming the problem", "[safetensors][index]") {
  auto err = [](const std::string& text) {
    auto m = hs::safetensors_parse_index(text, "idx.json");
    REQUIRE_FALSE(m.ok());
    CHECK(m.error().message.rfind("idx.json: ", 0) == 0);
    return m.error().message;
  };
  CHECK_CONTAINS(err("{\"weight_map\": {"), "invalid JSON");
  CHECK_CONTAINS(err(""), "invalid JSON");
  CHECK_CONTAINS(err("[]"), "expected an object");
  CHECK_CONTAINS(err(R"({"metadata":{}})"), "missing field \"weight_map\"");
  CHECK_CONTAINS(err(R"({"weight_map":["a"]})"), "\"weight_map\" is array");
  CHECK_CONTAINS(err(R"({"weight_map":{"a":3}})"), "entry for tensor 'a' is number");
  CHECK_CONTAINS(err(R"({"weight_map":{"a":"x.safetensors","a":"y.safetensors"}})"), "duplicate key 'a'");
  CHECK_CONTAINS(err(R"({"weight_map":{"a":"../x.safetensors"}})"), "not a relative path");
  CHECK_CONTAINS(err(R"({"weight_map":{"a":"/etc/x"}})"), "not a relative path");
  CHECK_CONTAINS(err(R"({"weight_map":{"a":""}})"), "not a relative path");
  CHECK_CONTAINS(err(R"({"weight_map":{"a":"pytorch_model-00001-of-00002.bin"}})"), "not a .safetensors file");
  CHECK_CONTAINS(err(R"({"weight_map":{"a":".safetensors"}})"), "not a .safetensors file");
}

// ----------------------------------------------------------------- fixtures

TEST_CASE("Every oracle fixture parses, with the tensor names, shapes and dtypes its meta.json lists",
          "[safetensors][fixtures]") {
  for (const char* model : kFixtureModels) {
    INFO("model " << model);
    std::string dir = fixture_dir(model);
    auto bytes = hs::safetensors_read_bytes(dir + "/model.safetensors");
    REQUIRE(bytes.ok());
    auto f = hs::safetensors_parse(bytes->data(), bytes->size(), "model.safetensors");
    INFO((f.ok() ? "" : f.error().message));
    REQUIRE(f.ok());
    auto meta = nlohmann::json::parse(read_text(dir + "/meta.json"), nullptr, false);
    REQUIRE(meta.is_object());
    REQUIRE(meta.contains("tensors"));
    const auto& listed = meta["tensors"];
    CHECK(f->tensors.size() == listed.size());
    for (const auto& item : listed.items()) {
      INFO("tensor " << item.key());
      const hs::TensorInfo* t = f->find(item.key());
      REQUIRE(t != nullptr);
      CHECK(std::string(hs::dtype_name(t->dtype)) == item.value()["dtype"].get<std::string>());
      CHECK(t->shape == item.value()["shape"].get<std::vector<std::int64_t>>());
      auto v = hs::safetensors_read_f32(*f, *t);
      REQUIRE(v.ok());
      CHECK(static_cast<std::int64_t>(v->size()) == t->numel());
    }
  }
}

TEST_CASE("A fixture rewritten as BF16 and as F16 reads back within the formats' rounding error",
          "[safetensors][fixtures]") {
  auto bytes = hs::safetensors_read_bytes(fixture_dir("gpt2") + "/model.safetensors");
  REQUIRE(bytes.ok());
  auto f = hs::safetensors_parse(bytes->data(), bytes->size(), "model.safetensors");
  REQUIRE(f.ok());
  std::vector<hs::SafetensorsTensorIn> as_bf16, as_f16;
  for (const auto& t : f->tensors) {
    auto v = hs::safetensors_read_f32(*f, t);
    REQUIRE(v.ok());
    as_bf16.push_back(hs::safetensors_tensor_bf16(t.name, t.shape, *v));
    as_f16.push_back(hs::safetensors_tensor_f16(t.name, t.shape, *v));
  }
  // Relative error of round-to-nearest is the unit roundoff 2^-p: 2^-8 for
  // BF16 (p = 8 significant bits), 2^-11 for F16 (p = 11) in its normal range; weights here are ~0.1, well
  // inside it, except a few tiny values where F16's absolute floor 2^-25
  // applies.
  struct Case {
    const char* name;
    std::vector<hs::SafetensorsTensorIn>* tensors;
    double rel, abs;
  } cases[] = {{"BF16", &as_bf16, std::ldexp(1.0, -8), 0.0},
               {"F16", &as_f16, std::ldexp(1.0, -11), std::ldexp(1.0, -25)}};
  for (const auto& c : cases) {
    auto out = hs::safetensors_serialize(*c.tensors, f->metadata);
    auto g = hs::safetensors_parse(out.data(), out.size(), "model.safetensors");
    REQUIRE(g.ok());
    CHECK(g->metadata == f->metadata);
    double worst = 0;
    std::string worst_at;
    for (const auto& t : f->tensors) {
      auto orig = hs::safetensors_read_f32(*f, t);
      const hs::TensorInfo* u = g->find(t.name);
      REQUIRE(u != nullptr);
      CHECK(u->shape == t.shape);
      auto back = hs::safetensors_read_f32(*g, *u);
      REQUIRE(back.ok());
      REQUIRE(back->size() == orig->size());
      for (std::size_t i = 0; i < back->size(); ++i) {
        double x = (*orig)[i], y = (*back)[i];
        double excess = std::fabs(x - y) - (c.rel * std::fabs(x) + c.abs);
        if (excess > worst || worst_at.empty()) {
          if (excess > worst) worst = excess;
          if (excess > 0 || worst_at.empty()) worst_at = t.name + "[" + std::to_string(i) + "]";
        }
      }
    }
    INFO(c.name << ": worst excess over tolerance " << worst << " at " << worst_at);
    CHECK(worst <= 0);
  }
}
