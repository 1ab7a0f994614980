// Env: every side effect a check or the Engine may have, injected (LevelDB's Env idea), so
// unit tests run on a FakeClock, a FixtureResolver and a memory store.
#pragma once

#include <boost/asio/any_io_executor.hpp>

#include "core/clock.h"
#include "core/metrics.h"
#include "dns/resolver.h"
#include "state/reputation.h"
#include "state/store.h"


namespace spamward {

class Bayes;

struct Env {
  const Clock* clock = nullptr;
  Resolver* resolver = nullptr;  // may be null until the DNS issue lands
  Store* store = nullptr;
  Metrics* metrics = nullptr;
  // The daemon's event loop, for background work a check starts on its own (DNSBL health
  // tests at start). Empty in one-shot commands and most tests.
  boost::asio::any_io_executor executor;
  // Offences and bans; outlives config reloads (the daemon owns it). Null: no reputation
  // (bans are not checked, offences not recorded).
  Reputation* reputation = nullptr;
  // Never change state (`spamward check`, tests): greylisting only peeks, offences and clean
  // mail are not recorded.
  bool read_only = false;
  // The Bayes classifier and its databases; outlives config reloads (the daemon owns it).
  // Null: no Bayes check, no autolearning.
  Bayes* bayes = nullptr;
};

}  // namespace spamward
