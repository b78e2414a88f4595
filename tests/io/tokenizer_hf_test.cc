#include <random>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "lowbit/core/error.h"
#include "lowbit/io/tokenizer.h"
#include "support/test_support.h"

namespace lowbit::io {
namespace {

std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<int32_t> reference_ids(const std::string& name) {
  auto r = SafetensorsReader::open(testing::models_dir() / "shakespeare-tokens.safetensors");
  Tensor t = r.tensor(name);
  std::vector<int32_t> out(size_t(t.numel()));
  for (size_t i = 0; i < out.size(); ++i)
    out[i] = t.dtype() == DType::I64 ? int32_t(t.data<int64_t>()[i]) : t.data<int32_t>()[i];
  return out;
}

// Code points, not bytes: dev.ids_with_bos covers the first 2000 characters.
std::string first_chars(const std::string& text, size_t n) {
  size_t pos = 0;
  for (size_t c = 0; c < n && pos < text.size(); ++c) {
    ++pos;
    while (pos < text.size() && (static_cast<unsigned char>(text[pos]) & 0xc0) == 0x80) ++pos;
  }
  return text.substr(0, pos);
}

class LlamaTokenizer : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { tokenizer_ = load_tokenizer(testing::models_dir() / "shakespeare-llama").release(); }
  static void TearDownTestSuite() { delete tokenizer_; }
  static Tokenizer* tokenizer_;
};
Tokenizer* LlamaTokenizer::tokenizer_ = nullptr;

TEST_F(LlamaTokenizer, ReproducesDevIds) {
  const std::string text = read_text(testing::models_dir() / "shakespeare-dev.txt");
  const auto expected = reference_ids("dev.ids");
  const auto ids = tokenizer_->encode(text, false);
  ASSERT_GE(ids.size(), expected.size());
  EXPECT_EQ(std::vector<int32_t>(ids.begin(), ids.begin() + long(expected.size())), expected);
  EXPECT_EQ(tokenizer_->decode(ids, false), text);
}

TEST_F(LlamaTokenizer, ReproducesIdsWithBos) {
  const std::string text = first_chars(read_text(testing::models_dir() / "shakespeare-dev.txt"), 2000);
  EXPECT_EQ(tokenizer_->encode(text, true), reference_ids("dev.ids_with_bos"));
}

TEST_F(LlamaTokenizer, SpecialTokensAndIds) {
  EXPECT_EQ(tokenizer_->vocab_size(), 2048);
  EXPECT_EQ(tokenizer_->bos_id(), 0);
  EXPECT_EQ(tokenizer_->eos_ids(), std::vector<int32_t>{1});
  EXPECT_EQ(tokenizer_->token_to_id("<|end_of_text|>"), 1);
  EXPECT_EQ(tokenizer_->id_to_token(0), "<|begin_of_text|>");
  EXPECT_EQ(tokenizer_->token_to_id("no such token"), -1);
  EXPECT_TRUE(tokenizer_->is_special(1));
  EXPECT_FALSE(tokenizer_->is_special(2));

  // Special tokens written in the text are single ids, not split by the regex.
  const auto ids = tokenizer_->encode("Hi<|end_of_text|><|begin_of_text|> there", false);
  const auto hi = tokenizer_->encode("Hi", false), there = tokenizer_->encode(" there", false);
  std::vector<int32_t> expected = hi;
  expected.push_back(1);
  expected.push_back(0);
  expected.insert(expected.end(), there.begin(), there.end());
  EXPECT_EQ(ids, expected);
  EXPECT_EQ(tokenizer_->decode(ids, false), "Hi<|end_of_text|><|begin_of_text|> there");
  EXPECT_EQ(tokenizer_->decode(ids, true), "Hi there");
}

TEST_F(LlamaTokenizer, EmptyText) {
  EXPECT_TRUE(tokenizer_->encode("", false).empty());
  EXPECT_EQ(tokenizer_->encode("", true), std::vector<int32_t>{0});
  EXPECT_EQ(tokenizer_->decode({}, true), "");
}

TEST_F(LlamaTokenizer, RoundTripsAnyUtf8) {
  for (const std::string text : {"naïve café — “quoted” 𝔘nicode 12345", "日本語のテキスト、中文。", "emoji 😀👍🏽 mixed",
                                 "\ttabs  and   spaces\n\n\r\n", "  leading and trailing  ", "'S 'LL 'Re CAPS'D"}) {
    const auto ids = tokenizer_->encode(text, false);
    EXPECT_EQ(tokenizer_->decode(ids, false), text) << text;
  }
}

TEST_F(LlamaTokenizer, RejectsInvalidUtf8) {
  try {
    tokenizer_->encode("ok \xff\xfe bad", false);
    FAIL() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not valid UTF-8"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("offset 3"), std::string::npos) << e.what();
  }
  EXPECT_THROW(check_utf8("\xed\xa0\x80"), Error);  // a surrogate
  EXPECT_THROW(check_utf8("\xc0\xaf"), Error);      // overlong
  EXPECT_THROW(check_utf8("\xe2\x82"), Error);      // cut off
  EXPECT_NO_THROW(check_utf8("€𝔘"));
}

TEST_F(LlamaTokenizer, DecodesBrokenBytesAsReplacementCharacter) {
  // "😀" is 4 bytes: with byte-level tokens its first token alone is incomplete.
  const auto ids = tokenizer_->encode("😀", false);
  ASSERT_GT(ids.size(), 1u);
  EXPECT_EQ(tokenizer_->decode(std::span(ids).first(1), false), "\xEF\xBF\xBD");
}

TEST_F(LlamaTokenizer, StreamingDecodeHoldsBackPartialCharacters) {
  const std::string text = "Tell me, 😀 good 日本 friend!";
  const auto ids = tokenizer_->encode(text, true);
  StreamingDecoder stream(*tokenizer_);
  std::string out;
  for (int32_t id : ids) {
    const std::string piece = stream.push(id);
    EXPECT_NO_THROW(check_utf8(piece));
    out += piece;
  }
  out += stream.finish();
  EXPECT_EQ(out, text);
}

// Any valid UTF-8 survives encode -> decode (byte-level BPE covers all bytes).
TEST_F(LlamaTokenizer, RoundTripsRandomText) {
  std::mt19937 rng(11);
  const uint32_t ranges[][2] = {{0x20, 0x7e}, {0x09, 0x0d}, {0xa0, 0x2ff}, {0x3040, 0x30ff}, {0x4e00, 0x4fff},
                                {0x1f300, 0x1f64f}, {0x10000, 0x10fff}};
  for (int round = 0; round < 200; ++round) {
    std::string text;
    const int length = int(rng() % 40);
    for (int i = 0; i < length; ++i) {
      const auto& r = ranges[rng() % 7];
      const uint32_t cp = r[0] + rng() % (r[1] - r[0] + 1);
      if (cp < 0x80) {
        text += char(cp);
      } else if (cp < 0x800) {
        text += char(0xc0 | (cp >> 6)), text += char(0x80 | (cp & 0x3f));
      } else if (cp < 0x10000) {
        text += char(0xe0 | (cp >> 12)), text += char(0x80 | ((cp >> 6) & 0x3f)), text += char(0x80 | (cp & 0x3f));
      } else {
        text += char(0xf0 | (cp >> 18)), text += char(0x80 | ((cp >> 12) & 0x3f));
        text += char(0x80 | ((cp >> 6) & 0x3f)), text += char(0x80 | (cp & 0x3f));
      }
    }
    EXPECT_EQ(tokenizer_->decode(tokenizer_->encode(text, true), true), text);
  }
}

TEST(TokenizerLoading, MissingTokenizerNamesTheDirectory) {
  const auto dir = testing::temp_dir("no-tokenizer");
  try {
    load_tokenizer(dir);
    FAIL() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(dir.string()), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("tokenizer.json or tokenizer.model"), std::string::npos) << e.what();
  }
}

TEST(TokenizerLoading, GenerationConfigEosIntOrList) {
  const auto dir = testing::temp_dir("generation-config");
  EXPECT_TRUE(load_generation_config(dir).eos_token_ids.empty());
  std::ofstream(dir / "generation_config.json") << R"({"bos_token_id": 5, "eos_token_id": [7, 9], "temperature": 0.6,
      "top_p": 0.9, "do_sample": true})";
  auto g = load_generation_config(dir);
  EXPECT_EQ(g.eos_token_ids, (std::vector<int32_t>{7, 9}));
  EXPECT_EQ(g.bos_token_id, 5);
  EXPECT_TRUE(g.do_sample);
  EXPECT_FLOAT_EQ(g.top_p, 0.9f);
  g = load_generation_config(testing::models_dir() / "shakespeare-llama");
  EXPECT_EQ(g.eos_token_ids, std::vector<int32_t>{1});
  std::ofstream(dir / "generation_config.json") << R"({"eos_token_id": "x"})";
  EXPECT_THROW(load_generation_config(dir), Error);
}

}  // namespace
}  // namespace lowbit::io
