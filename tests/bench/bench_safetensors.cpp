// The safetensors header parse against the number of tensors it lists: the
// time per tensor should stay flat (O(n log n) at worst), up to the reader's
// limit (hs::safetensors_max_tensors). Zero-size tensors: the cheapest entries
// a hostile header can pack into its 100 MB. CPU time of this process (the
// machine may be shared).
//
//   bench_safetensors [--repeat N]
#include <algorithm>
#include <ctime>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "safetensors.hpp"

namespace {

std::vector<std::uint8_t> zero_size_file(std::int64_t count) {
  std::string header = "{";
  for (std::int64_t i = 0; i < count; ++i) {
    if (i) header += ',';
    header += "\"model.layers." + std::to_string(i) + ".weight\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}";
  }
  header += '}';
  std::vector<std::uint8_t> out(8);
  for (int b = 0; b < 8; ++b) out[b] = static_cast<std::uint8_t>(static_cast<std::uint64_t>(header.size()) >> (8 * b));
  out.insert(out.end(), header.begin(), header.end());
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  int repeat = 3;
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], "--repeat") == 0) repeat = std::max(1, std::atoi(argv[i + 1]));
  std::printf("safetensors header parse, zero-size tensors (min of %d runs)\n", repeat);
  for (std::int64_t count : {1000, 10000, 25000, 50000, 100000}) {
    const auto bytes = zero_size_file(count);
    double best = 1e300;
    for (int r = 0; r < repeat; ++r) {
      const std::clock_t t0 = std::clock();
      auto file = hs::safetensors_parse(bytes.data(), bytes.size(), "bench.safetensors");
      const double s = static_cast<double>(std::clock() - t0) / CLOCKS_PER_SEC;
      if (!file || static_cast<std::int64_t>(file->tensors.size()) != count) {
        std::printf("parse failed: %s\n", file ? "wrong count" : file.error().message.c_str());
        return 1;
      }
      best = std::min(best, s);
    }
    std::printf("%7lld tensors (%6.2f MB header): %8.1f ms, %6.2f us per tensor\n", static_cast<long long>(count),
                bytes.size() / 1e6, best * 1e3, best * 1e6 / count);
    std::printf("RESULT native.header_parse_%lld_ms %.2f\n", static_cast<long long>(count), best * 1e3);
  }
  return 0;
}
