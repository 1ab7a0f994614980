// Env: every side effect a check or the Engine may have, injected (LevelDB's Env idea), so
// unit tests run on a FakeClock, a FixtureResolver and a memory store.
#pragma once

#include <boost/asio/any_io_executor.hpp>

#include "core/clock.h"
#include "core/metrics.h"
#include "dns/resolver.h"
#include "state/store.h"

namespace spamward {

struct Env {
  const Clock* clock = nullptr;
  Resolver* resolver = nullptr;  // may be null until the DNS issue lands
  Store* store = nullptr;
  Metrics* metrics = nullptr;
  // The daemon's event loop, for background work a check starts on its own (DNSBL health
  // tests at start). Empty in one-shot commands and most tests.
  boost::asio::any_io_executor executor;
};

}  // namespace spamward
