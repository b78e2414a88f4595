#include "io/tokenizer/utf8.h"

namespace lowbit::io::utf8 {

namespace {

// How many bytes of a sequence starting at text[pos] are a valid prefix
// (at least 1), and whether the sequence is complete. Follows the Unicode
// table of well-formed byte sequences (Table 3-7).
struct Prefix {
  size_t valid = 0;
  bool complete = false;
};

Prefix scan(std::string_view text, size_t pos) {
  const auto b = [&](size_t i) { return static_cast<unsigned char>(text[pos + i]); };
  const unsigned char lead = b(0);
  if (lead < 0x80) return {1, true};
  size_t need = 0;
  unsigned char lo = 0x80, hi = 0xbf;  // range of the second byte
  if (lead >= 0xc2 && lead <= 0xdf) {
    need = 2;
  } else if (lead >= 0xe0 && lead <= 0xef) {
    need = 3;
    if (lead == 0xe0) lo = 0xa0;
    if (lead == 0xed) hi = 0x9f;
  } else if (lead >= 0xf0 && lead <= 0xf4) {
    need = 4;
    if (lead == 0xf0) lo = 0x90;
    if (lead == 0xf4) hi = 0x8f;
  } else {
    return {0, false};
  }
  size_t have = 1;
  for (; have < need; ++have) {
    if (pos + have >= text.size()) return {have, false};
    const unsigned char c = b(have);
    const bool ok = have == 1 ? (c >= lo && c <= hi) : (c >= 0x80 && c <= 0xbf);
    if (!ok) return {have, false};
  }
  return {need, true};
}

}  // namespace

size_t valid_sequence_length(std::string_view text, size_t pos) {
  const Prefix p = scan(text, pos);
  return p.complete ? p.valid : 0;
}

size_t first_invalid(std::string_view text) {
  for (size_t pos = 0; pos < text.size();) {
    const size_t n = valid_sequence_length(text, pos);
    if (n == 0) return pos;
    pos += n;
  }
  return std::string_view::npos;
}

std::string lossy(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  for (size_t pos = 0; pos < bytes.size();) {
    const Prefix p = scan(bytes, pos);
    if (p.complete) {
      out.append(bytes.substr(pos, p.valid));
      pos += p.valid;
    } else {
      out.append(kReplacementChar);
      pos += p.valid == 0 ? 1 : p.valid;
    }
  }
  return out;
}

void append_codepoint(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xc0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    out += char(0xe0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3f));
    out += char(0x80 | (cp & 0x3f));
  } else {
    out += char(0xf0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3f));
    out += char(0x80 | ((cp >> 6) & 0x3f));
    out += char(0x80 | (cp & 0x3f));
  }
}

}  // namespace lowbit::io::utf8
