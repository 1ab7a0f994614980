// BayesStore: the learned Bayes data on the Store (state/store.h): per token the number of
// learned spam and ham messages that had it and the day it was last learned; the totals of
// learned messages; one record per learned message, by digest, with its class and its
// tokens; and the logistic model trained from those records (bayes/logistic.h).
//
// Contract:
// - Namespaces: every key starts with the namespace ("" for the one global database, or e.g.
//   a recipient domain for per-domain databases) and '/'. Namespaces never see each other's
//   data; a namespace must not contain '/' (domains never do).
// - learn(digest, tokens, cls): a message is counted at most once. Learning it again as the
//   same class changes nothing; learning it as the other class moves it (its tokens' counts
//   and the totals go from the old class to the new). forget() removes it. Counts never go
//   below zero (a message learned by an older tokenizer may have other tokens).
// - Writes are buffered in the object and written to the Store by commit() (and when the
//   buffer passes `max_buffered_tokens`), so bulk learning costs one Store read and write
//   per distinct token per batch, not per message. lookup(), totals() and learned_as() see
//   the buffered changes. The Store then makes them durable in its own batches; call
//   Store::flush() to wait for that. The destructor commits what is left (errors are
//   swallowed there: call commit() to see them).
// - Store errors throw StoreError (callers fail open).
// - Thread-safe (one mutex). Two processes learning into one namespace at the same moment
//   may lose some of each other's counts (read-modify-write); learning is meant to run in
//   one process at a time (`spamward learn`, or the daemon's TELL/autolearn).
// - expire(): removes tokens seen in at most `rare_count` messages and not learned for
//   `stale_days`, then, while more than `max_tokens` remain, the least useful ones (fewest
//   messages, then longest unseen). The namespace's token count is exact afterwards.
//
// Layout (tables and values are little-endian binary; stable across versions):
//   bayes_tokens  NS "/" hash(8 bytes, big-endian)  -> spam u32, ham u32, last-learned day u32
//   bayes_learned NS "/" sha256(32 raw bytes)        -> class u8 ('s' or 'h'), day u32
//                                                      [, n u32, n token hashes u64]
//   bayes_meta    NS "/totals"                       -> spam u64, ham u64, tokens u64
//   bayes_meta    NS "/model"                        -> slot u8, bias f32, generation u64,
//                                                      messages u64, weights u64, steps u64
//   bayes_weights NS "/" slot u8 hash(8, big-endian) -> weight f32
// (A learned record without its tokens was written before the logistic model, or had them
// dropped by expiry: it still counts, but the model does not train on it.)
// (day = days since 1970-01-01 UTC by the injected Clock.)
//
// The logistic model (docs/bayes.md):
// - rebuild() trains a fresh model on every learned record that kept its tokens (features:
//   those tokens that are still in the counts table, so expiry bounds the model too), writes
//   it into the unused weight slot and then switches the model record to it, so a reader
//   sees either the old model or the new one, never a mix. With fewer than `min_learned`
//   such records of either class it removes the model instead (classification then falls
//   back to the counts: Fisher).
// - step() is the online update between rebuilds (TELL, the HTTP API, autolearning): up to
//   `max_steps` steps on the live weights until the message is inside the margin.
// - model_weights() answers the live weights of a message's tokens from an in-memory copy of
//   the model (about 12 bytes a weight; loaded once per model generation), or, for a model
//   too large to copy, from the store in one batch.
// - expire() also drops the token lists of all but the newest `max_token_lists` records
//   (their digests and classes stay: a message is still never counted twice).
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "bayes/classifier.h"
#include "bayes/logistic.h"
#include "core/clock.h"
#include "mail/message.h"
#include "state/store.h"

namespace spamward {

enum class MessageClass : uint8_t { ham = 'h', spam = 's' };

enum class LearnOutcome {
  learned,          // counted for the first time
  moved,            // was counted as the other class; now as this one
  already_learned,  // already counted as this class: nothing changed
  forgotten,        // forget(): removed
  not_learned,      // forget(): it was not learned
};

struct ExpiryPolicy {
  uint32_t rare_count = 1;          // tokens in at most this many learned messages ...
  uint32_t stale_days = 60;         // ... not learned again for this many days are removed
  uint64_t max_tokens = 3'000'000;  // then the least useful ones down to this bound
  // Learned messages whose token lists are kept for the model's rebuilds (the newest; ~1.8
  // KiB each, so about 180 MiB at the default).
  uint64_t max_token_lists = 100'000;
};

struct ExpiryResult {
  uint64_t removed_stale = 0;
  uint64_t removed_for_size = 0;
  uint64_t remaining = 0;
  uint64_t token_lists_dropped = 0;
};

struct RebuildOptions {
  LogisticParams params;
  int passes = 20;             // passes over the learned messages (docs/bayes.md)
  uint64_t seed = 1;           // of the shuffled order: a rebuild is reproducible
  int orders = 1;              // models averaged, each from its own order (train_logistic)
  uint64_t min_learned = 200;  // records with tokens of each class, else no model
};

struct RebuildResult {
  bool built = false;  // false: too few records; the model was removed
  uint64_t spam = 0;   // records trained on
  uint64_t ham = 0;
  uint64_t weights = 0;     // non-zero weights written
  uint64_t generation = 0;  // of the new model
};

struct ModelInfo {
  bool present = false;
  uint64_t generation = 0;
  uint64_t messages = 0;  // trained on at the last rebuild
  uint64_t weights = 0;
  uint64_t steps = 0;  // online steps since
};

// The live weights of a message's tokens (0 for tokens without one) and the bias.
struct ModelWeights {
  std::vector<float> weights;
  float bias = 0;
};

class BayesStore {
 public:
  // `ns`: "" for the global database, else a recipient domain (lower-case).
  BayesStore(Store& store, const Clock& clock, std::string ns = {},
             size_t max_buffered_tokens = 1'000'000);
  ~BayesStore();
  BayesStore(const BayesStore&) = delete;
  BayesStore& operator=(const BayesStore&) = delete;

  LearnedTotals totals();
  uint64_t token_count();  // distinct tokens in this namespace

  // The counts of each token, in order (zero for unknown tokens).
  std::vector<TokenCounts> lookup(std::span<const uint64_t> tokens);

  // `digest`: 64 hex digits (learned_message_digest()).
  std::optional<MessageClass> learned_as(std::string_view digest);
  LearnOutcome learn(std::string_view digest, std::span<const uint64_t> tokens, MessageClass cls);
  LearnOutcome forget(std::string_view digest, std::span<const uint64_t> tokens);

  void commit();
  ExpiryResult expire(const ExpiryPolicy& policy);

  ModelInfo model_info();
  // nullopt when there is no model.
  std::optional<ModelWeights> model_weights(std::span<const uint64_t> tokens);
  // Returns how many steps changed the model (0 without a model, or inside the margin).
  int step(std::span<const uint64_t> tokens, MessageClass cls, const LogisticParams& params,
           int max_steps = 10);
  RebuildResult rebuild(const RebuildOptions& options);

  const std::string& ns() const { return ns_; }

 private:
  struct Entry {
    TokenCounts counts;
    uint32_t day = 0;
    bool stored = false;  // present in the Store before this batch
    bool dirty = false;
  };
  struct Learned {  // a buffered learned-message record (cls nullopt: forgotten)
    std::optional<MessageClass> cls;
    std::vector<uint64_t> tokens;
  };
  Entry& entry(uint64_t hash);  // loads into the buffer; mu_ held
  // Loads the tokens not yet in the buffer with one batch read (a round trip per token
  // would dominate learning on Redis); mu_ held.
  void prefetch(std::span<const uint64_t> tokens);
  void load_totals();                                                 // mu_ held
  std::optional<ModelInfo> load_model(uint8_t* slot, float* bias);    // mu_ held
  void store_model(uint8_t slot, float bias, const ModelInfo& info);  // mu_ held
  std::string weight_key(uint8_t slot, uint64_t hash) const;
  std::optional<MessageClass> stored_class(const std::string& key);           // mu_ held
  void apply(std::span<const uint64_t> tokens, MessageClass cls, int delta);  // mu_ held
  void commit_locked();
  uint32_t today() const;

  Store& store_;
  const Clock& clock_;
  std::string ns_;
  size_t max_buffered_;
  std::mutex mu_;
  std::mutex rebuild_mu_;  // taken before mu_, never while holding it
  std::unordered_map<uint64_t, Entry> buffer_;
  // The live model's weights in this process's memory, so that a classification reads only
  // the model record from the store instead of one weight per token. Valid for the model
  // record's (slot, generation, steps): reloaded when another process rebuilt or stepped the
  // model, kept current by this process's own step(). A model of more than
  // kMaxCachedWeights weights is not cached (`complete` false: read from the store).
  struct WeightCache {
    uint8_t slot = 0;
    uint64_t generation = 0;
    uint64_t steps = 0;
    bool complete = false;
    std::unordered_map<uint64_t, float> weights;
  };
  static constexpr size_t kMaxCachedWeights = 4'000'000;
  bool cache_matches(const ModelInfo& info, uint8_t slot) const;  // mu_ held
  void load_cache(const ModelInfo& info, uint8_t slot);           // mu_ held
  std::optional<WeightCache> cache_;                              // mu_ held
  std::unordered_map<std::string, Learned> learned_buffer_;       // key -> record
  bool totals_loaded_ = false;
  bool totals_dirty_ = false;
  LearnedTotals totals_;
  uint64_t token_count_ = 0;
};

// The digest under which a learned message is recorded: SHA-256 (hex) of its Message-ID,
// From, To, Subject and Date values (whitespace collapsed) and its raw body with line ends
// and trailing white space normalised. Fields that relays, filters and mail stores add
// (Received, X-Spam-*, Status, ...) are not part of it, so a copy that went through them is
// the same message.
std::string learned_message_digest(const Message& message);

}  // namespace spamward
