#include "dns/dns_cache.h"

#include "core/strings.h"

#include <algorithm>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace spamward {

namespace asio = boost::asio;

std::string dns_canonical_name(std::string_view name) {
  if (!name.empty() && name.back() == '.') name.remove_suffix(1);
  return to_lower(name);
}

const char* to_string(DnsType type) {
  switch (type) {
    case DnsType::a:
      return "A";
    case DnsType::aaaa:
      return "AAAA";
    case DnsType::ptr:
      return "PTR";
    case DnsType::txt:
      return "TXT";
    case DnsType::mx:
      return "MX";
  }
  return "?";
}

// ---- DnsCache ---------------------------------------------------------------------------

DnsCache::DnsCache(const Clock& clock, DnsCacheOptions options)
    : clock_(clock), options_(options) {}

std::string DnsCache::key_of(std::string_view name, DnsType type) {
  std::string key = dns_canonical_name(name);
  key += '/';
  key += to_string(type);
  return key;
}

std::optional<DnsAnswer> DnsCache::get(std::string_view name, DnsType type) {
  auto it = index_.find(key_of(name, type));
  if (it == index_.end()) return std::nullopt;
  auto entry = it->second;
  TimePoint now = clock_.now();
  if (now >= entry->expires) {
    lru_.erase(entry);
    index_.erase(it);
    return std::nullopt;
  }
  lru_.splice(lru_.begin(), lru_, entry);
  DnsAnswer out = entry->answer;
  auto left_ms = (entry->expires - now).count();
  out.ttl = static_cast<uint32_t>((left_ms + 999) / 1000);
  return out;
}

void DnsCache::put(std::string_view name, DnsType type, const DnsAnswer& answer) {
  if (options_.max_entries == 0) return;
  std::chrono::seconds life{0};
  switch (answer.status) {
    case DnsAnswer::Status::ok:
      life = std::min<std::chrono::seconds>(std::chrono::seconds(answer.ttl), options_.max_ttl);
      break;
    case DnsAnswer::Status::nxdomain:
    case DnsAnswer::Status::nodata:
      // ttl 0 on a negative answer means "no SOA came with it" (FixtureResolver answers look
      // the same): the fixed lifetime applies, so a missing SOA never disables negative caching.
      life = answer.ttl == 0 ? options_.negative_ttl : std::chrono::seconds(answer.ttl);
      life = std::min(life, options_.max_negative_ttl);
      break;
    case DnsAnswer::Status::timeout:
    case DnsAnswer::Status::error:
      return;  // never an answer (DESIGN §1)
  }
  if (life.count() <= 0) return;

  std::string key = key_of(name, type);
  TimePoint expires = clock_.now() + std::chrono::duration_cast<std::chrono::milliseconds>(life);
  if (auto it = index_.find(key); it != index_.end()) {
    it->second->answer = answer;
    it->second->expires = expires;
    lru_.splice(lru_.begin(), lru_, it->second);
    return;
  }
  while (index_.size() >= options_.max_entries && !lru_.empty()) {
    index_.erase(lru_.back().key);
    lru_.pop_back();
  }
  lru_.push_front(Entry{key, answer, expires});
  index_.emplace(std::move(key), lru_.begin());
}

void DnsCache::clear() {
  index_.clear();
  lru_.clear();
}

// ---- CachingResolver --------------------------------------------------------------------

// One upstream query that later askers wait for. The leader cancels `done` once the answer
// is in `result`; cancelling a timer completes every wait on it, so that is the broadcast.
struct CachingResolver::Flight {
  explicit Flight(const asio::any_io_executor& ex) : done(ex) {
    done.expires_at(asio::steady_timer::time_point::max());
  }
  asio::steady_timer done;
  std::optional<DnsAnswer> result;
};

struct CachingResolver::State {
  State(const Clock& clock, Metrics* m, DnsCacheOptions options)
      : cache(clock, options), metrics(m) {}
  DnsCache cache;
  Metrics* metrics;
  std::unordered_map<std::string, std::shared_ptr<Flight>> flights;
};

CachingResolver::CachingResolver(std::unique_ptr<Resolver> upstream, const Clock& clock,
                                 Metrics* metrics, DnsCacheOptions options)
    : state_(std::make_shared<State>(clock, metrics, options)), upstream_(std::move(upstream)) {
  if (metrics) {
    metrics->describe("spamward_dns_cache_hits_total", Metrics::Type::counter,
                      "DNS queries answered from the cache");
    metrics->describe("spamward_dns_coalesced_total", Metrics::Type::counter,
                      "DNS queries that waited for an identical query already under way");
  }
}

CachingResolver::~CachingResolver() {
  // The upstream completes its pending queries as it goes; leaders suspended on it resume
  // later holding `state_` and their Flight, never `this`.
  upstream_.reset();
}

const DnsCache& CachingResolver::cache() const {
  return state_->cache;
}

asio::awaitable<DnsAnswer> CachingResolver::query(std::string name, DnsType type) {
  std::shared_ptr<State> state = state_;  // outlives `this` if we are destroyed meanwhile
  std::string canonical = dns_canonical_name(name);

  if (auto hit = state->cache.get(canonical, type)) {
    if (state->metrics) state->metrics->inc("spamward_dns_cache_hits_total");
    co_return *hit;
  }

  std::string key = canonical;
  key += '/';
  key += to_string(type);

  if (auto it = state->flights.find(key); it != state->flights.end()) {
    std::shared_ptr<Flight> flight = it->second;
    if (state->metrics) state->metrics->inc("spamward_dns_coalesced_total");
    boost::system::error_code ec;
    auto wait = flight->done.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    co_await std::move(wait);
    if (flight->result) co_return *flight->result;
    // Only this waiter's own cancellation gets here: no answer for it.
    co_return DnsAnswer{DnsAnswer::Status::timeout, {}, 0};
  }

  auto ex = co_await asio::this_coro::executor;
  auto flight = std::make_shared<Flight>(ex);
  state->flights.emplace(key, flight);
  DnsAnswer answer;
  try {
    auto upstream_query = upstream_->query(canonical, type);  // named first: GCC PR 100611
    answer = co_await std::move(upstream_query);
  } catch (const std::exception&) {
    answer = DnsAnswer{DnsAnswer::Status::error, {}, 0};
  }
  // From here on only `state` and `flight`: `this` may be gone.
  state->cache.put(canonical, type, answer);
  state->flights.erase(key);
  flight->result = answer;
  flight->done.cancel();
  co_return answer;
}

}  // namespace spamward
