#include "io/tokenizer/bpe_model.h"

#include <fmt/format.h>

#include <queue>

#include <nlohmann/json.hpp>

#include "io/tokenizer/utf8.h"
#include "lowbit/core/error.h"

namespace lowbit::io {

namespace {

constexpr size_t kMaxCachedWords = 200'000;
constexpr size_t kMaxCachedWordBytes = 256;

}  // namespace

BpeModel::BpeModel(const nlohmann::json& model) {
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
    if (auto it = model.find(key); it != model.end() && !it->is_null() && !it->get<std::string>().empty())
      fail("BPE option '{}' is not supported (only GPT-2 / Llama style BPE)", key);
  if (auto it = model.find("dropout"); it != model.end() && !it->is_null() && it->get<double>() > 0.0)
    fail("BPE dropout is not supported (it makes encoding random)");
  int32_t max_id = -1;
  for (const auto& [token, id] : model.at("vocab").items()) {
    const int32_t i = id.get<int32_t>();
    LOWBIT_CHECK(i >= 0, "BPE vocabulary: token '{}' has negative id {}", token, i);
    vocab_.emplace(token, i);
    max_id = std::max(max_id, i);
  }
  tokens_.assign(size_t(max_id + 1), std::string());
  for (const auto& [token, id] : vocab_) tokens_[size_t(id)] = token;

  int32_t rank = 0;
  for (const auto& m : model.at("merges")) {
    std::string a, b;
    if (m.is_array()) {  // tokenizers >= 0.20 writes ["a", "b"]
      LOWBIT_CHECK(m.size() == 2, "BPE merge {} is not a pair", rank);
      a = m[0].get<std::string>();
      b = m[1].get<std::string>();
    } else {  // older files write "a b"
      const std::string s = m.get<std::string>();
      const size_t sp = s.find(' ');
      LOWBIT_CHECK(sp != std::string::npos, "BPE merge {} '{}' has no space", rank, s);
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    }
    const auto ia = vocab_.find(a), ib = vocab_.find(b), inew = vocab_.find(a + b);
    if (ia == vocab_.end() || ib == vocab_.end() || inew == vocab_.end())
      fail("BPE merge {} ('{}' + '{}') uses a token missing from the vocabulary", rank, a, b);
    merges_.emplace(pair_key(ia->second, ib->second), Merge{rank, inew->second});
    ++rank;
  }
  if (auto it = model.find("unk_token"); it != model.end() && it->is_string()) {
    auto u = vocab_.find(it->get<std::string>());
    if (u != vocab_.end()) unk_id_ = u->second;
  }
  byte_fallback_ = model.value("byte_fallback", false);
  fuse_unk_ = model.value("fuse_unk", false);
  ignore_merges_ = model.value("ignore_merges", false);
  for (int b = 0; b < 256; ++b) byte_ids_[b] = token_to_id(fmt::format("<0x{:02X}>", b));
}

int32_t BpeModel::token_to_id(std::string_view token) const {
  auto it = vocab_.find(std::string(token));
  return it == vocab_.end() ? -1 : it->second;
}

const std::string* BpeModel::id_to_token(int32_t id) const {
  if (id < 0 || size_t(id) >= tokens_.size() || tokens_[size_t(id)].empty()) return nullptr;
  return &tokens_[size_t(id)];
}

void BpeModel::tokenize(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  const bool cacheable = word.size() <= kMaxCachedWordBytes;
  if (cacheable) {
    std::lock_guard lock(cache_mutex_);
    if (auto it = cache_.find(std::string(word)); it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> ids = merge_word(word);
  out.insert(out.end(), ids.begin(), ids.end());
  if (cacheable) {
    std::lock_guard lock(cache_mutex_);
    if (cache_.size() >= kMaxCachedWords) cache_.clear();
    cache_.emplace(std::string(word), std::move(ids));
  }
}

// The merge loop of `tokenizers` (Word::merge_all): symbols in a linked list,
// candidate pairs in a min-heap by (rank, position); a popped candidate whose
// symbols changed since it was pushed is stale and skipped. O(n log n).
std::vector<int32_t> BpeModel::merge_word(std::string_view word) const {
  if (ignore_merges_) {
    if (auto it = vocab_.find(std::string(word)); it != vocab_.end()) return {it->second};
  }
  struct Symbol {
    int32_t id;
    int32_t prev, next;
    bool alive;
  };
  std::vector<Symbol> symbols;
  symbols.reserve(word.size());
  const auto push = [&](int32_t id) {
    const int32_t n = int32_t(symbols.size());
    symbols.push_back({id, n - 1, n + 1, true});
  };
  bool last_was_unk = false;
  for (size_t pos = 0; pos < word.size();) {
    const size_t len = std::min(utf8::char_length(static_cast<unsigned char>(word[pos])), word.size() - pos);
    const std::string_view ch = word.substr(pos, len);
    pos += len;
    if (auto it = vocab_.find(std::string(ch)); it != vocab_.end()) {
      push(it->second);
      last_was_unk = false;
      continue;
    }
    if (byte_fallback_) {
      bool all = true;
      for (unsigned char c : ch) all = all && byte_ids_[c] >= 0;
      if (all) {
        for (unsigned char c : ch) push(byte_ids_[c]);
        last_was_unk = false;
        continue;
      }
    }
    if (unk_id_ < 0)
      fail("tokenizer: '{}' is not in the vocabulary and the model has neither an unk token nor byte fallback",
           std::string(ch));
    if (!(fuse_unk_ && last_was_unk)) push(unk_id_);
    last_was_unk = true;
  }
  if (symbols.empty()) return {};
  symbols.back().next = -1;

  struct Candidate {
    int32_t rank;
    int32_t pos;
    int32_t new_id;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> queue;
  const auto consider = [&](int32_t left) {
    const int32_t right = symbols[size_t(left)].next;
    if (right < 0) return;
    auto it = merges_.find(pair_key(symbols[size_t(left)].id, symbols[size_t(right)].id));
    if (it != merges_.end()) queue.push({it->second.rank, left, it->second.new_id});
  };
  for (int32_t i = 0; i + 1 < int32_t(symbols.size()); ++i) consider(i);
  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Symbol& left = symbols[size_t(top.pos)];
    if (!left.alive || left.next < 0) continue;
    const int32_t right_pos = left.next;
    auto it = merges_.find(pair_key(left.id, symbols[size_t(right_pos)].id));
    if (it == merges_.end() || it->second.new_id != top.new_id) continue;  // stale
    Symbol& right = symbols[size_t(right_pos)];
    left.id = top.new_id;
    left.next = right.next;
    right.alive = false;
    if (right.next >= 0) symbols[size_t(right.next)].prev = top.pos;
    if (left.prev >= 0) consider(left.prev);
    consider(top.pos);
  }
  std::vector<int32_t> ids;
  for (int32_t i = 0; i >= 0; i = symbols[size_t(i)].next) ids.push_back(symbols[size_t(i)].id);
  return ids;
}

}  // namespace lowbit::io
