// BayesStore: the learned Bayes data on the Store (state/store.h): per token the number of
// learned spam and ham messages that had it and the day it was last learned; the totals of
// learned messages; and one record per learned message, by digest, with its class.
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
//   bayes_meta    NS "/totals"                       -> spam u64, ham u64, tokens u64
// (day = days since 1970-01-01 UTC by the injected Clock.)
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
};

struct ExpiryResult {
  uint64_t removed_stale = 0;
  uint64_t removed_for_size = 0;
  uint64_t remaining = 0;
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

  const std::string& ns() const { return ns_; }

 private:
  struct Entry {
    TokenCounts counts;
    uint32_t day = 0;
    bool stored = false;  // present in the Store before this batch
    bool dirty = false;
  };
  Entry& entry(uint64_t hash);  // loads into the buffer; mu_ held
  void load_totals();           // mu_ held
  std::optional<MessageClass> stored_class(const std::string& key);           // mu_ held
  void apply(std::span<const uint64_t> tokens, MessageClass cls, int delta);  // mu_ held
  void commit_locked();
  uint32_t today() const;

  Store& store_;
  const Clock& clock_;
  std::string ns_;
  size_t max_buffered_;
  std::mutex mu_;
  std::unordered_map<uint64_t, Entry> buffer_;
  std::unordered_map<std::string, std::optional<MessageClass>> learned_buffer_;  // key -> class
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
