// tokenizer.model through libsentencepiece: the ids spm_encode gives, and
// what transformers' LlamaTokenizer (slow) adds with add_special_tokens: bos
// (and eos when the configuration asks for it).
#include <sentencepiece_processor.h>

#include "io/tokenizer/utf8.h"
#include "lowbit/core/error.h"
#include "lowbit/io/tokenizer.h"

namespace lowbit::io {

namespace {

class SentencePieceTokenizer final : public Tokenizer {
 public:
  SentencePieceTokenizer(const std::filesystem::path& path, bool add_bos, bool add_eos)
      : add_bos_(add_bos), add_eos_(add_eos) {
    const auto status = processor_.Load(path.string());
    if (!status.ok()) throw Error("cannot load sentencepiece model: " + status.ToString()).with_file(path.string());
    set_bos_id(processor_.bos_id());
    if (processor_.eos_id() >= 0) add_eos_id(processor_.eos_id());
  }

  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens) const override {
    check_utf8(text);
    std::vector<int> pieces;
    const auto status = processor_.Encode(text, &pieces);
    if (!status.ok()) fail("sentencepiece encode failed: {}", status.ToString());
    std::vector<int32_t> ids;
    ids.reserve(pieces.size() + 2);
    if (add_special_tokens && add_bos_ && bos_id() >= 0) ids.push_back(bos_id());
    ids.insert(ids.end(), pieces.begin(), pieces.end());
    if (add_special_tokens && add_eos_ && processor_.eos_id() >= 0) ids.push_back(processor_.eos_id());
    return ids;
  }

  std::string decode(std::span<const int32_t> ids, bool skip_special_tokens) const override {
    // sentencepiece drops control tokens (<s>, </s>) when decoding; with
    // skip_special_tokens false they are written out as their text.
    std::string text;
    std::vector<int> run;
    const auto flush = [&] {
      if (run.empty()) return;
      std::string piece;
      const auto status = processor_.Decode(run, &piece);
      if (!status.ok()) fail("sentencepiece decode failed: {}", status.ToString());
      text += piece;
      run.clear();
    };
    for (int32_t id : ids) {
      LOWBIT_CHECK(id >= 0 && id < vocab_size(), "decode: token id {} is not in the vocabulary (size {})", id,
                   vocab_size());
      if (processor_.IsControl(id)) {
        flush();
        if (!skip_special_tokens) text += processor_.IdToPiece(id);
        continue;
      }
      run.push_back(id);
    }
    flush();
    return utf8::lossy(text);
  }

  int32_t vocab_size() const override { return processor_.GetPieceSize(); }
  int32_t token_to_id(std::string_view token) const override {
    const int id = processor_.PieceToId(token);
    // PieceToId answers unk for unknown pieces; only the unk piece itself maps there.
    return id == processor_.unk_id() && processor_.IdToPiece(id) != token ? -1 : id;
  }
  std::string id_to_token(int32_t id) const override {
    LOWBIT_CHECK(id >= 0 && id < vocab_size(), "token id {} is not in the vocabulary (size {})", id, vocab_size());
    return processor_.IdToPiece(id);
  }
  bool is_special(int32_t id) const override { return id >= 0 && id < vocab_size() && processor_.IsControl(id); }

 private:
  sentencepiece::SentencePieceProcessor processor_;
  bool add_bos_, add_eos_;
};

}  // namespace

std::unique_ptr<Tokenizer> load_sentencepiece_tokenizer(const std::filesystem::path& path, bool add_bos,
                                                        bool add_eos) {
  return std::make_unique<SentencePieceTokenizer>(path, add_bos, add_eos);
}

}  // namespace lowbit::io
