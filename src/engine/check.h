// Check: one technique. It runs at one stage, reads the Transaction, may await DNS or the
// store, and emits symbols; it never decides an action and never knows which protocol asked.
//
// Failure contract: a check that throws, or is not done by the stage deadline, adds nothing;
// the Engine counts it in spamward_failopen_total{check=NAME} and logs it. A check whose
// symbols can only lower the score (allow lists, DNSWL, Bayes ham) says so, so that its
// failure caps the verdict at tempfail: mail is never refused for want of its answer.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <optional>
#include <string_view>
#include <vector>

#include "core/symbol.h"
#include "engine/transaction.h"

namespace spamward {

class Check {
 public:
  virtual ~Check() = default;
  virtual std::string_view name() const = 0;
  // The earliest stage at which the facts it needs exist. The Engine runs it once per
  // transaction at the first evaluation at or after that stage; rcpt-stage checks run again
  // for every recipient.
  virtual Stage stage() const = 0;
  virtual Family family() const = 0;
  virtual bool can_only_lower() const { return false; }
  virtual boost::asio::awaitable<std::vector<Symbol>> run(const Transaction& tx) = 0;

  // A check that needs no I/O for this transaction may answer here, synchronously: the
  // Engine calls run_now() first and awaits run() only when it returns nullopt. This saves a
  // coroutine and a deadline timer per check on the hot path. Same failure contract: a
  // throw fails open.
  virtual std::optional<std::vector<Symbol>> run_now(const Transaction& tx) { return std::nullopt; }

  // Facts this check learned that later checks may use (SPF's pass domain, DKIM's valid
  // domains), written into the Engine's working copy of the transaction after run() succeeds.
  // Checks of later stages (and of later evaluations of the same transaction) see them;
  // checks of the same stage run concurrently and do not.
  virtual void publish(const std::vector<Symbol>& emitted, Transaction& tx) const {}

  // True for a check that reads what others of its own stage publish (the allow list's
  // DKIM-vouched sender entries need the DKIM check's valid domains, both at eom). The
  // Engine runs it after the other checks of that stage have finished and published.
  virtual bool reads_published() const { return false; }
};

// A check that never waits (no DNS, no I/O beyond the store): it answers in evaluate(), which
// both run_now() and run() return, so the Engine never spends a coroutine on it.
class SyncCheck : public Check {
 public:
  std::optional<std::vector<Symbol>> run_now(const Transaction& tx) final { return evaluate(tx); }
  boost::asio::awaitable<std::vector<Symbol>> run(const Transaction& tx) final {
    co_return evaluate(tx);
  }

 protected:
  virtual std::vector<Symbol> evaluate(const Transaction& tx) const = 0;
};

}  // namespace spamward
