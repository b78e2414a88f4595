// UTF-8 helpers shared by the tokenizers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace lowbit::io::utf8 {

// Length of the valid UTF-8 sequence at text[pos] (1..4), or 0 when the bytes
// there are not one (bad lead byte, bad continuation, overlong, surrogate,
// beyond U+10FFFF, or cut off by the end of text).
size_t valid_sequence_length(std::string_view text, size_t pos);

// Offset of the first invalid byte, or npos when all of text is valid.
size_t first_invalid(std::string_view text);

// Valid UTF-8 with each maximal invalid subpart replaced by U+FFFD (the
// behaviour of Rust's String::from_utf8_lossy, which the reference uses).
std::string lossy(std::string_view bytes);

void append_codepoint(std::string& out, uint32_t cp);

// Length of the character starting at text[pos] when text is valid UTF-8.
inline size_t char_length(unsigned char lead) {
  return lead < 0x80 ? 1 : (lead >> 5) == 0x6 ? 2 : (lead >> 4) == 0xe ? 3 : 4;
}

inline constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";

}  // namespace lowbit::io::utf8
