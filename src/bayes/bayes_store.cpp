#include "bayes/bayes_store.h"

#include <algorithm>
#include <tuple>

#include "core/digest.h"

namespace spamward {
namespace {

constexpr std::string_view kTokens = "bayes_tokens";
constexpr std::string_view kLearned = "bayes_learned";
constexpr std::string_view kMeta = "bayes_meta";

void put_u32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out += static_cast<char>((v >> (8 * i)) & 0xff);
}
void put_u64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out += static_cast<char>((v >> (8 * i)) & 0xff);
}
uint32_t get_u32(std::string_view s, size_t at) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(s[at + i]);
  return v;
}
uint64_t get_u64(std::string_view s, size_t at) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(s[at + i]);
  return v;
}

std::string token_key(const std::string& prefix, uint64_t hash) {
  std::string k = prefix;
  for (int i = 7; i >= 0; --i) k += static_cast<char>((hash >> (8 * i)) & 0xff);
  return k;
}

uint64_t hash_of_key(std::string_view key) {  // the last 8 bytes, big-endian
  uint64_t h = 0;
  for (size_t i = key.size() - 8; i < key.size(); ++i)
    h = (h << 8) | static_cast<unsigned char>(key[i]);
  return h;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// 64 hex digits -> 32 bytes; anything else is kept as it is (at most 64 bytes).
std::string digest_bytes(std::string_view digest) {
  if (digest.size() == 64 &&
      std::all_of(digest.begin(), digest.end(), [](char c) { return hex_value(c) >= 0; })) {
    std::string out;
    for (size_t i = 0; i < 64; i += 2) {
      out += static_cast<char>(hex_value(digest[i]) * 16 + hex_value(digest[i + 1]));
    }
    return out;
  }
  return std::string(digest.substr(0, 64));
}

// Collapses runs of white space to one space and trims.
void append_collapsed(std::string& out, std::string_view v) {
  bool space = false, any = false;
  for (char c : v) {
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
      space = true;
      continue;
    }
    if (space && any) out += ' ';
    out += c;
    space = false;
    any = true;
  }
}

}  // namespace

BayesStore::BayesStore(Store& store, const Clock& clock, std::string ns, size_t max_buffered_tokens)
    : store_(store), clock_(clock), ns_(std::move(ns)), max_buffered_(max_buffered_tokens) {
  ns_ += '/';  // the key prefix; ns() strips it
}

BayesStore::~BayesStore() {
  try {
    commit();
  } catch (...) {  // a destructor must not throw; commit() reports errors to those who ask
  }
}

uint32_t BayesStore::today() const {
  return static_cast<uint32_t>(std::max<int64_t>(0, to_unix_ms(clock_.now()) / 86'400'000));
}

void BayesStore::load_totals() {
  if (totals_loaded_) return;
  totals_ = {};
  token_count_ = 0;
  if (auto v = store_.get(kMeta, ns_ + "totals"); v && v->size() >= 24) {
    totals_.spam = get_u64(*v, 0);
    totals_.ham = get_u64(*v, 8);
    token_count_ = get_u64(*v, 16);
  }
  totals_loaded_ = true;
}

LearnedTotals BayesStore::totals() {
  std::lock_guard lock(mu_);
  load_totals();
  return totals_;
}

uint64_t BayesStore::token_count() {
  std::lock_guard lock(mu_);
  load_totals();
  return token_count_;
}

BayesStore::Entry& BayesStore::entry(uint64_t hash) {
  auto [it, inserted] = buffer_.try_emplace(hash);
  if (inserted) {
    if (auto v = store_.get(kTokens, token_key(ns_, hash)); v && v->size() >= 12) {
      it->second.counts = {get_u32(*v, 0), get_u32(*v, 4)};
      it->second.day = get_u32(*v, 8);
      it->second.stored = true;
    }
  }
  return it->second;
}

std::vector<TokenCounts> BayesStore::lookup(std::span<const uint64_t> tokens) {
  std::vector<TokenCounts> out(tokens.size());
  std::lock_guard lock(mu_);
  // The tokens not in the write buffer, read from the Store in one batch.
  std::vector<std::string> keys;
  std::vector<size_t> index;
  keys.reserve(tokens.size());
  index.reserve(tokens.size());
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (auto it = buffer_.find(tokens[i]); it != buffer_.end()) {
      out[i] = it->second.counts;
      continue;
    }
    std::string key = ns_;
    for (int b = 7; b >= 0; --b) key += static_cast<char>((tokens[i] >> (8 * b)) & 0xff);
    keys.push_back(std::move(key));
    index.push_back(i);
  }
  if (keys.empty()) return out;
  auto values = store_.get_many(kTokens, keys);
  for (size_t j = 0; j < values.size(); ++j) {
    if (const auto& v = values[j]; v && v->size() >= 12) {
      out[index[j]] = {get_u32(*v, 0), get_u32(*v, 4)};
    }
  }
  return out;
}

std::optional<MessageClass> BayesStore::stored_class(const std::string& key) {
  if (auto it = learned_buffer_.find(key); it != learned_buffer_.end()) return it->second;
  auto v = store_.get(kLearned, key);
  if (!v || v->empty()) return std::nullopt;
  if ((*v)[0] == 's') return MessageClass::spam;
  if ((*v)[0] == 'h') return MessageClass::ham;
  return std::nullopt;
}

std::optional<MessageClass> BayesStore::learned_as(std::string_view digest) {
  std::lock_guard lock(mu_);
  return stored_class(ns_ + digest_bytes(digest));
}

void BayesStore::apply(std::span<const uint64_t> tokens, MessageClass cls, int delta) {
  const uint32_t day = today();
  for (uint64_t h : tokens) {
    Entry& e = entry(h);
    uint32_t& n = cls == MessageClass::spam ? e.counts.spam : e.counts.ham;
    if (delta > 0) {
      if (n < UINT32_MAX) ++n;
      e.day = day;
    } else if (n > 0) {
      --n;
    }
    e.dirty = true;
  }
  uint64_t& total = cls == MessageClass::spam ? totals_.spam : totals_.ham;
  if (delta > 0) {
    ++total;
  } else if (total > 0) {
    --total;
  }
  totals_dirty_ = true;
}

LearnOutcome BayesStore::learn(std::string_view digest, std::span<const uint64_t> tokens,
                               MessageClass cls) {
  std::lock_guard lock(mu_);
  load_totals();
  const std::string key = ns_ + digest_bytes(digest);
  const auto before = stored_class(key);
  if (before == cls) return LearnOutcome::already_learned;
  // A message counts once per token, whatever the caller passes.
  std::vector<uint64_t> distinct(tokens.begin(), tokens.end());
  std::sort(distinct.begin(), distinct.end());
  distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
  if (before) apply(distinct, *before, -1);
  apply(distinct, cls, +1);
  learned_buffer_[key] = cls;
  if (buffer_.size() >= max_buffered_) commit_locked();
  return before ? LearnOutcome::moved : LearnOutcome::learned;
}

LearnOutcome BayesStore::forget(std::string_view digest, std::span<const uint64_t> tokens) {
  std::lock_guard lock(mu_);
  load_totals();
  const std::string key = ns_ + digest_bytes(digest);
  const auto before = stored_class(key);
  if (!before) return LearnOutcome::not_learned;
  std::vector<uint64_t> distinct(tokens.begin(), tokens.end());
  std::sort(distinct.begin(), distinct.end());
  distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
  apply(distinct, *before, -1);
  learned_buffer_[key] = std::nullopt;
  if (buffer_.size() >= max_buffered_) commit_locked();
  return LearnOutcome::forgotten;
}

void BayesStore::commit() {
  std::lock_guard lock(mu_);
  commit_locked();
}

void BayesStore::commit_locked() {
  if (buffer_.empty() && learned_buffer_.empty() && !totals_dirty_) {
    totals_loaded_ = false;  // see other writers' totals next time
    return;
  }
  std::string key = ns_, value;
  for (auto& [hash, e] : buffer_) {
    if (!e.dirty) continue;
    key.resize(ns_.size());
    for (int b = 7; b >= 0; --b) key += static_cast<char>((hash >> (8 * b)) & 0xff);
    if (e.counts.spam == 0 && e.counts.ham == 0) {
      if (e.stored) {
        store_.erase(kTokens, key);
        if (token_count_ > 0) --token_count_;
      }
      continue;
    }
    value.clear();
    put_u32(value, e.counts.spam);
    put_u32(value, e.counts.ham);
    put_u32(value, e.day);
    store_.put(kTokens, key, value);
    if (!e.stored) ++token_count_;
  }
  for (auto& [k, cls] : learned_buffer_) {
    if (!cls) {
      store_.erase(kLearned, k);
      continue;
    }
    value.assign(1, static_cast<char>(*cls));
    put_u32(value, today());
    store_.put(kLearned, k, value);
  }
  value.clear();
  put_u64(value, totals_.spam);
  put_u64(value, totals_.ham);
  put_u64(value, token_count_);
  store_.put(kMeta, ns_ + "totals", value);
  buffer_.clear();
  learned_buffer_.clear();
  totals_dirty_ = false;
  totals_loaded_ = false;
}

ExpiryResult BayesStore::expire(const ExpiryPolicy& policy) {
  std::lock_guard lock(mu_);
  commit_locked();
  load_totals();
  ExpiryResult result;
  const uint32_t now = today();
  const uint32_t stale_before = now > policy.stale_days ? now - policy.stale_days : 0;
  struct Kept {
    uint64_t total;
    uint32_t day;
    uint64_t hash;
  };
  std::vector<Kept> kept;
  std::vector<uint64_t> stale;
  store_.scan(kTokens, ns_, [&](std::string_view k, std::string_view v) {
    if (k.size() != ns_.size() + 8 || v.size() < 12) return true;
    const uint64_t total = uint64_t{get_u32(v, 0)} + get_u32(v, 4);
    const uint32_t day = get_u32(v, 8);
    if (total <= policy.rare_count && day < stale_before) {
      stale.push_back(hash_of_key(k));
    } else {
      kept.push_back({total, day, hash_of_key(k)});
    }
    return true;
  });
  for (uint64_t h : stale) store_.erase(kTokens, token_key(ns_, h));
  result.removed_stale = stale.size();
  if (kept.size() > policy.max_tokens) {
    const size_t extra = kept.size() - policy.max_tokens;
    // Least useful first: fewest messages, then longest unseen (hash: a total order).
    auto less_useful = [](const Kept& a, const Kept& b) {
      return std::tie(a.total, a.day, a.hash) < std::tie(b.total, b.day, b.hash);
    };
    std::nth_element(kept.begin(), kept.begin() + static_cast<ptrdiff_t>(extra), kept.end(),
                     less_useful);
    for (size_t i = 0; i < extra; ++i) store_.erase(kTokens, token_key(ns_, kept[i].hash));
    result.removed_for_size = extra;
    kept.erase(kept.begin(), kept.begin() + static_cast<ptrdiff_t>(extra));
  }
  result.remaining = kept.size();
  token_count_ = kept.size();
  std::string value;
  put_u64(value, totals_.spam);
  put_u64(value, totals_.ham);
  put_u64(value, token_count_);
  store_.put(kMeta, ns_ + "totals", value);
  totals_loaded_ = false;
  return result;
}

std::string learned_message_digest(const Message& m) {
  std::string text;
  for (std::string_view name : {"Message-ID", "From", "To", "Subject", "Date"}) {
    text += name;
    text += ':';
    if (const HeaderField* h = m.header(name)) append_collapsed(text, h->value);
    text += '\n';
  }
  text += '\n';
  // Body: CRLF or LF, trailing white space on lines and trailing blank lines do not matter
  // (MTAs and mail stores differ in exactly these).
  std::string_view body = m.raw_body;
  size_t pending_newlines = 0;
  size_t i = 0;
  while (i < body.size()) {
    size_t nl = body.find('\n', i);
    std::string_view line =
        body.substr(i, nl == std::string_view::npos ? std::string_view::npos : nl - i);
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) {
      line.remove_suffix(1);
    }
    if (line.empty()) {
      ++pending_newlines;
    } else {
      text.append(pending_newlines, '\n');
      pending_newlines = 0;
      text += line;
      ++pending_newlines;
    }
    if (nl == std::string_view::npos) break;
    i = nl + 1;
  }
  return sha256_hex(text);
}

}  // namespace spamward
