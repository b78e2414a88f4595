#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "lowbit/core/error.h"
#include "lowbit/io/tokenizer.h"
#include "support/test_support.h"

namespace lowbit::io {
namespace {

std::vector<std::string> lines_of(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::vector<int32_t> parse_ids(const std::string& line) {
  std::istringstream s(line);
  std::vector<int32_t> ids;
  for (int32_t id; s >> id;) ids.push_back(id);
  return ids;
}

std::filesystem::path spm_dir() { return testing::models_dir() / "spm"; }

class SentencePieceModel : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    tokenizer_ = load_sentencepiece_tokenizer(spm_dir() / "shakespeare-spm.model").release();
  }
  static void TearDownTestSuite() { delete tokenizer_; }
  static Tokenizer* tokenizer_;
};
Tokenizer* SentencePieceModel::tokenizer_ = nullptr;

TEST_F(SentencePieceModel, ReproducesSpmEncodeLineByLine) {
  const auto text = lines_of(spm_dir() / "sample.txt");
  const auto ids = lines_of(spm_dir() / "sample.ids");
  ASSERT_EQ(text.size(), ids.size());
  ASSERT_GT(text.size(), 50u);
  for (size_t i = 0; i < text.size(); ++i) {
    EXPECT_EQ(tokenizer_->encode(text[i], false), parse_ids(ids[i])) << "line " << i + 1 << ": " << text[i];
  }
}

TEST_F(SentencePieceModel, DecodesBackToText) {
  for (const auto& line : lines_of(spm_dir() / "sample.txt")) {
    // sentencepiece's default normalizer (nmt_nfkc) folds runs of spaces and
    // tabs and compatibility characters (𝔘 -> U); compare lines it leaves as they are.
    if (line.find("  ") != std::string::npos || line.find('\t') != std::string::npos ||
        line.find("\xF0\x9D") != std::string::npos)
      continue;
    std::string trimmed = line;
    while (!trimmed.empty() && trimmed.back() == ' ') trimmed.pop_back();
    EXPECT_EQ(tokenizer_->decode(tokenizer_->encode(line, false), true), trimmed);
  }
}

TEST_F(SentencePieceModel, SpecialTokensAndByteFallback) {
  EXPECT_EQ(tokenizer_->vocab_size(), 1000);
  EXPECT_GE(tokenizer_->bos_id(), 0);
  ASSERT_EQ(tokenizer_->eos_ids().size(), 1u);
  const auto ids = tokenizer_->encode("Hi 😀", true);
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(ids.front(), tokenizer_->bos_id());
  // 😀 (F0 9F 98 80) is not in a 1000-piece vocabulary: four <0xNN> byte pieces.
  EXPECT_EQ(tokenizer_->id_to_token(ids.back()), "<0x80>");
  EXPECT_EQ(tokenizer_->decode(ids, true), "Hi 😀");
  EXPECT_EQ(tokenizer_->decode(ids, false).substr(0, 3), "<s>");
  EXPECT_TRUE(tokenizer_->is_special(tokenizer_->bos_id()));
  EXPECT_EQ(tokenizer_->token_to_id("<s>"), tokenizer_->bos_id());
  EXPECT_EQ(tokenizer_->token_to_id("no such piece"), -1);
  EXPECT_TRUE(tokenizer_->encode("", false).empty());
  EXPECT_THROW(tokenizer_->encode("bad \xc3", false), Error);
}

TEST_F(SentencePieceModel, StreamingDecodeOfByteFallback) {
  const std::string text = "A café 😀 and 日本";
  StreamingDecoder stream(*tokenizer_);
  std::string out;
  for (int32_t id : tokenizer_->encode(text, true)) out += stream.push(id);
  out += stream.finish();
  EXPECT_EQ(out, text);
}

TEST(TokenizerLoading, PicksTokenizerModelWhenThereIsNoJson) {
  const auto dir = testing::temp_dir("spm-dir");
  std::filesystem::copy_file(spm_dir() / "shakespeare-spm.model", dir / "tokenizer.model");
  auto tokenizer = load_tokenizer(dir);
  const auto lines = lines_of(spm_dir() / "sample.txt");
  const auto expected = parse_ids(lines_of(spm_dir() / "sample.ids")[0]);
  EXPECT_EQ(tokenizer->encode(lines[0], false), expected);
  EXPECT_EQ(tokenizer->encode(lines[0], true).front(), tokenizer->bos_id());

  // tokenizer_config.json's add_bos_token / add_eos_token decide what add_special_tokens adds.
  std::ofstream(dir / "tokenizer_config.json") << R"({"add_bos_token": false, "add_eos_token": true})";
  tokenizer = load_tokenizer(dir);
  auto with_eos = expected;
  with_eos.push_back(tokenizer->eos_ids().at(0));
  EXPECT_EQ(tokenizer->encode(lines[0], true), with_eos);
}

}  // namespace
}  // namespace lowbit::io
