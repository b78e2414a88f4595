// Sentencepiece-style BPE from tokenizer.json (Llama 2, Mistral): the test
// converts shakespeare-spm.model into a tokenizer.json the way transformers'
// LlamaConverter does (pieces as the vocabulary, merges ranked by the score of
// the merged piece, byte fallback, ▁ for spaces) and checks that it encodes
// like sentencepiece itself.
#include <algorithm>
#include <fstream>
#include <sstream>
#include <tuple>

#include <nlohmann/json.hpp>

#include "lowbit/core/error.h"
#include "lowbit/io/tokenizer.h"
#include "support/test_support.h"

namespace lowbit::io {
namespace {

using nlohmann::json;

const std::string kSpace = "\u2581";

std::filesystem::path spm_dir() { return testing::models_dir() / "spm"; }

std::vector<std::string> utf8_chars(const std::string& s) {
  std::vector<std::string> out;
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    const size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : 4;
    out.push_back(s.substr(i, n));
    i += n;
  }
  return out;
}

// legacy: the older layout (normalizer Prepend + Replace); otherwise a
// Metaspace pre-tokenizer with prepend_scheme "first".
json convert(const Tokenizer& spm, bool legacy) {
  json vocab = json::object();
  std::map<std::string, int32_t> ids;
  for (int32_t id = 0; id < spm.vocab_size(); ++id) {
    vocab[spm.id_to_token(id)] = id;
    ids[spm.id_to_token(id)] = id;
  }
  std::vector<std::tuple<int32_t, int32_t, int32_t, std::string, std::string>> merges;
  for (int32_t id = 0; id < spm.vocab_size(); ++id) {
    const std::string piece = spm.id_to_token(id);
    if (spm.is_special(id) || piece == "<unk>" || piece.rfind("<0x", 0) == 0) continue;
    const auto chars = utf8_chars(piece);
    std::string left;
    for (size_t i = 1; i < chars.size(); ++i) {
      left += chars[i - 1];
      const std::string right = piece.substr(left.size());
      if (ids.count(left) && ids.count(right)) merges.emplace_back(id, ids[left], ids[right], left, right);
    }
  }
  std::sort(merges.begin(), merges.end());
  json merge_list = json::array();
  for (const auto& m : merges) merge_list.push_back({std::get<3>(m), std::get<4>(m)});

  json added = json::array();
  for (int32_t id : {0, 1, 2})
    added.push_back({{"id", id}, {"content", spm.id_to_token(id)}, {"single_word", false}, {"lstrip", false},
                     {"rstrip", false}, {"normalized", false}, {"special", true}});
  json j;
  j["version"] = "1.0";
  j["added_tokens"] = added;
  if (legacy) {
    j["normalizer"] = {{"type", "Sequence"},
                       {"normalizers",
                        {{{"type", "Prepend"}, {"prepend", kSpace}},
                         {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", kSpace}}}}};
    j["pre_tokenizer"] = nullptr;
  } else {
    j["normalizer"] = nullptr;
    j["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", kSpace}, {"prepend_scheme", "first"}, {"split", false}};
  }
  j["post_processor"] = {
      {"type", "TemplateProcessing"},
      {"single", {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
      {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {1}}, {"tokens", {"<s>"}}}}}}};
  j["decoder"] = {{"type", "Sequence"},
                  {"decoders",
                   {{{"type", "Replace"}, {"pattern", {{"String", kSpace}}}, {"content", " "}},
                    {{"type", "ByteFallback"}},
                    {{"type", "Fuse"}},
                    {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}};
  j["model"] = {{"type", "BPE"},       {"dropout", nullptr}, {"unk_token", "<unk>"}, {"continuing_subword_prefix", nullptr},
                {"end_of_word_suffix", nullptr}, {"fuse_unk", true}, {"byte_fallback", true},
                {"ignore_merges", false}, {"vocab", vocab}, {"merges", merge_list}};
  return j;
}

std::unique_ptr<Tokenizer> converted(bool legacy) {
  auto spm = load_sentencepiece_tokenizer(spm_dir() / "shakespeare-spm.model");
  const auto dir = testing::temp_dir(legacy ? "spm-json-legacy" : "spm-json");
  std::ofstream(dir / "tokenizer.json") << convert(*spm, legacy).dump();
  return load_tokenizer(dir);
}

// Lines sentencepiece's nmt_nfkc normalizer leaves as they are (no runs of
// spaces, tabs, compatibility characters, or spaces at the ends).
std::vector<std::string> comparable_lines() {
  std::ifstream in(spm_dir() / "sample.txt", std::ios::binary);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line.find("  ") != std::string::npos || line.find('\t') != std::string::npos ||
        line.find("\xF0\x9D") != std::string::npos || line.front() == ' ' || line.back() == ' ')
      continue;
    lines.push_back(line);
  }
  for (const char* extra : {"café 😀 日本語 — ok", "Numbers 2024 and 7.5%", "x"}) lines.push_back(extra);
  return lines;
}

class SentencePieceJson : public ::testing::TestWithParam<bool> {};

TEST_P(SentencePieceJson, EncodesLikeSentencepiece) {
  auto spm = load_sentencepiece_tokenizer(spm_dir() / "shakespeare-spm.model");
  auto json_tokenizer = converted(GetParam());
  const auto lines = comparable_lines();
  ASSERT_GT(lines.size(), 50u);
  for (const auto& line : lines) {
    EXPECT_EQ(json_tokenizer->encode(line, false), spm->encode(line, false)) << line;
    EXPECT_EQ(json_tokenizer->encode(line, true), spm->encode(line, true)) << line;
    EXPECT_EQ(json_tokenizer->decode(json_tokenizer->encode(line, true), true), line);
  }
}

TEST_P(SentencePieceJson, ByteFallbackAndSpecialTokens) {
  auto tokenizer = converted(GetParam());
  const auto ids = tokenizer->encode("a 😀</s>", false);
  ASSERT_GE(ids.size(), 6u);
  EXPECT_EQ(tokenizer->id_to_token(ids[ids.size() - 2]), "<0x80>");
  EXPECT_EQ(ids.back(), 2);
  EXPECT_EQ(tokenizer->decode(ids, false), "a 😀</s>");
  EXPECT_EQ(tokenizer->decode(ids, true), "a 😀");
  // A lone byte piece is a broken character.
  EXPECT_EQ(tokenizer->decode(std::vector<int32_t>{ids[ids.size() - 2]}, true), "\xEF\xBF\xBD");
  EXPECT_EQ(tokenizer->bos_id(), 1);

  StreamingDecoder stream(*tokenizer);
  std::string out;
  for (int32_t id : tokenizer->encode("Good morrow, 😀 fair 日本 sir", true)) out += stream.push(id);
  out += stream.finish();
  EXPECT_EQ(out, "Good morrow, 😀 fair 日本 sir");
}

INSTANTIATE_TEST_SUITE_P(Layouts, SentencePieceJson, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "LegacyNormalizer" : "Metaspace"; });

}  // namespace
}  // namespace lowbit::io
