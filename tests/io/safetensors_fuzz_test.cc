// Randomized test of the safetensors header parser: 100,000 generated files
// (well-formed ones, structured mutations of them, and random bytes) must
// either load with every tensor inside the data or throw lowbit::Error:
// never crash, hang, read out of bounds or throw anything else. Run it
// under AddressSanitizer with the `asan` preset.
#include <cstring>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "lowbit/io/safetensors.h"

namespace lowbit::io {
namespace {

class HeaderGenerator {
 public:
  explicit HeaderGenerator(uint32_t seed) : rng_(seed) {}

  std::string file() {
    switch (pick(8)) {
      case 0: return random_bytes(pick(64));
      case 1: return with_length(random_bytes(pick(128)), pick(200));
      default: return structured();
    }
  }

 private:
  uint64_t pick(uint64_t n) { return n == 0 ? 0 : rng_() % n; }
  bool chance(int percent) { return int(pick(100)) < percent; }

  std::string random_bytes(size_t n) {
    std::string s(n, '\0');
    for (auto& c : s) c = char(pick(256));
    return s;
  }

  static std::string length_prefix(uint64_t n) {
    std::string out(8, '\0');
    for (int i = 0; i < 8; ++i) out[size_t(i)] = char((n >> (8 * i)) & 0xff);
    return out;
  }

  std::string with_length(const std::string& header, size_t data) {
    return length_prefix(header.size()) + header + random_bytes(data);
  }

  std::string number() {
    static const char* edge[] = {"0", "1", "-1", "18446744073709551615", "18446744073709551616", "9223372036854775807",
                                 "4294967296", "1e3", "2.5", "null", "\"7\"", "[]"};
    if (chance(20)) return edge[pick(std::size(edge))];
    return std::to_string(pick(64));
  }

  std::string dtype() {
    static const char* names[] = {"F32", "F16", "BF16", "I8", "U8", "I16", "I32", "I64", "F64", "BOOL",
                                  "U4", "F8_E4M3", "f32", "", "X", "F32 "};
    if (chance(5)) return number();
    return std::string("\"") + names[pick(std::size(names))] + "\"";
  }

  std::string shape(uint64_t& elements) {
    const size_t rank = pick(4);
    std::string s = "[";
    elements = 1;
    for (size_t i = 0; i < rank; ++i) {
      const uint64_t d = pick(5);
      elements *= d;
      s += (i ? "," : "") + (chance(5) ? number() : std::to_string(d));
    }
    return s + "]";
  }

  std::string structured() {
    const size_t tensors = pick(5);
    std::string h = "{";
    bool first = true;
    auto sep = [&] {
      if (!first) h += ",";
      first = false;
    };
    if (chance(30)) {
      sep();
      h += chance(80) ? R"("__metadata__":{"format":"pt"})" : R"("__metadata__":{"a":1})";
    }
    uint64_t offset = 0;
    for (size_t t = 0; t < tensors; ++t) {
      uint64_t elements = 0;
      const std::string dt = dtype();
      const std::string sh = shape(elements);
      const uint64_t bytes = elements * (1 + pick(4));
      uint64_t begin = offset, end = offset + bytes;
      if (chance(10)) begin = pick(64);
      if (chance(10)) end = pick(64);
      offset = end;
      sep();
      h += "\"t" + std::to_string(chance(10) ? 0 : t) + "\":";
      if (chance(5)) {
        h += number();
        continue;
      }
      h += "{";
      if (!chance(5)) h += "\"dtype\":" + dt + ",";
      if (!chance(5)) h += "\"shape\":" + sh + ",";
      h += "\"data_offsets\":";
      h += chance(5) ? number() : "[" + (chance(5) ? number() : std::to_string(begin)) + "," +
                                      (chance(5) ? number() : std::to_string(end)) + "]";
      h += "}";
    }
    h += "}";
    if (chance(10) && !h.empty()) h.resize(pick(h.size()));  // truncated JSON
    if (chance(5)) h[pick(h.size())] = char(pick(256));
    while (chance(30)) h.push_back(' ');
    std::string data_len = std::to_string(offset);
    size_t data = size_t(offset) + (chance(20) ? pick(16) : 0);
    if (chance(10)) data = pick(data + 1);
    std::string out = with_length(h, std::min<size_t>(data, 4096));
    if (chance(5)) {  // the length field disagrees with the header
      const std::string bad = length_prefix(chance(50) ? pick(1u << 20) : ~uint64_t(0) - pick(16));
      out.replace(0, 8, bad);
    }
    if (chance(3)) out.resize(pick(out.size()));  // truncated file
    return out;
  }

  std::mt19937_64 rng_;
};

TEST(SafetensorsFuzz, HundredThousandHeadersNeverCrash) {
  HeaderGenerator gen(20261124);
  int accepted = 0, rejected = 0;
  for (int i = 0; i < 100000; ++i) {
    const std::string bytes = gen.file();
    // A heap block of exactly the file's size, so that any read past the
    // end is caught by AddressSanitizer.
    auto block = std::make_shared<std::vector<char>>(bytes.begin(), bytes.end());
    auto exact = Storage::borrow(block->data(), block->size(), Device::cpu(), block);
    try {
      const SafetensorsReader r = SafetensorsReader::from_buffer(exact, "case-" + std::to_string(i));
      const uint64_t header = bytes.size() >= 8 ? uint64_t(uint8_t(bytes[0])) | uint64_t(uint8_t(bytes[1])) << 8 |
                                                      uint64_t(uint8_t(bytes[2])) << 16 |
                                                      uint64_t(uint8_t(bytes[3])) << 24
                                                : 0;
      for (const auto& e : r.entries()) {
        ASSERT_LE(e.begin, e.end);
        ASSERT_LE(8 + header + e.end, bytes.size()) << "case " << i;
        const Tensor t = r.tensor(e.name);
        ASSERT_EQ(t.nbytes(), e.end - e.begin) << "case " << i;
      }
      ++accepted;
    } catch (const Error&) {
      ++rejected;
    }
  }
  EXPECT_GT(accepted, 1000);
  EXPECT_GT(rejected, 10000);
}

}  // namespace
}  // namespace lowbit::io
