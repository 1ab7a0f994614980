// state_fill: fills a spamward LMDB store with greylist and reputation state at scale, for the
// scale benchmark (issue 4, point 5; bench/run targets spamward_scale*, see bench/README.md).
//
//   state_fill --store DIR [--greylist N] [--reputation N] [--seed S] [--probe N]
//   state_fill --print-greylist N [--seed S]
//
// With --store it writes, through spamward's own GreylistTable and Reputation on the store
// that `spamward serve` opens (open_lmdb_store), so the records are exactly what the daemon
// writes:
// - N greylist triplets (bench/scale_mix.h: greylist_triplet, greylist_state). Each gets its
//   first attempt at its first-seen time; the half that passed get their passing retry 5 to
//   30 minutes later. Keys are built as the daemon's greylist gate builds them (client /24 or
//   /64, normalised sender, lower-cased recipient), so the daemon finds them.
// - N reputation records: offences of N distinct client addresses (scale_mix.h: offender,
//   offence_count, offence_age_s), about 1.3 offences each, recorded in time order over the
//   last 60 days. Every offence bans its address (10 min, growing with repeats); networks with
//   5 offending members are banned as a whole. Most bans have ended by "now"; the offence
//   records (kept until their decayed count falls below 1/64: months) have not.
// A FakeClock is set to each event's time, counted back from the real time at the start, so
// every record is live, with its real expiry, when the daemon opens the store afterwards.
// [greylist] auto_allow_after is 1,000,000, as in bench/run's scale config: no network is
// exempted, so the daemon looks every triplet up.
//
// It then sets the clock to the real time, commits everything, sweeps expired entries, counts
// each table, times the daemon's expensive whole-table passes (the metrics' table count, the
// ban snapshot load) and the per-request lookups on the filled store (--probe N of each), and
// reports fill rates, data.mdb's size and its own peak RSS (VmHWM). The last line is
// machine-readable and starts with "FILL".
//
// --print-greylist N prints the same N triplets with their history instead, one per line:
// client<TAB>sender<TAB>recipient<TAB>first-seen<TAB>last-seen (unix seconds), for
// bench/postgrey_fill, which fills postgrey's database with them.
//
// Exit status: 0 on success, 1 on a store error, 2 on bad usage.

#include <sys/stat.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include "core/clock.h"
#include "core/config.h"
#include "core/ip_address.h"
#include "core/strings.h"
#include "mail/address.h"
#include "scale_mix.h"
#include "state/greylist.h"
#include "state/reputation.h"
#include "state/store.h"

using namespace spamward;
using SteadyClock = std::chrono::steady_clock;

namespace {

struct Options {
  std::string store;
  uint64_t greylist = 0;
  uint64_t reputation = 0;
  uint64_t seed = 20240601;
  uint64_t probe = 100000;
  uint64_t print_greylist = 0;
  bool print = false;
};

[[noreturn]] void usage(int status) {
  std::fputs(
      "usage: state_fill --store DIR [--greylist N] [--reputation N] [--seed S] [--probe N]\n"
      "       state_fill --print-greylist N [--seed S]\n"
      "Fills a spamward LMDB store with N greylist triplets and N reputation records (the\n"
      "scale benchmark's data, bench/scale_mix.h), or prints the greylist triplets for\n"
      "bench/postgrey_fill.\n",
      status == 0 ? stdout : stderr);
  std::exit(status);
}

[[noreturn]] void die_usage(const std::string& message) {
  std::cerr << "state_fill: " << message << "\n";
  usage(2);
}

uint64_t parse_count(std::string_view name, std::string_view text) {
  uint64_t value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || ptr != text.data() + text.size()) {
    die_usage("bad value for --" + std::string(name) + ": '" + std::string(text) + "'");
  }
  return value;
}

Options parse_options(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "-h" || arg == "--help") usage(0);
    if (!arg.starts_with("--")) die_usage("unexpected argument '" + std::string(arg) + "'");
    std::string_view name = arg.substr(2);
    if (i + 1 >= argc) die_usage("--" + std::string(name) + " needs a value");
    std::string_view value = argv[++i];
    if (name == "store") {
      o.store = std::string(value);
    } else if (name == "greylist") {
      o.greylist = parse_count(name, value);
    } else if (name == "reputation") {
      o.reputation = parse_count(name, value);
    } else if (name == "seed") {
      o.seed = parse_count(name, value);
    } else if (name == "probe") {
      o.probe = parse_count(name, value);
    } else if (name == "print-greylist") {
      o.print_greylist = parse_count(name, value);
      o.print = true;
    } else {
      die_usage("unknown option --" + std::string(name));
    }
  }
  if (o.print == !o.store.empty()) die_usage("give either --store DIR or --print-greylist N");
  if (o.reputation > 10'000'000) die_usage("--reputation must be at most 10000000");
  return o;
}

double seconds_since(SteadyClock::time_point start) {
  return std::chrono::duration<double>(SteadyClock::now() - start).count();
}

// A field of /proc/self/status in KiB (VmHWM, RssAnon, RssFile), 0 when absent.
int64_t status_kib(std::string_view field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with(field) && line.size() > field.size() && line[field.size()] == ':') {
      return std::strtoll(line.c_str() + field.size() + 1, nullptr, 10);
    }
  }
  return 0;
}

double mib(int64_t bytes) {
  return static_cast<double>(bytes) / (1024.0 * 1024.0);
}

TimePoint seconds_before(TimePoint now, int64_t seconds) {
  return now - std::chrono::seconds(seconds);
}

IpAddress must_parse(const std::string& text) {
  auto address = IpAddress::parse(text);
  if (!address) {
    std::cerr << "state_fill: scale_mix produced an unparsable address '" << text << "'\n";
    std::exit(1);
  }
  return *address;
}

// The key and trust entity the daemon's greylist gate uses for this triplet (no SPF pass).
GreylistKey daemon_key(const scale_mix::Triplet& t, const GreylistConfig& config) {
  IpAddress client = must_parse(t.client_address);
  GreylistKey key;
  key.network =
      Prefix(client, client.is_v4() ? config.ipv4_prefix : config.ipv6_prefix).to_string();
  key.sender = normalize_sender(t.sender);
  key.recipient = to_lower(t.recipient);
  return key;
}

// A Postfix-style instance id, unique per attempt.
std::string instance_id(uint64_t i, int attempt) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%llx.%llx.%x.0",
                static_cast<unsigned long long>(0x1000 + (i >> 20)),
                static_cast<unsigned long long>(i & 0xfffff), static_cast<unsigned>(attempt));
  return buf;
}

int print_greylist(const Options& o) {
  const int64_t now_s = to_unix_ms(SystemClock().now()) / 1000;
  std::string line;
  for (uint64_t i = 0; i < o.print_greylist; ++i) {
    auto t = scale_mix::greylist_triplet(o.seed, i);
    auto s = scale_mix::greylist_state(o.seed, i);
    const int64_t first = now_s - s.first_age_s;
    const int64_t last = s.passed ? first + s.retry_after_s : first;
    line.clear();
    line += t.client_address;
    line += '\t';
    line += t.sender;
    line += '\t';
    line += t.recipient;
    line += '\t';
    line += std::to_string(first);
    line += '\t';
    line += std::to_string(last);
    line += '\n';
    std::fwrite(line.data(), 1, line.size(), stdout);
  }
  return std::fflush(stdout) == 0 ? 0 : 1;
}

constexpr uint64_t kFlushEvery = 20000;  // bounds the store's queue of uncommitted writes

struct GreylistFill {
  uint64_t attempts = 0;
  uint64_t new_triplets = 0;  // first attempts answered deferred_new (duplicates are not)
  uint64_t passed = 0;        // retries answered passed_now
  double seconds = 0;
};

GreylistFill fill_greylist(Store& store, FakeClock& clock, TimePoint now, const Options& o,
                           const GreylistConfig& config) {
  GreylistTable table(store, clock, config);
  GreylistFill out;
  const auto start = SteadyClock::now();
  std::vector<std::string> entities(1);
  for (uint64_t i = 0; i < o.greylist; ++i) {
    const auto t = scale_mix::greylist_triplet(o.seed, i);
    const auto s = scale_mix::greylist_state(o.seed, i);
    const GreylistKey key = daemon_key(t, config);
    entities[0] = key.network;
    const TimePoint first = seconds_before(now, s.first_age_s);
    clock.set(first);
    auto answer = table.attempt(key, entities, instance_id(i, 1));
    ++out.attempts;
    if (answer.outcome == GreylistOutcome::deferred_new) ++out.new_triplets;
    if (s.passed) {
      clock.set(first + std::chrono::seconds(s.retry_after_s));
      answer = table.attempt(key, entities, instance_id(i, 2));
      ++out.attempts;
      if (answer.outcome == GreylistOutcome::passed_now) ++out.passed;
    }
    if ((i + 1) % kFlushEvery == 0) store.flush();
    if ((i + 1) % 200000 == 0) {
      std::fprintf(stderr, "state_fill: %llu greylist triplets, %.0f s\n",
                   static_cast<unsigned long long>(i + 1), seconds_since(start));
    }
  }
  store.flush();
  out.seconds = seconds_since(start);
  return out;
}

struct ReputationFill {
  uint64_t offences = 0;
  double seconds = 0;
};

OffenceKind offence_kind(uint64_t h, std::string& detail) {
  switch (h % 20) {
    case 0:
      detail = "trap address hit";
      return OffenceKind::trap;
    case 1:
      detail = std::to_string(3 + (h >> 8) % 5) + " unknown recipients in 10 minutes";
      return OffenceKind::guessing;
    case 2:
    case 3:
    case 4:
    case 5:
      detail = std::to_string(10 + (h >> 8) % 20) + " early retries";
      return OffenceKind::hammering;
    default:
      detail = "score " + std::to_string(15 + (h >> 8) % 20) + ".50";
      return OffenceKind::spam;
  }
}

ReputationFill fill_reputation(Store& store, FakeClock& clock, TimePoint now, const Options& o,
                               const ReputationConfig& config) {
  Reputation reputation(store, clock, config);
  // Every offence, oldest first: escalation and decay depend on the order.
  struct Event {
    int64_t age_s;
    uint32_t offender;
    uint32_t k;
  };
  std::vector<Event> events;
  events.reserve(o.reputation * 13 / 10);
  for (uint64_t j = 0; j < o.reputation; ++j) {
    const int n = scale_mix::offence_count(o.seed, j);
    for (int k = 0; k < n; ++k) {
      events.push_back({scale_mix::offence_age_s(o.seed, j, k), static_cast<uint32_t>(j),
                        static_cast<uint32_t>(k)});
    }
  }
  std::sort(events.begin(), events.end(),
            [](const Event& a, const Event& b) { return a.age_s > b.age_s; });

  ReputationFill out;
  const auto start = SteadyClock::now();
  std::string detail;
  for (size_t e = 0; e < events.size(); ++e) {
    const Event& ev = events[e];
    const IpAddress client = must_parse(scale_mix::offender(o.seed, ev.offender));
    const OffenceKind kind =
        offence_kind(scale_mix::hash(o.seed, 34, uint64_t{ev.offender} * 16 + ev.k), detail);
    clock.set(seconds_before(now, ev.age_s));
    reputation.record_offence(client, kind, detail);
    ++out.offences;
    if ((e + 1) % kFlushEvery == 0) store.flush();
    if ((e + 1) % 200000 == 0) {
      std::fprintf(stderr, "state_fill: %zu offences, %.0f s\n", e + 1, seconds_since(start));
    }
  }
  store.flush();
  out.seconds = seconds_since(start);
  return out;
}

int fill(const Options& o) {
  const TimePoint now = SystemClock().now();
  FakeClock clock(now);
  LmdbOptions lmdb;
  lmdb.path = o.store;
  GreylistConfig greylist_config;
  // As bench/run's scale config: no network is ever exempted from greylisting.
  greylist_config.auto_allow_after = 1'000'000;
  const ReputationConfig reputation_config;

  auto store = open_lmdb_store(lmdb, clock);
  const GreylistFill g = fill_greylist(*store, clock, now, o, greylist_config);
  const ReputationFill r = fill_reputation(*store, clock, now, o, reputation_config);

  // Now: the real time again. What the daemon will see.
  clock.set(SystemClock().now());
  store->flush();
  const int64_t swept = store->sweep_expired();
  // The daemon's sweeper does this every minute: a pass over every table in one write
  // transaction each, here with nothing left to delete.
  auto sweep_start = SteadyClock::now();
  store->sweep_expired();
  const double sweep_ms = seconds_since(sweep_start) * 1000;

  struct Count {
    std::string_view table;
    int64_t entries;
    double ms;
  };
  std::vector<Count> counts;
  for (std::string_view table :
       {"greylist", "greylist_net", "offence", "ban", "rep_net", "rep_clean"}) {
    const auto start = SteadyClock::now();
    const int64_t n = store->count(table);
    counts.push_back({table, n, seconds_since(start) * 1000});
  }
  auto count_of = [&](std::string_view table) {
    for (const auto& c : counts)
      if (c.table == table) return c;
    return Count{table, 0, 0};
  };

  // What the daemon does at start and after every ban change: load every ban in force.
  Reputation reputation(*store, clock, reputation_config);
  auto start = SteadyClock::now();
  const std::vector<Ban> bans = reputation.bans();
  const double snapshot_ms = seconds_since(start) * 1000;
  const auto permanent =
      std::count_if(bans.begin(), bans.end(), [](const Ban& b) { return b.permanent; });
  const auto network =
      std::count_if(bans.begin(), bans.end(), [](const Ban& b) { return !b.target.is_host(); });

  // The per-request store work of the daemon on this store, without the server around it:
  // a greylist lookup of a stored triplet (peek: nothing written), and the reputation check
  // (the ban snapshot, then the offence record), for random stored triplets and offenders.
  GreylistTable table(*store, clock, greylist_config);
  std::vector<std::string> entities(1);
  double greylist_per_s = 0, reputation_per_s = 0;
  uint64_t found = 0;
  if (o.probe > 0 && o.greylist > 0) {
    start = SteadyClock::now();
    for (uint64_t p = 0; p < o.probe; ++p) {
      const uint64_t i = scale_mix::hash(o.seed, 40, p) % o.greylist;
      const GreylistKey key = daemon_key(scale_mix::greylist_triplet(o.seed, i), greylist_config);
      entities[0] = key.network;
      auto answer = table.attempt(key, entities, "probe", /*peek=*/true);
      if (answer.outcome != GreylistOutcome::deferred_new) ++found;
    }
    greylist_per_s = static_cast<double>(o.probe) / seconds_since(start);
  }
  uint64_t offenders_banned = 0, offenders_known = 0;
  if (o.probe > 0 && o.reputation > 0) {
    start = SteadyClock::now();
    for (uint64_t p = 0; p < o.probe; ++p) {
      const uint64_t j = scale_mix::hash(o.seed, 41, p) % o.reputation;
      const IpAddress client = must_parse(scale_mix::offender(o.seed, j));
      if (reputation.ban_for(client)) {
        ++offenders_banned;
      } else if (reputation.offence_count(client) >= 0.5) {
        ++offenders_known;
      }
    }
    reputation_per_s = static_cast<double>(o.probe) / seconds_since(start);
  }
  store.reset();  // closes the environment

  struct stat st {};
  const std::string data = o.store + "/data.mdb";
  if (::stat(data.c_str(), &st) != 0) {
    std::cerr << "state_fill: cannot stat " << data << "\n";
    return 1;
  }
  const int64_t file_bytes = st.st_size;
  const int64_t disk_bytes = static_cast<int64_t>(st.st_blocks) * 512;
  const int64_t hwm_kib = status_kib("VmHWM");
  const int64_t anon_kib = status_kib("RssAnon");
  const int64_t file_kib = status_kib("RssFile");

  const double g_rate = g.seconds > 0 ? static_cast<double>(o.greylist) / g.seconds : 0;
  const double r_rate = r.seconds > 0 ? static_cast<double>(o.reputation) / r.seconds : 0;
  std::printf(
      "greylist:   %llu triplets (%llu new on first attempt, %llu passed on retry), "
      "%llu attempts in %.1f s: %.0f triplets/s\n",
      static_cast<unsigned long long>(o.greylist), static_cast<unsigned long long>(g.new_triplets),
      static_cast<unsigned long long>(g.passed), static_cast<unsigned long long>(g.attempts),
      g.seconds, g_rate);
  std::printf("reputation: %llu offenders, %llu offences in %.1f s: %.0f offenders/s\n",
              static_cast<unsigned long long>(o.reputation),
              static_cast<unsigned long long>(r.offences), r.seconds, r_rate);
  std::printf("swept %lld expired entries; live entries:", static_cast<long long>(swept));
  for (const auto& c : counts)
    std::printf(" %.*s %lld", static_cast<int>(c.table.size()), c.table.data(),
                static_cast<long long>(c.entries));
  std::printf("\n");
  std::printf(
      "bans in force: %zu (%ld permanent, %ld of networks); loading them (the daemon "
      "does at start and after each ban change): %.0f ms\n",
      bans.size(), static_cast<long>(permanent), static_cast<long>(network), snapshot_ms);
  std::printf(
      "counting the greylist table (the daemon's table gauge, every 10 s): %.0f ms; "
      "offence: %.0f ms; a sweep with nothing to delete (the store does one every minute): "
      "%.0f ms\n",
      count_of("greylist").ms, count_of("offence").ms, sweep_ms);
  if (o.probe > 0) {
    std::printf(
        "lookups in process: greylist %.0f/s (%llu of %llu found), reputation %.0f/s "
        "(%llu of %llu offenders banned, %llu more with offences)\n",
        greylist_per_s, static_cast<unsigned long long>(found),
        static_cast<unsigned long long>(o.greylist ? o.probe : 0), reputation_per_s,
        static_cast<unsigned long long>(offenders_banned),
        static_cast<unsigned long long>(o.reputation ? o.probe : 0),
        static_cast<unsigned long long>(offenders_known));
  }
  std::printf(
      "data.mdb: %.1f MiB (%.1f MiB on disk); peak RSS %.1f MiB (now %.1f MiB anonymous, "
      "%.1f MiB file-backed)\n",
      mib(file_bytes), mib(disk_bytes), static_cast<double>(hwm_kib) / 1024,
      static_cast<double>(anon_kib) / 1024, static_cast<double>(file_kib) / 1024);
  std::printf(
      "FILL greylist=%llu greylist_s=%.1f greylist_per_s=%.0f reputation=%llu offences=%llu "
      "reputation_s=%.1f reputation_per_s=%.0f greylist_entries=%lld greylist_net_entries=%lld "
      "offence_entries=%lld ban_entries=%lld rep_net_entries=%lld bans_live=%zu "
      "bans_permanent=%ld bans_network=%ld snapshot_ms=%.0f count_greylist_ms=%.0f "
      "count_offence_ms=%.0f sweep_ms=%.0f probe_greylist_per_s=%.0f probe_reputation_per_s=%.0f "
      "data_mdb_bytes=%lld data_mdb_disk_bytes=%lld peak_rss_kib=%lld\n",
      static_cast<unsigned long long>(o.greylist), g.seconds, g_rate,
      static_cast<unsigned long long>(o.reputation), static_cast<unsigned long long>(r.offences),
      r.seconds, r_rate, static_cast<long long>(count_of("greylist").entries),
      static_cast<long long>(count_of("greylist_net").entries),
      static_cast<long long>(count_of("offence").entries),
      static_cast<long long>(count_of("ban").entries),
      static_cast<long long>(count_of("rep_net").entries), bans.size(),
      static_cast<long>(permanent), static_cast<long>(network), snapshot_ms,
      count_of("greylist").ms, count_of("offence").ms, sweep_ms, greylist_per_s, reputation_per_s,
      static_cast<long long>(file_bytes), static_cast<long long>(disk_bytes),
      static_cast<long long>(hwm_kib));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse_options(argc, argv);
  if (o.print) return print_greylist(o);
  try {
    return fill(o);
  } catch (const StoreError& e) {
    std::cerr << "state_fill: " << e.what() << "\n";
    return 1;
  }
}
