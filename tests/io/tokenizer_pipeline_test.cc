// Small hand-made tokenizer.json files: the stages that the shipped models do
// not exercise, and the errors for what lowbit does not support.
#include <fstream>

#include <nlohmann/json.hpp>

#include "lowbit/core/error.h"
#include "lowbit/io/tokenizer.h"
#include "support/test_support.h"

namespace lowbit::io {
namespace {

using nlohmann::json;

// GPT-2's byte-to-character map: the 256 single-byte tokens of byte-level BPE.
std::vector<std::string> byte_chars() {
  std::vector<std::string> out(256);
  int extra = 0;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    const uint32_t cp = printable ? uint32_t(b) : uint32_t(256 + extra++);
    std::string s;
    if (cp < 0x80) {
      s += char(cp);
    } else {
      s += char(0xc0 | (cp >> 6));
      s += char(0x80 | (cp & 0x3f));
    }
    out[size_t(b)] = s;
  }
  return out;
}

// GPT-2 layout: ByteLevel pre-tokenizer with its own regex, merges for "he",
// "ll", "hell", "hello" and "Ġhello"; one added token <sep> with lstrip/rstrip.
json gpt2_style() {
  json vocab = json::object();
  const auto chars = byte_chars();
  for (int b = 0; b < 256; ++b) vocab[chars[size_t(b)]] = b;
  int next = 256;
  for (const char* t : {"he", "ll", "hell", "hello", "\xC4\xA0hello"}) vocab[t] = next++;
  json j;
  j["added_tokens"] = {{{"id", next}, {"content", "<sep>"}, {"special", true}, {"lstrip", true}, {"rstrip", true}}};
  j["normalizer"] = nullptr;
  j["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}};
  j["post_processor"] = {{"type", "ByteLevel"}};
  j["decoder"] = {{"type", "ByteLevel"}};
  j["model"] = {{"type", "BPE"},
                {"vocab", vocab},
                {"merges", {"h e", "l l", "he ll", "hell o", "\xC4\xA0 hello"}}};  // "a b" strings: older files
  return j;
}

std::unique_ptr<Tokenizer> load_json(const json& j, const std::string& name) {
  const auto dir = testing::temp_dir(name);
  std::ofstream(dir / "tokenizer.json") << j.dump();
  return load_tokenizer(dir);
}

TEST(TokenizerPipeline, Gpt2StyleByteLevel) {
  auto tok = load_json(gpt2_style(), "gpt2-style");
  const auto hello = tok->token_to_id("hello"), space_hello = tok->token_to_id("\xC4\xA0hello");
  EXPECT_EQ(tok->encode("hello hello", false), (std::vector<int32_t>{hello, space_hello}));
  EXPECT_EQ(tok->encode("hello hello", true), tok->encode("hello hello", false));  // no template
  EXPECT_EQ(tok->bos_id(), -1);
  // lstrip / rstrip: the spaces around <sep> belong to it.
  const int32_t sep = tok->token_to_id("<sep>");
  EXPECT_EQ(tok->encode("hello  <sep>  hello", false), (std::vector<int32_t>{hello, sep, hello}));
  for (const std::string text : {" hello\n\nworld ", "x\xC2\xA0y", "tab\there"})
    EXPECT_EQ(tok->decode(tok->encode(text, false), false), text);
}

TEST(TokenizerPipeline, UnsupportedStagesAreNamed) {
  const auto expect_error = [](json j, const std::string& name, const std::string& word) {
    try {
      load_json(j, name);
      FAIL() << "expected an Error mentioning " << word;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(word), std::string::npos) << e.what();
      EXPECT_NE(e.context().file.find("tokenizer.json"), std::string::npos);
    }
  };
  json j = gpt2_style();
  j["model"]["type"] = "WordPiece";
  expect_error(j, "unsupported-model", "WordPiece");
  j = gpt2_style();
  j["normalizer"] = {{"type", "BertNormalizer"}};
  expect_error(j, "unsupported-normalizer", "BertNormalizer");
  j = gpt2_style();
  j["pre_tokenizer"] = {{"type", "Punctuation"}};
  expect_error(j, "unsupported-pre-tokenizer", "Punctuation");
  j = gpt2_style();
  j["decoder"] = {{"type", "CTC"}};
  expect_error(j, "unsupported-decoder", "CTC");
  j = gpt2_style();
  j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}};
  expect_error(j, "bad-regex", "(unclosed");
  j = gpt2_style();
  j["model"]["merges"] = {"h zz"};
  expect_error(j, "bad-merge", "merge 0");
  const auto dir = testing::temp_dir("not-json");
  std::ofstream(dir / "tokenizer.json") << "{ not json";
  EXPECT_THROW(load_tokenizer(dir), Error);
}

TEST(TokenizerPipeline, SplitBehaviours) {
  json j = gpt2_style();
  // Words split at digits (MergedWithNext keeps each digit at the start of what follows).
  j["pre_tokenizer"] = {{"type", "Sequence"},
                        {"pretokenizers",
                         {{{"type", "Split"}, {"pattern", {{"Regex", "[0-9]"}}}, {"behavior", "MergedWithNext"}},
                          {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}};
  auto tok = load_json(j, "split-next");
  const int32_t hello = tok->token_to_id("hello");
  // "hello1hello": pieces "hello", "1hello" -> hello, '1', hello.
  EXPECT_EQ(tok->encode("hello1hello", false), (std::vector<int32_t>{hello, '1' - 0, hello}));
  j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Removed";
  tok = load_json(j, "split-removed");
  EXPECT_EQ(tok->encode("hello1hello", false), (std::vector<int32_t>{hello, hello}));
}

TEST(TokenizerPipeline, ConfigFilesNameBosAndEos) {
  json j = gpt2_style();
  const auto dir = testing::temp_dir("config-eos");
  std::ofstream(dir / "tokenizer.json") << j.dump();
  std::ofstream(dir / "tokenizer_config.json") << R"({"bos_token": {"content": "<sep>"}, "eos_token": "hello"})";
  std::ofstream(dir / "generation_config.json") << R"({"eos_token_id": [7, 260]})";
  auto tok = load_tokenizer(dir);
  EXPECT_EQ(tok->bos_id(), tok->token_to_id("<sep>"));
  EXPECT_EQ(tok->eos_ids(), (std::vector<int32_t>{259, 7, 260}));
}

}  // namespace
}  // namespace lowbit::io
