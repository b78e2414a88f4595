// The BPE model of a tokenizer.json: vocabulary, merges by rank, unknown
// characters (byte fallback <0xNN> or an unk token), and a cache of the
// result per pre-tokenized word.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace lowbit::io {

class BpeModel {
 public:
  // `model` is tokenizer.json's "model" object (type BPE).
  explicit BpeModel(const nlohmann::json& model);

  // Appends the ids of one pre-tokenized word.
  void tokenize(std::string_view word, std::vector<int32_t>& out) const;

  int32_t token_to_id(std::string_view token) const;
  const std::string* id_to_token(int32_t id) const;
  int32_t size() const { return int32_t(tokens_.size()); }
  bool byte_fallback() const { return byte_fallback_; }

 private:
  struct Merge {
    int32_t rank;
    int32_t new_id;
  };
  static uint64_t pair_key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }
  std::vector<int32_t> merge_word(std::string_view word) const;

  std::unordered_map<std::string, int32_t> vocab_;
  std::vector<std::string> tokens_;  // by id ("" for ids the vocabulary skips)
  std::unordered_map<uint64_t, Merge> merges_;
  int32_t unk_id_ = -1;
  int32_t byte_ids_[256];  // <0xNN> tokens for byte fallback, -1 when absent
  bool byte_fallback_ = false;
  bool fuse_unk_ = false;
  bool ignore_merges_ = false;

  // Words repeat a lot in text; the cache makes encoding linear in practice.
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
};

}  // namespace lowbit::io
