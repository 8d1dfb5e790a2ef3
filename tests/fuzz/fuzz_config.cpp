// libFuzzer target for config.json parsing (hs::config_from_json): any text
// must give a ModelConfig or an Error, never a crash, a throw or UB.
#include <cstddef>
#include <cstdint>
#include <string>

#include "config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto config = hs::config_from_json(std::string(reinterpret_cast<const char*>(data), size));
  (void)config;
  return 0;
}
