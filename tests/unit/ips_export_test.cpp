// Ban exports (ips/exporter.h): selection, blocklist file, rbldnsd zones, the nft script,
// a real nftables run in a private network namespace, and ExportService end to end.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nftables/libnftables.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "core/clock.h"
#include "core/metrics.h"
#include "ips/exporter.h"
#include "state/reputation.h"
#include "state/store.h"
#include "test_support.h"

namespace spamward {
namespace {

using namespace std::chrono_literals;
using test::ip;
using ::testing::HasSubstr;
using ::testing::Not;

const TimePoint kNow =
    TimePoint(std::chrono::milliseconds(1'700'000'000'000));  // 2023-11-14T22:13:20Z

Prefix prefix(const char* text) {
  auto p = Prefix::parse(text);
  if (!p) throw std::invalid_argument(text);
  return *p;
}

Ban ban(const char* target, Duration remaining, bool permanent = true, std::string reason = "") {
  Ban b;
  b.target = prefix(target);
  b.since = kNow - 1min;
  b.until = kNow + remaining;
  b.permanent = permanent;
  b.reason = std::move(reason);
  return b;
}

std::vector<std::string> targets(const std::vector<Ban>& bans) {
  std::vector<std::string> out;
  for (const Ban& b : bans) out.push_back(b.target.to_string());
  return out;
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// A fresh directory under /tmp, removed with everything in it at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "spamward-ips-XXXXXX").string();
    if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& entry : std::filesystem::directory_iterator(path_)) {
      out.push_back(entry.path().filename().string());
    }
    std::sort(out.begin(), out.end());
    return out;
  }

 private:
  std::filesystem::path path_;
};

// ---- select_exported ----

TEST(IpsSelect, PermanentModeKeepsOnlyPermanentBans) {
  std::vector<Ban> bans = {ban("192.0.2.1", 10min, true), ban("192.0.2.2", 10min, false),
                           ban("2001:db8::1", 10min, true)};
  EXPECT_EQ(targets(select_exported(bans, "permanent", kNow)),
            (std::vector<std::string>{"192.0.2.1", "2001:db8::1"}));
}

TEST(IpsSelect, AllModeKeepsEveryBan) {
  std::vector<Ban> bans = {ban("192.0.2.1", 10min, true), ban("192.0.2.2", 10min, false)};
  EXPECT_EQ(targets(select_exported(bans, "all", kNow)),
            (std::vector<std::string>{"192.0.2.1", "192.0.2.2"}));
}

TEST(IpsSelect, DropsBansThatHaveEnded) {
  std::vector<Ban> bans = {ban("192.0.2.1", 0ms), ban("192.0.2.2", -5min), ban("192.0.2.3", 1ms)};
  EXPECT_EQ(targets(select_exported(bans, "all", kNow)), (std::vector<std::string>{"192.0.2.3"}));
}

TEST(IpsSelect, NetworkBanHidesTheBansInsideIt) {
  std::vector<Ban> bans = {
      ban("192.0.2.7", 10min),       ban("192.0.2.0/24", 5min),     ban("192.0.3.1", 10min),
      ban("2001:db8:1:2::5", 10min), ban("2001:db8:1::/48", 10min), ban("2001:db8:1:2::/64", 10min),
      ban("2001:db8:2::1", 10min),
  };
  EXPECT_EQ(
      targets(select_exported(bans, "all", kNow)),
      (std::vector<std::string>{"192.0.2.0/24", "192.0.3.1", "2001:db8:1::/48", "2001:db8:2::1"}));
}

TEST(IpsSelect, NetworkBanOutsideTheModeHidesNothing) {
  // A 4xx network ban is not exported in "permanent" mode, so the 5xx address ban inside
  // it must still be.
  std::vector<Ban> bans = {ban("192.0.2.0/24", 10min, false), ban("192.0.2.7", 10min, true)};
  EXPECT_EQ(targets(select_exported(bans, "permanent", kNow)),
            (std::vector<std::string>{"192.0.2.7"}));
}

TEST(IpsSelect, SortsIpv4FirstThenByAddress) {
  std::vector<Ban> bans = {ban("2001:db8::2", 1h), ban("198.51.100.1", 1h), ban("::1", 1h),
                           ban("10.0.0.1", 1h),    ban("192.0.2.0/24", 1h), ban("2001:db8::1", 1h)};
  EXPECT_EQ(targets(select_exported(bans, "all", kNow)),
            (std::vector<std::string>{"10.0.0.1", "192.0.2.0/24", "198.51.100.1", "::1",
                                      "2001:db8::1", "2001:db8::2"}));
}

TEST(IpsSelect, DuplicateTargetKeepsTheLongestBan) {
  std::vector<Ban> bans = {ban("192.0.2.1", 5min), ban("192.0.2.1", 50min)};
  auto out = select_exported(bans, "all", kNow);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].until, kNow + 50min);
}

TEST(IpsSelect, UnknownModeThrows) {
  EXPECT_THROW(select_exported({}, "some", kNow), ExportError);
}

// ---- blocklist file ----

TEST(IpsBlocklistFile, WritesOneTargetPerLineAndReplacesAtomically) {
  TempDir dir;
  auto path = dir.path() / "sub" / "dir" / "banned.txt";  // parents created on demand
  write_blocklist_file(
      path.string(),
      select_exported({ban("2001:db8::1", 1h), ban("192.0.2.0/24", 1h), ban("198.51.100.7", 1h)},
                      "all", kNow));
  EXPECT_EQ(read_file(path), "192.0.2.0/24\n198.51.100.7\n2001:db8::1\n");

  write_blocklist_file(path.string(), {ban("203.0.113.9", 1h)});
  EXPECT_EQ(read_file(path), "203.0.113.9\n");
  // Nothing left behind: only the file itself.
  EXPECT_EQ(std::vector<std::string>{"banned.txt"}, [&] {
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(path.parent_path())) {
      names.push_back(e.path().filename().string());
    }
    return names;
  }());

  write_blocklist_file(path.string(), {});
  EXPECT_EQ(read_file(path), "");
}

TEST(IpsBlocklistFile, FailureNamesThePathAndKeepsTheOldFile) {
  TempDir dir;
  auto blocker = dir.path() / "not-a-dir";
  std::ofstream(blocker) << "x";
  try {
    write_blocklist_file((blocker / "banned.txt").string(), {ban("192.0.2.1", 1h)});
    FAIL() << "expected ExportError";
  } catch (const ExportError& e) {
    EXPECT_THAT(e.what(), HasSubstr("cannot write " + (blocker / "banned.txt").string() + ": "));
  }

  // A failed rename leaves the old content and no temporary file: the target is a
  // non-empty directory here, which rename(2) refuses to replace.
  auto busy = dir.path() / "busy";
  std::filesystem::create_directories(busy / "inside");
  EXPECT_THROW(write_blocklist_file(busy.string(), {ban("192.0.2.1", 1h)}), ExportError);
  EXPECT_EQ(dir.names(), (std::vector<std::string>{"busy", "not-a-dir"}));
}

// ---- rbldnsd ----

TEST(IpsRbldnsd, WritesIp4setAndIp6trieDatasets) {
  TempDir dir;
  auto zones = dir.path() / "rbldnsd";
  std::vector<Ban> bans = select_exported(
      {ban("192.0.2.0/24", 1h, true, "network: 5 offending addresses"),
       ban("198.51.100.7", 1h, true, ""), ban("203.0.113.5", 1h, true, "spam: $1 cost\nnext line"),
       ban("2001:db8:1::/48", 1h, true, "network: 5 offending networks"),
       ban("2001:db8:9::1", 1h, true, "spam: score 17.2")},
      "all", kNow);
  write_rbldnsd_zones(zones.string(), bans, kNow);

  EXPECT_EQ(read_file(zones / "spamward.ip4set"),
            "# spamward bans (rbldnsd ip4set), generated 2023-11-14T22:13:20Z; rewritten whole "
            "on every change\n"
            ":127.0.0.2:Banned by spamward: $\n"
            "192.0.2.0/24 :127.0.0.2:Banned by spamward: network: 5 offending addresses\n"
            "198.51.100.7\n"
            "203.0.113.5 :127.0.0.2:Banned by spamward: spam: _1 cost_next line\n");
  EXPECT_EQ(read_file(zones / "spamward.ip6trie"),
            "# spamward bans (rbldnsd ip6trie), generated 2023-11-14T22:13:20Z; rewritten whole "
            "on every change\n"
            ":127.0.0.2:Banned by spamward: $\n"
            "2001:db8:1::/48 :127.0.0.2:Banned by spamward: network: 5 offending networks\n"
            "2001:db8:9::1 :127.0.0.2:Banned by spamward: spam: score 17.2\n");
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(zones)) {
    names.push_back(e.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"spamward.ip4set", "spamward.ip6trie"}));
}

TEST(IpsRbldnsd, LongReasonIsBounded) {
  TempDir dir;
  write_rbldnsd_zones(dir.path().string(), {ban("192.0.2.1", 1h, true, std::string(1000, 'x'))},
                      kNow);
  std::string text = read_file(dir.path() / "spamward.ip4set");
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) EXPECT_LT(line.size(), 255u) << line;
}

// ---- nftables: table spec and script ----

TEST(NftablesExporter, RejectsBadTableSpecs) {
  for (const char* bad :
       {"", "bridge spamward", "netdev spamward", "inet ", "inet 1abc", "inet a-b", "inet a;b",
        "inet a b", "inet spam}ward", "inet aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" /* 33 */,
        "INET spamward", " spamward", "inet _x"}) {
    EXPECT_THROW(NftablesExporter{bad}, ExportError) << '"' << bad << '"';
  }
  for (const char* good : {"spamward", "inet spamward", "ip filter", "ip6 t_1",
                           "inet aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" /* 32 */}) {
    EXPECT_NO_THROW(NftablesExporter{good}) << '"' << good << '"';
  }
}

TEST(NftablesExporter, ScriptResynchronisesBothSetsInOneBuffer) {
  NftablesExporter nft("inet spamward");
  std::vector<Ban> bans = {ban("192.0.2.0/24", 600s), ban("198.51.100.7", 1500ms),
                           ban("2001:db8::/64", 1ms)};
  EXPECT_EQ(nft.script(bans, kNow),
            "add table inet spamward\n"
            "add set inet spamward banned4 { type ipv4_addr; flags interval,timeout; }\n"
            "add set inet spamward banned6 { type ipv6_addr; flags interval,timeout; }\n"
            "flush set inet spamward banned4\n"
            "flush set inet spamward banned6\n"
            "add element inet spamward banned4 { 192.0.2.0/24 timeout 600s, 198.51.100.7 "
            "timeout 2s }\n"
            "add element inet spamward banned6 { 2001:db8::/64 timeout 1s }\n");
}

TEST(NftablesExporter, BareNameMeansInetAndEmptySetsAreOnlyFlushed) {
  NftablesExporter nft("spamward");
  EXPECT_EQ(nft.script({}, kNow),
            "add table inet spamward\n"
            "add set inet spamward banned4 { type ipv4_addr; flags interval,timeout; }\n"
            "add set inet spamward banned6 { type ipv6_addr; flags interval,timeout; }\n"
            "flush set inet spamward banned4\n"
            "flush set inet spamward banned6\n");
}

TEST(NftablesExporter, SingleFamilyTablesGetOnlyTheirSet) {
  std::vector<Ban> bans = {ban("192.0.2.1", 10s), ban("2001:db8::1", 10s)};
  std::string v4 = NftablesExporter("ip filter").script(bans, kNow);
  EXPECT_THAT(v4, HasSubstr("add element ip filter banned4 { 192.0.2.1 timeout 10s }"));
  EXPECT_THAT(v4, Not(HasSubstr("banned6")));
  EXPECT_THAT(v4, Not(HasSubstr("2001:db8")));
  std::string v6 = NftablesExporter("ip6 filter").script(bans, kNow);
  EXPECT_THAT(v6, HasSubstr("add element ip6 filter banned6 { 2001:db8::1 timeout 10s }"));
  EXPECT_THAT(v6, Not(HasSubstr("banned4")));
}

TEST(NftablesExporter, TimeoutsStayWithinWhatNftAccepts) {
  std::string script =
      NftablesExporter("inet spamward").script({ban("192.0.2.1", 24h * 3650)}, kNow);
  EXPECT_THAT(script, HasSubstr("192.0.2.1 timeout 31536000s }"));
}

TEST(NftablesExporter, LargeSetsAreChunked) {
  std::vector<Ban> bans;
  for (uint32_t i = 0; i < 2500; ++i) {
    bans.push_back(ban("10.0.0.0", 1h));
    bans.back().target = Prefix(IpAddress::v4(0x0a000000u + i), 32);
  }
  std::string script = NftablesExporter("inet spamward").script(bans, kNow);
  size_t statements = 0;
  for (size_t at = 0; (at = script.find("add element", at)) != std::string::npos; ++at) {
    ++statements;
  }
  EXPECT_EQ(statements, 3u);
  EXPECT_THAT(script, HasSubstr("10.0.9.195 timeout 3600s }\n"));  // the 2500th
}

// ---- nftables for real, in a private network namespace ----

// libnftables' listing of one set (the child's namespace), or "" after printing the error.
std::string list_set(const char* command) {
  nft_ctx* ctx = nft_ctx_new(NFT_CTX_DEFAULT);
  if (!ctx) return "";
  nft_ctx_buffer_output(ctx);
  nft_ctx_buffer_error(ctx);
  std::string out;
  if (nft_run_cmd_from_buffer(ctx, command) == 0) {
    out = nft_ctx_get_output_buffer(ctx);
  } else {
    std::fprintf(stderr, "%s: %s\n", command, nft_ctx_get_error_buffer(ctx));
  }
  nft_ctx_free(ctx);
  return out;
}

// Child exit codes, explained by the parent's assertion.
constexpr int kUnshareFailed = 10;
constexpr int kApplyFailed = 11;
constexpr int kFirstListingWrong = 12;
constexpr int kSecondListingWrong = 13;

TEST(NftablesExporter, AppliesAndResynchronisesRealSets) {
  // Forked first (test_support.h: before any store exists in this process). The child gets
  // a network namespace of its own, so the host's ruleset is never touched.
  test::ChildProcess child([]() -> int {
    if (unshare(CLONE_NEWNET) != 0) {
      std::fprintf(stderr, "unshare(CLONE_NEWNET): %s\n", std::strerror(errno));
      return kUnshareFailed;
    }
    TimePoint now = SystemClock().now();
    auto at = [&](const char* target, Duration remaining) {
      Ban b;
      b.target = prefix(target);
      b.since = now;
      b.until = now + remaining;
      b.permanent = true;
      return b;
    };
    NftablesExporter nft("inet spamward");
    try {
      nft.apply({at("192.0.2.0/24", 10min), at("198.51.100.7", 10min), at("2001:db8::/64", 1h)},
                now);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "first apply: %s\n", e.what());
      return kApplyFailed;
    }
    std::string v4 = list_set("list set inet spamward banned4");
    std::string v6 = list_set("list set inet spamward banned6");
    if (v4.find("192.0.2.0/24") == std::string::npos ||
        v4.find("198.51.100.7") == std::string::npos || v4.find("timeout") == std::string::npos ||
        v6.find("2001:db8::/64") == std::string::npos || v6.find("timeout") == std::string::npos) {
      std::fprintf(stderr, "first listing:\n%s%s", v4.c_str(), v6.c_str());
      return kFirstListingWrong;
    }

    try {
      nft.apply({at("203.0.113.9", 5min)}, now);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "second apply: %s\n", e.what());
      return kApplyFailed;
    }
    v4 = list_set("list set inet spamward banned4");
    v6 = list_set("list set inet spamward banned6");
    if (v4.find("203.0.113.9") == std::string::npos || v4.find("timeout") == std::string::npos ||
        v4.find("192.0.2.0") != std::string::npos || v4.find("198.51.100.7") != std::string::npos ||
        v6.empty() || v6.find("2001:db8") != std::string::npos) {
      std::fprintf(stderr, "second listing:\n%s%s", v4.c_str(), v6.c_str());
      return kSecondListingWrong;
    }
    return 0;
  });
  int rc = child.run();
  ASSERT_NE(rc, kUnshareFailed)
      << "unshare(CLONE_NEWNET) failed: this test needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN); "
         "see the child's stderr above";
  EXPECT_EQ(rc, 0) << "child failed (11: apply threw, 12: first listing wrong, 13: old "
                      "elements survived the resync, 99: exception); see its stderr above";
}

// ---- ExportService ----

ReputationConfig permanent_at_once() {
  ReputationConfig config;
  config.permanent_after = 1;  // the first offence is already a 5xx ban: exported
  return config;
}

TEST(ExportService, ExportNowWritesFileAndZonesAndDropsLiftedBans) {
  TempDir dir;
  FakeClock clock;
  auto store = make_memory_store(clock);
  Reputation reputation(*store, clock, permanent_at_once(), 0ms);
  Metrics metrics;
  IpsConfig config;
  config.blocklist_file = (dir.path() / "banned.txt").string();
  config.rbldnsd_dir = (dir.path() / "zones").string();
  ExportService service(reputation, clock, &metrics, config);

  reputation.record_offence(ip("192.0.2.7"), OffenceKind::spam, "score 17.2");
  reputation.record_offence(ip("2001:db8::7"), OffenceKind::trap, "");
  service.export_now();
  EXPECT_EQ(read_file(dir.path() / "banned.txt"), "192.0.2.7\n2001:db8::7\n");
  EXPECT_THAT(read_file(dir.path() / "zones" / "spamward.ip4set"), HasSubstr("\n192.0.2.7"));
  EXPECT_THAT(read_file(dir.path() / "zones" / "spamward.ip6trie"), HasSubstr("\n2001:db8::7"));
  EXPECT_EQ(metrics.value("spamward_ips_exported_entries"), 2.0);

  reputation.lift(prefix("192.0.2.7"));
  service.export_now();
  EXPECT_EQ(read_file(dir.path() / "banned.txt"), "2001:db8::7\n");

  clock.advance(25h);  // every ban has ended
  service.export_now();
  EXPECT_EQ(read_file(dir.path() / "banned.txt"), "");
  EXPECT_EQ(metrics.value("spamward_ips_exported_entries"), 0.0);
  EXPECT_EQ(metrics.value("spamward_ips_export_failures_total", {{"target", "file"}}), 0.0);
}

TEST(ExportService, PermanentModeSkipsTemporaryBans) {
  TempDir dir;
  FakeClock clock;
  auto store = make_memory_store(clock);
  Reputation reputation(*store, clock, ReputationConfig{}, 0ms);  // first bans are 4xx
  IpsConfig config;
  config.blocklist_file = (dir.path() / "banned.txt").string();
  ExportService service(reputation, clock, nullptr, config);

  reputation.record_offence(ip("192.0.2.7"), OffenceKind::spam, "score 17.2");
  service.export_now();
  EXPECT_EQ(read_file(dir.path() / "banned.txt"), "");

  config.export_mode = "all";
  service.reconfigure(config);
  service.export_now();
  EXPECT_EQ(read_file(dir.path() / "banned.txt"), "192.0.2.7\n");
}

TEST(ExportService, FailuresAreCountedAndThrownTogether) {
  TempDir dir;
  FakeClock clock;
  auto store = make_memory_store(clock);
  Reputation reputation(*store, clock, permanent_at_once(), 0ms);
  Metrics metrics;
  std::ofstream(dir.path() / "file") << "x";
  IpsConfig config;
  config.blocklist_file = (dir.path() / "file" / "banned.txt").string();
  config.rbldnsd_dir = (dir.path() / "file" / "zones").string();
  config.nft_table = "inet bad-name";
  ExportService service(reputation, clock, &metrics, config);
  try {
    service.export_now();
    FAIL() << "expected ExportError";
  } catch (const ExportError& e) {
    EXPECT_THAT(e.what(), HasSubstr("banned.txt"));
    EXPECT_THAT(e.what(), HasSubstr("spamward.ip4set"));
    EXPECT_THAT(e.what(), HasSubstr("bad-name"));
  }
  for (const char* target : {"file", "rbldnsd", "nftables"}) {
    EXPECT_EQ(metrics.value("spamward_ips_export_failures_total", {{"target", target}}), 1.0)
        << target;
  }
}

// Polls `done` for up to 10 s of real time (the service's own thread does the work).
template <typename F>
bool eventually(F done) {
  for (int i = 0; i < 1000; ++i) {
    if (done()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return done();
}

TEST(ExportService, BackgroundThreadExportsChangesAndStopsPromptly) {
  TempDir dir;
  FakeClock clock;
  auto store = make_memory_store(clock);
  Reputation reputation(*store, clock, permanent_at_once(), 0ms);
  IpsConfig config;
  auto file = dir.path() / "banned.txt";
  config.blocklist_file = file.string();
  // The daemon's wiring. The service's own thread may call back (its refresh) while the
  // main thread stops it, hence the atomic pointer.
  std::atomic<ExportService*> wired{nullptr};
  reputation.on_change([&] {
    if (ExportService* s = wired.load()) s->notify();
  });

  std::chrono::steady_clock::time_point stop_requested;
  {
    ExportService service(reputation, clock, nullptr, config, 20ms, 1h);
    wired = &service;
    service.start();
    EXPECT_TRUE(eventually([&] { return std::filesystem::exists(file); }));
    EXPECT_EQ(read_file(file), "");

    reputation.record_offence(ip("192.0.2.7"), OffenceKind::spam, "score 17.2");
    EXPECT_TRUE(eventually([&] { return read_file(file) == "192.0.2.7\n"; })) << read_file(file);

    // The ban ends (the fake clock jumps past it; the service sleeps in real time, so a
    // notify wakes it here — ExpiryTriggersAnExportWithoutAnyNotify covers the timed wake).
    clock.advance(2h);
    service.notify();
    EXPECT_TRUE(eventually([&] { return read_file(file).empty(); })) << read_file(file);

    wired = nullptr;
    stop_requested = std::chrono::steady_clock::now();
    // The period is an hour: the destructor must not wait for it.
  }
  EXPECT_LT(std::chrono::steady_clock::now() - stop_requested, 1s);
}

TEST(ExportService, UnchangedBansAreNotRewrittenUntilThePeriod) {
  TempDir dir;
  FakeClock clock;
  auto store = make_memory_store(clock);
  Reputation reputation(*store, clock, permanent_at_once(), 0ms);
  reputation.record_offence(ip("192.0.2.7"), OffenceKind::spam, "score 17.2");
  IpsConfig config;
  auto file = dir.path() / "banned.txt";
  config.blocklist_file = file.string();
  auto inode = [&] {
    struct stat st {};
    return ::stat(file.c_str(), &st) == 0 ? st.st_ino : 0;
  };
  {
    ExportService service(reputation, clock, nullptr, config, 10ms, 1h);
    service.start();
    ASSERT_TRUE(eventually([&] { return read_file(file) == "192.0.2.7\n"; }));
    auto first = inode();
    service.notify();  // nothing changed: the pass skips the write (a rename would change it)
    std::this_thread::sleep_for(200ms);
    EXPECT_EQ(inode(), first);
  }
  {
    // A short period: the file comes back after someone removed it, with no notify.
    ExportService service(reputation, clock, nullptr, config, 10ms, 100ms);
    service.start();
    ASSERT_TRUE(eventually([&] { return std::filesystem::exists(file); }));
    std::filesystem::remove(file);
    EXPECT_TRUE(eventually([&] { return read_file(file) == "192.0.2.7\n"; }));
  }
}

TEST(ExportService, ExpiryTriggersAnExportWithoutAnyNotify) {
  TempDir dir;
  SystemClock clock;  // expiry is measured in real time here
  auto store = make_memory_store(clock);
  ReputationConfig reputation_config = permanent_at_once();
  reputation_config.ban_base = 300ms;
  Reputation reputation(*store, clock, reputation_config, 0ms);
  IpsConfig config;
  auto file = dir.path() / "banned.txt";
  config.blocklist_file = file.string();
  reputation.record_offence(ip("192.0.2.7"), OffenceKind::spam, "score 17.2");

  ExportService service(reputation, clock, nullptr, config, 20ms, 1h);
  service.start();
  EXPECT_TRUE(eventually([&] { return read_file(file) == "192.0.2.7\n"; })) << read_file(file);
  EXPECT_TRUE(eventually([&] { return read_file(file).empty(); })) << read_file(file);
}

}  // namespace
}  // namespace spamward
