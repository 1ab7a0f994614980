// GreylistGate: the Engine's greylisting step (DESIGN §3.3 [greylist], §3.5; issue 4). It runs
// after the checks, on their symbols, because selective greylisting depends on the score.
//
// For a transaction it decides whether greylisting applies and, if so, asks the
// GreylistTable about each triplet (client network or SPF domain, normalised sender,
// recipient). Greylisting does not apply when:
//   - [greylist] mode is "off", or "selective" and the score is below the greylist threshold;
//   - the verdict without greylisting is already a refusal (tempfail or reject);
//   - the client authenticated, the admin allow list matched (ALLOWLIST), or a DNSWL listed
//     it (DNSWL_*);
//   - the client is on the compatibility allow-list (known pool and bad retriers; matched
//     by network or by the forward-confirmed client name);
//   - the client's network or its SPF domain is auto-allowed (GREYLIST_AUTO_ALLOWED);
//   - the recipient is exempt ([exempt] recipients).
// Otherwise each recipient not yet gated in this transaction is attempted: at the rcpt stage
// the current one, later every recipient of the message (the milter's whole-message
// decision). A deferred triplet emits GREYLIST and marks the transaction deferred: every
// later evaluation of it (the policy server at DATA) defers the whole message, so a message
// is accepted or deferred as a whole. All triplets passing emits GREYLIST_PASSED, and so does
// every later evaluation of the transaction (the milter's DATA and end of message).
//
// Side effects (never when Env::read_only): the table's writes; a hammering triplet records
// a reputation offence (not in dry-run mode: monitor-only never bans).
//
// Errors: a StoreError propagates; the Engine fails open (no greylisting, counted).
#pragma once

#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/symbol.h"
#include "engine/env.h"
#include "engine/greylist_compat.h"
#include "engine/transaction.h"
#include "state/greylist.h"

namespace spamward {

// What one transaction remembers between evaluations (kept in EvaluationState).
struct GreylistProgress {
  std::set<std::string, std::less<>> gated;  // recipients already attempted
  bool deferred = false;                     // one of them was deferred
  TimePoint retry_at;                        // the latest retry time among deferred ones
  std::string passed_detail;                 // GREYLIST_PASSED's detail, once triplets passed
};

struct GreylistDecision {
  bool defer = false;           // the transaction is deferred (now or at an earlier stage)
  std::vector<Symbol> symbols;  // GREYLIST / GREYLIST_PASSED / GREYLIST_AUTO_ALLOWED
  std::string reply_text;       // for a deferral: says when to retry
};

// Reads the compatibility list named by config.greylist.compat_list (or the built-in one).
// Throws ConfigError naming the config file, line and key.
std::shared_ptr<const GreylistCompatList> load_greylist_compat(const Config& config);

class GreylistGate {
 public:
  GreylistGate(const Config& config, const Env& env,
               std::shared_ptr<const GreylistCompatList> compat);

  // `score` and `refused` describe the verdict the checks' symbols give without
  // greylisting; `symbols` are those symbols (for ALLOWLIST / DNSWL_*). `spf_pass_domain` is
  // the domain SPF passed for in this transaction (the SPF check publishes it), if any.
  // `read_only` (also when Env::read_only): only peek, as `spamward check` does.
  GreylistDecision apply(const Transaction& tx, std::string_view spf_pass_domain,
                         const std::vector<Symbol>& symbols, double score, bool refused,
                         GreylistProgress& progress, bool read_only = false);

 private:
  bool matches_exempt_recipient(std::string_view recipient) const;

  const Config& config_;
  Env env_;
  std::shared_ptr<const GreylistCompatList> compat_;
  std::unique_ptr<GreylistTable> table_;
};

}  // namespace spamward
