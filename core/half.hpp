// 16-bit floats as checkpoints store them: bfloat16 (a float32's upper half)
// and IEEE float16, each a bare 16-bit pattern, with their conversions to and
// from float32. Widening is exact; narrowing rounds to nearest even (NaN
// stays NaN, overflow gives infinity). Safetensors decoding and encoding, the
// 16-bit weight matrices and the GEMM's packing all convert through these.
#pragma once

#include <cstdint>
#include <cstring>

#include <xtl/xhalf_float.hpp>

namespace hs {

struct bf16 {
  std::uint16_t bits;
};
struct f16 {
  std::uint16_t bits;
};

inline float widen(float x) { return x; }

inline float widen(bf16 x) {
  const std::uint32_t b = static_cast<std::uint32_t>(x.bits) << 16;
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}

inline float widen(f16 x) {
  static_assert(sizeof(xtl::half_float) == 2, "xtl half must be the bare 16-bit IEEE pattern");
  xtl::half_float h;
  std::memcpy(static_cast<void*>(&h), &x.bits, 2);  // the only public way to set its bits
  return static_cast<float>(h);
}

inline bf16 to_bf16(float v) {
  std::uint32_t b;
  std::memcpy(&b, &v, 4);
  if ((b & 0x7fffffffu) > 0x7f800000u) return {static_cast<std::uint16_t>((b >> 16) | 0x0040u)};  // a quiet NaN
  b += 0x7fffu + ((b >> 16) & 1u);  // round to nearest even; a carry into the exponent gives infinity
  return {static_cast<std::uint16_t>(b >> 16)};
}

inline f16 to_f16(float v) { return {xtl::half_float(v).get_data()}; }

}  // namespace hs
