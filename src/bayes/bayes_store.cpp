#include "bayes/bayes_store.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <tuple>
#include <unordered_set>

#include "core/digest.h"

namespace spamward {
namespace {

constexpr std::string_view kTokens = "bayes_tokens";
constexpr std::string_view kLearned = "bayes_learned";
constexpr std::string_view kMeta = "bayes_meta";
constexpr std::string_view kWeights = "bayes_weights";
constexpr size_t kRecordHead = 5;  // class u8, day u32; then optionally n u32 and n hashes
constexpr size_t kModelRecord = 37;

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
void put_f32(std::string& out, float f) {
  uint32_t v = 0;
  std::memcpy(&v, &f, sizeof v);
  put_u32(out, v);
}
float get_f32(std::string_view s, size_t at) {
  const uint32_t v = get_u32(s, at);
  float f = 0;
  std::memcpy(&f, &v, sizeof f);
  return std::isfinite(f) ? f : 0.0f;  // a damaged value must not poison every score
}

// The token hashes of a learned record, or empty when it has none (or is damaged).
std::vector<uint64_t> record_tokens(std::string_view v) {
  std::vector<uint64_t> out;
  if (v.size() < kRecordHead + 4) return out;
  const uint32_t n = get_u32(v, kRecordHead);
  if (v.size() != kRecordHead + 4 + size_t{n} * 8) return out;
  out.reserve(n);
  for (uint32_t i = 0; i < n; ++i) out.push_back(get_u64(v, kRecordHead + 4 + size_t{i} * 8));
  return out;
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

void BayesStore::prefetch(std::span<const uint64_t> tokens) {
  std::vector<uint64_t> missing;
  std::vector<std::string> keys;
  for (uint64_t h : tokens) {
    if (buffer_.contains(h)) continue;
    missing.push_back(h);
    keys.push_back(token_key(ns_, h));
  }
  if (keys.empty()) return;
  auto values = store_.get_many(kTokens, keys);
  for (size_t i = 0; i < missing.size() && i < values.size(); ++i) {
    auto [it, inserted] = buffer_.try_emplace(missing[i]);
    if (!inserted) continue;  // a repeated token: loaded with its first copy
    if (const auto& v = values[i]; v && v->size() >= 12) {
      it->second.counts = {get_u32(*v, 0), get_u32(*v, 4)};
      it->second.day = get_u32(*v, 8);
      it->second.stored = true;
    }
  }
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
  if (auto it = learned_buffer_.find(key); it != learned_buffer_.end()) return it->second.cls;
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
  prefetch(tokens);
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
  learned_buffer_[key] = Learned{cls, std::move(distinct)};
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
  learned_buffer_[key] = Learned{};
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
  for (auto& [k, record] : learned_buffer_) {
    if (!record.cls) {
      store_.erase(kLearned, k);
      continue;
    }
    value.assign(1, static_cast<char>(*record.cls));
    put_u32(value, today());
    if (!record.tokens.empty()) {
      put_u32(value, static_cast<uint32_t>(record.tokens.size()));
      for (uint64_t h : record.tokens) put_u64(value, h);
    }
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
  // The token lists of all but the newest max_token_lists records (the digest and class stay).
  struct Listed {
    uint32_t day;
    std::string key;
    char cls;
  };
  std::vector<Listed> listed;
  store_.scan(kLearned, ns_, [&](std::string_view k, std::string_view v) {
    if (v.size() > kRecordHead) listed.push_back({get_u32(v, 1), std::string(k), v[0]});
    return true;
  });
  if (listed.size() > policy.max_token_lists) {
    const size_t extra = listed.size() - policy.max_token_lists;
    std::nth_element(listed.begin(), listed.begin() + static_cast<ptrdiff_t>(extra), listed.end(),
                     [](const Listed& a, const Listed& b) {
                       return std::tie(a.day, a.key) < std::tie(b.day, b.key);
                     });
    std::string head;
    for (size_t i = 0; i < extra; ++i) {
      head.assign(1, listed[i].cls);
      put_u32(head, listed[i].day);
      store_.put(kLearned, listed[i].key, head);
    }
    result.token_lists_dropped = extra;
  }
  std::string value;
  put_u64(value, totals_.spam);
  put_u64(value, totals_.ham);
  put_u64(value, token_count_);
  store_.put(kMeta, ns_ + "totals", value);
  totals_loaded_ = false;
  return result;
}

std::string BayesStore::weight_key(uint8_t slot, uint64_t hash) const {
  std::string k = ns_;
  k += static_cast<char>(slot);
  for (int b = 7; b >= 0; --b) k += static_cast<char>((hash >> (8 * b)) & 0xff);
  return k;
}

std::optional<ModelInfo> BayesStore::load_model(uint8_t* slot, float* bias) {
  auto v = store_.get(kMeta, ns_ + "model");
  if (!v || v->size() < kModelRecord) return std::nullopt;
  const auto s = static_cast<uint8_t>((*v)[0]);
  if (s != 'a' && s != 'b') return std::nullopt;
  ModelInfo info;
  info.present = true;
  info.generation = get_u64(*v, 5);
  info.messages = get_u64(*v, 13);
  info.weights = get_u64(*v, 21);
  info.steps = get_u64(*v, 29);
  if (slot) *slot = s;
  if (bias) *bias = get_f32(*v, 1);
  return info;
}

void BayesStore::store_model(uint8_t slot, float bias, const ModelInfo& info) {
  std::string value(1, static_cast<char>(slot));
  put_f32(value, bias);
  put_u64(value, info.generation);
  put_u64(value, info.messages);
  put_u64(value, info.weights);
  put_u64(value, info.steps);
  store_.put(kMeta, ns_ + "model", value);
}

ModelInfo BayesStore::model_info() {
  std::lock_guard lock(mu_);
  return load_model(nullptr, nullptr).value_or(ModelInfo{});
}

bool BayesStore::cache_matches(const ModelInfo& info, uint8_t slot) const {
  return cache_ && cache_->slot == slot && cache_->generation == info.generation &&
         cache_->steps == info.steps;
}

void BayesStore::load_cache(const ModelInfo& info, uint8_t slot) {
  WeightCache cache;
  cache.slot = slot;
  cache.generation = info.generation;
  cache.steps = info.steps;
  cache.complete = true;
  const std::string prefix = ns_ + static_cast<char>(slot);
  cache.weights.reserve(static_cast<size_t>(std::min<uint64_t>(info.weights, kMaxCachedWeights)));
  store_.scan(kWeights, prefix, [&](std::string_view k, std::string_view v) {
    if (k.size() != prefix.size() + 8 || v.size() < 4) return true;
    if (cache.weights.size() >= kMaxCachedWeights) {
      cache.complete = false;
      return false;
    }
    uint64_t hash = 0;
    for (size_t i = prefix.size(); i < k.size(); ++i)
      hash = (hash << 8) | static_cast<unsigned char>(k[i]);
    cache.weights[hash] = get_f32(v, 0);
    return true;
  });
  if (!cache.complete) cache.weights.clear();
  cache_ = std::move(cache);
}

std::optional<ModelWeights> BayesStore::model_weights(std::span<const uint64_t> tokens) {
  std::lock_guard lock(mu_);
  uint8_t slot = 0;
  ModelWeights out;
  auto info = load_model(&slot, &out.bias);
  if (!info) {
    cache_.reset();
    return std::nullopt;
  }
  if (!cache_matches(*info, slot)) load_cache(*info, slot);
  out.weights.assign(tokens.size(), 0.0f);
  if (cache_->complete) {
    for (size_t i = 0; i < tokens.size(); ++i) {
      auto it = cache_->weights.find(tokens[i]);
      if (it != cache_->weights.end()) out.weights[i] = it->second;
    }
    return out;
  }
  std::vector<std::string> keys;
  keys.reserve(tokens.size());
  for (uint64_t h : tokens) keys.push_back(weight_key(slot, h));
  auto values = store_.get_many(kWeights, keys);
  for (size_t i = 0; i < values.size(); ++i) {
    if (values[i] && values[i]->size() >= 4) out.weights[i] = get_f32(*values[i], 0);
  }
  return out;
}

int BayesStore::step(std::span<const uint64_t> tokens, MessageClass cls,
                     const LogisticParams& params, int max_steps) {
  std::vector<uint64_t> distinct(tokens.begin(), tokens.end());
  std::sort(distinct.begin(), distinct.end());
  distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
  std::lock_guard lock(mu_);
  uint8_t slot = 0;
  float bias = 0;
  auto info = load_model(&slot, &bias);
  if (!info) return 0;
  std::vector<std::string> keys;
  keys.reserve(distinct.size());
  for (uint64_t h : distinct) keys.push_back(weight_key(slot, h));
  auto values = store_.get_many(kWeights, keys);
  std::vector<float> w(distinct.size(), 0.0f);
  for (size_t i = 0; i < values.size(); ++i) {
    if (values[i] && values[i]->size() >= 4) w[i] = get_f32(*values[i], 0);
  }
  int steps = 0;
  while (steps < max_steps && logistic_step(w, bias, cls == MessageClass::spam, params)) ++steps;
  if (steps == 0) return 0;
  std::string value;
  for (size_t i = 0; i < w.size(); ++i) {
    value.clear();
    put_f32(value, w[i]);
    store_.put(kWeights, keys[i], value);
  }
  const bool cached = cache_matches(*info, slot);
  info->steps += static_cast<uint64_t>(steps);
  store_model(slot, bias, *info);
  if (cached) {  // keep this process's copy current rather than reloading the whole model
    cache_->steps = info->steps;
    if (cache_->complete) {
      for (size_t i = 0; i < distinct.size(); ++i) cache_->weights[distinct[i]] = w[i];
    }
  }
  return steps;
}

RebuildResult BayesStore::rebuild(const RebuildOptions& options) {
  std::lock_guard rebuilding(rebuild_mu_);  // one rebuild at a time; readers go on meanwhile
  {
    std::lock_guard lock(mu_);
    commit_locked();
  }
  // Read the training data without holding mu_: classification goes on meanwhile.
  std::unordered_set<uint64_t> known;
  store_.scan(kTokens, ns_, [&](std::string_view k, std::string_view v) {
    if (k.size() == ns_.size() + 8) known.insert(hash_of_key(k));
    return true;
  });
  std::vector<std::vector<uint64_t>> lists;
  std::vector<bool> spam;
  RebuildResult result;
  store_.scan(kLearned, ns_, [&](std::string_view k, std::string_view v) {
    if (v.size() <= kRecordHead || (v[0] != 's' && v[0] != 'h')) return true;
    std::vector<uint64_t> tokens = record_tokens(v);
    std::erase_if(tokens, [&](uint64_t h) { return !known.contains(h); });
    if (tokens.empty()) return true;
    lists.push_back(std::move(tokens));
    spam.push_back(v[0] == 's');
    (v[0] == 's' ? result.spam : result.ham)++;
    return true;
  });
  uint8_t old_slot = 0;
  std::optional<ModelInfo> old;
  {
    std::lock_guard lock(mu_);
    old = load_model(&old_slot, nullptr);
  }
  auto erase_slot = [&](uint8_t slot) {
    std::vector<std::string> keys;
    store_.scan(kWeights, ns_ + static_cast<char>(slot), [&](std::string_view k, std::string_view) {
      keys.emplace_back(k);
      return true;
    });
    for (const auto& k : keys) store_.erase(kWeights, k);
  };
  if (result.spam < options.min_learned || result.ham < options.min_learned) {
    if (old) {
      {
        std::lock_guard lock(mu_);
        store_.erase(kMeta, ns_ + "model");
      }
      erase_slot('a');
      erase_slot('b');
    }
    return result;
  }
  std::vector<LogisticExample> examples;
  examples.reserve(lists.size());
  for (size_t i = 0; i < lists.size(); ++i) examples.push_back({lists[i], spam[i]});
  const LogisticModel model =
      train_logistic(examples, options.passes, options.seed, options.params, options.orders);
  // Another host (or process) may have switched the model while this one trained: write into
  // whichever slot is not live *now*. The previous model stays in its slot until the next
  // rebuild writes there: erasing it after the switch could erase the weights a concurrent
  // rebuild, which read the switched record, is writing into that slot.
  {
    std::lock_guard lock(mu_);
    old = load_model(&old_slot, nullptr);
  }
  const uint8_t slot = old && old_slot == 'a' ? 'b' : 'a';
  erase_slot(slot);  // the model before the previous one, or an interrupted rebuild's
  std::string value;
  for (const auto& [hash, w] : model.weights()) {
    if (w == 0.0f) continue;
    value.clear();
    put_f32(value, w);
    store_.put(kWeights, weight_key(slot, hash), value);
    ++result.weights;
  }
  ModelInfo info;
  info.present = true;
  info.generation = (old ? old->generation : 0) + 1;
  info.messages = lists.size();
  info.weights = result.weights;
  {
    std::lock_guard lock(mu_);
    store_model(slot, model.bias(), info);  // the switch: readers now use the new slot
  }
  result.built = true;
  result.generation = info.generation;
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
