// Admin allow/deny lists (state/admin_lists.h) and their checks (checks/admin_lists_check.h).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <filesystem>
#include <set>

#include "checks/admin_lists_check.h"
#include "state/admin_lists.h"
#include "test_support.h"

using namespace spamward;
using namespace std::chrono_literals;

namespace {

using namespace spamward::test;

// ---- Entries ----

TEST(AdminListsEntry, NormalisesEntries) {
  auto text = [](const char* e) { return parse_list_entry(e).text; };
  EXPECT_EQ(text("192.0.2.7"), "192.0.2.7");
  EXPECT_EQ(text(" 192.0.2.77/24 "), "192.0.2.0/24");  // host bits cleared, blanks trimmed
  EXPECT_EQ(text("192.0.2.7/32"), "192.0.2.7");
  EXPECT_EQ(text("2001:DB8:0::1/64"), "2001:db8::/64");
  EXPECT_EQ(text("[2001:db8::1]"), "2001:db8::1");
  EXPECT_EQ(text("::ffff:192.0.2.1"), "192.0.2.1");  // v4-mapped folded
  EXPECT_EQ(text("::ffff:10.0.0.0/104"), "10.0.0.0/8");
  EXPECT_EQ(text("@Example.ORG"), "@example.org");
  EXPECT_EQ(text("@example.org."), "@example.org");
  EXPECT_EQ(text("John.Doe+tag@Example.org"), "john.doe+tag@example.org");
  EXPECT_EQ(parse_list_entry("10.0.0.0/8").type, ListEntryKey::Type::network);
  EXPECT_EQ(parse_list_entry("@a.example").type, ListEntryKey::Type::domain);
  EXPECT_EQ(parse_list_entry("u@a.example").type, ListEntryKey::Type::address);
}

TEST(AdminListsEntry, RefusesInvalidEntriesSayingWhy) {
  for (const char* bad : {"", "  ", "1.2.3", "192.0.2.1/33", "2001:db8::/129", "@", "user@",
                          "@exa mple.org", "a b@example.org", "<a@example.org>", "@a..example",
                          "@-", "x@y@example.org", "not an entry"}) {
    EXPECT_THROW(parse_list_entry(bad), ListEntryError) << bad;
  }
  try {
    parse_list_entry("example.org");
    FAIL();
  } catch (const ListEntryError& e) {
    EXPECT_NE(std::string(e.what()).find("@example.org"), std::string::npos) << e.what();
  }
}

// ---- Lists over a store ----

class AdminListsTest : public testing::Test {
 protected:
  FakeClock clock_;
  std::unique_ptr<Store> store_ = make_memory_store(clock_);
  AdminLists lists_{*store_, clock_, 0ms};
};

TEST_F(AdminListsTest, MatchesClientsByAddressAndNetwork) {
  lists_.add(ListKind::deny, "192.0.2.0/24", "");
  lists_.add(ListKind::deny, "198.51.100.7", "");
  lists_.add(ListKind::deny, "2001:db8::/32", "");
  lists_.add(ListKind::allow, "203.0.113.0/24", "");
  EXPECT_EQ(lists_.match_client(ListKind::deny, ip("192.0.2.200")), "192.0.2.0/24");
  EXPECT_EQ(lists_.match_client(ListKind::deny, ip("::ffff:192.0.2.5")), "192.0.2.0/24");
  EXPECT_EQ(lists_.match_client(ListKind::deny, ip("198.51.100.7")), "198.51.100.7");
  EXPECT_EQ(lists_.match_client(ListKind::deny, ip("198.51.100.8")), std::nullopt);
  EXPECT_EQ(lists_.match_client(ListKind::deny, ip("2001:db8:ffff::1")), "2001:db8::/32");
  EXPECT_EQ(lists_.match_client(ListKind::deny, ip("2001:db9::1")), std::nullopt);
  EXPECT_EQ(lists_.match_client(ListKind::deny, ip("203.0.113.1")), std::nullopt);  // other list
  EXPECT_EQ(lists_.match_client(ListKind::allow, ip("203.0.113.1")), "203.0.113.0/24");
  // An IPv4 network never matches an IPv6 client with the same leading bytes.
  EXPECT_EQ(lists_.match_client(ListKind::deny, ip("c000:200::1")), std::nullopt);
  // The most specific entry is reported.
  lists_.add(ListKind::deny, "192.0.2.128/25", "");
  EXPECT_EQ(lists_.match_client(ListKind::deny, ip("192.0.2.200")), "192.0.2.128/25");
  EXPECT_EQ(lists_.match_client(ListKind::deny, ip("192.0.2.1")), "192.0.2.0/24");
  lists_.add(ListKind::deny, "0.0.0.0/0", "");
  EXPECT_EQ(lists_.match_client(ListKind::deny, ip("8.8.8.8")), "0.0.0.0/0");
}

TEST_F(AdminListsTest, MatchesSendersCaseInsensitively) {
  lists_.add(ListKind::deny, "@Spam.Example", "");
  lists_.add(ListKind::deny, "bob@other.example", "");
  EXPECT_EQ(lists_.match_sender(ListKind::deny, "Anyone@SPAM.example"), "@spam.example");
  EXPECT_EQ(lists_.match_sender(ListKind::deny, "BOB@other.example"), "bob@other.example");
  EXPECT_EQ(lists_.match_sender(ListKind::deny, "carol@other.example"), std::nullopt);
  EXPECT_EQ(lists_.match_sender(ListKind::deny, "x@sub.spam.example"), std::nullopt);
  EXPECT_EQ(lists_.match_sender(ListKind::deny, ""), std::nullopt);
  EXPECT_EQ(lists_.match_sender(ListKind::deny, "no-at-sign"), std::nullopt);
  EXPECT_EQ(lists_.match_sender(ListKind::allow, "bob@other.example"), std::nullopt);
  // A sender entry never matches a client and vice versa.
  lists_.add(ListKind::deny, "192.0.2.1", "");
  EXPECT_EQ(lists_.match_sender(ListKind::deny, "192.0.2.1"), std::nullopt);
}

TEST_F(AdminListsTest, AddListRemove) {
  EXPECT_EQ(lists_.add(ListKind::allow, "192.0.2.9/24", "backup MX"), "192.0.2.0/24");
  clock_.advance(1h);
  lists_.add(ListKind::allow, "@partner.example", "contract 42");
  auto entries = lists_.list(ListKind::allow);
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0].entry, "192.0.2.0/24");
  EXPECT_EQ(entries[0].comment, "backup MX");
  EXPECT_EQ(entries[0].added, clock_.now() - 1h);
  EXPECT_EQ(entries[1].entry, "@partner.example");
  EXPECT_EQ(entries[1].added, clock_.now());
  EXPECT_TRUE(lists_.list(ListKind::deny).empty());

  EXPECT_TRUE(lists_.match_client(ListKind::allow, ip("192.0.2.1")));
  EXPECT_TRUE(lists_.remove(ListKind::allow, "192.0.2.1/24"));  // any spelling of the entry
  EXPECT_FALSE(lists_.remove(ListKind::allow, "192.0.2.0/24"));
  EXPECT_FALSE(lists_.match_client(ListKind::allow, ip("192.0.2.1")));
  EXPECT_EQ(lists_.list(ListKind::allow).size(), 1u);
  EXPECT_THROW(lists_.add(ListKind::allow, "bogus", ""), ListEntryError);
}

TEST_F(AdminListsTest, EntriesOverlappingANetwork) {
  lists_.add(ListKind::deny, "192.0.2.0/24", "");
  lists_.add(ListKind::deny, "192.0.2.64/26", "");
  lists_.add(ListKind::deny, "198.51.100.1", "");
  lists_.add(ListKind::deny, "@example.org", "");
  auto names = [&](const char* query) {
    std::set<std::string> out;
    for (const auto& e : lists_.entries_overlapping(ListKind::deny, *Prefix::parse(query))) {
      out.insert(e.entry);
    }
    return out;
  };
  EXPECT_EQ(names("192.0.2.70"), (std::set<std::string>{"192.0.2.0/24", "192.0.2.64/26"}));
  EXPECT_EQ(names("192.0.2.1"), (std::set<std::string>{"192.0.2.0/24"}));
  EXPECT_EQ(names("192.0.0.0/16"), (std::set<std::string>{"192.0.2.0/24", "192.0.2.64/26"}));
  EXPECT_EQ(names("198.51.100.0/24"), (std::set<std::string>{"198.51.100.1"}));
  EXPECT_TRUE(names("2001:db8::1").empty());
}

TEST_F(AdminListsTest, SeesAChangeByAnotherInstanceWithinASecond) {
  AdminLists daemon(*store_, clock_);  // the default refresh interval, as `serve` uses
  EXPECT_FALSE(daemon.match_client(ListKind::deny, ip("192.0.2.1")));
  auto start = std::chrono::steady_clock::now();
  lists_.add(ListKind::deny, "192.0.2.1", "");  // e.g. `spamward deny add` in another process
  while (!daemon.match_client(ListKind::deny, ip("192.0.2.1"))) {
    ASSERT_LT(std::chrono::steady_clock::now() - start, 1s) << "change not seen";
    std::this_thread::sleep_for(10ms);
  }
  lists_.remove(ListKind::deny, "192.0.2.1");
  start = std::chrono::steady_clock::now();
  while (daemon.match_client(ListKind::deny, ip("192.0.2.1"))) {
    ASSERT_LT(std::chrono::steady_clock::now() - start, 1s) << "removal not seen";
    std::this_thread::sleep_for(10ms);
  }
}

TEST_F(AdminListsTest, CachesBetweenRefreshes) {
  AdminLists daemon(*store_, clock_, 1h);
  EXPECT_FALSE(daemon.match_client(ListKind::deny, ip("192.0.2.1")));
  lists_.add(ListKind::deny, "192.0.2.1", "");
  // Within the interval the daemon serves its snapshot, without reading the store...
  EXPECT_FALSE(daemon.match_client(ListKind::deny, ip("192.0.2.1")));
  // ...and its own changes are seen at once.
  daemon.add(ListKind::deny, "192.0.2.2", "");
  EXPECT_TRUE(daemon.match_client(ListKind::deny, ip("192.0.2.1")));
  EXPECT_TRUE(daemon.match_client(ListKind::deny, ip("192.0.2.2")));
}

TEST(AdminListsLmdb, AnotherProcessChangeIsSeenWithinASecond) {
  std::string tmpl = testing::TempDir() + "spamward-lists-XXXXXX";
  ASSERT_TRUE(mkdtemp(tmpl.data()));
  LmdbOptions options;
  options.path = tmpl + "/store";
  SystemClock clock;
  {
    // `spamward deny add @spam.example`, forked before this process opens the store.
    ChildProcess cli_process([&] {
      auto s = open_lmdb_store(options, clock);
      AdminLists cli(*s, clock);
      cli.add(ListKind::deny, "@spam.example", "from the CLI");
      return 0;
    });
    auto store = open_lmdb_store(options, clock);
    AdminLists daemon(*store, clock);
    EXPECT_FALSE(daemon.match_sender(ListKind::deny, "x@spam.example"));
    ASSERT_EQ(cli_process.run(), 0);
    auto start = std::chrono::steady_clock::now();
    while (!daemon.match_sender(ListKind::deny, "x@spam.example")) {
      ASSERT_LT(std::chrono::steady_clock::now() - start, 1s) << "change not seen";
      std::this_thread::sleep_for(10ms);
    }
    EXPECT_EQ(daemon.list(ListKind::deny).at(0).comment, "from the CLI");
  }
  std::filesystem::remove_all(tmpl);
}

// ---- Checks ----

std::vector<Symbol> run_check(Check& check, const Transaction& tx) {
  boost::asio::io_context io;
  std::vector<Symbol> result;
  std::exception_ptr error;
  auto awaitable = check.run(tx);
  boost::asio::co_spawn(io, std::move(awaitable),
                        [&](std::exception_ptr e, std::vector<Symbol> symbols) {
                          error = e;
                          result = std::move(symbols);
                        });
  io.run();
  if (error) std::rethrow_exception(error);
  return result;
}

class AdminListsCheck : public testing::Test {
 protected:
  void SetUp() override {
    lists_->add(ListKind::allow, "192.0.2.0/24", "");
    lists_->add(ListKind::deny, "198.51.100.66", "");
    lists_->add(ListKind::deny, "2001:db8:bad::/48", "");
    lists_->add(ListKind::allow, "@partner.example", "");
    lists_->add(ListKind::allow, "ceo@bank.example", "");
    lists_->add(ListKind::deny, "@spam.example", "");
    tx_.client_address = ip("203.0.113.5");
  }

  FakeClock clock_;
  std::unique_ptr<Store> store_ = make_memory_store(clock_);
  std::shared_ptr<AdminLists> lists_ = std::make_shared<AdminLists>(*store_, clock_, 0ms);
  Transaction tx_;
};

TEST_F(AdminListsCheck, ClientChecks) {
  auto allow = make_allowlist_check(lists_);
  auto deny = make_denylist_check(lists_);
  EXPECT_EQ(allow->stage(), Stage::connect);
  EXPECT_EQ(deny->stage(), Stage::connect);
  EXPECT_TRUE(allow->can_only_lower());
  EXPECT_FALSE(deny->can_only_lower());
  EXPECT_EQ(allow->family(), Family::admin);

  EXPECT_TRUE(run_check(*allow, tx_).empty());
  EXPECT_TRUE(run_check(*deny, tx_).empty());

  tx_.client_address = ip("192.0.2.10");
  auto symbols = run_check(*allow, tx_);
  ASSERT_EQ(symbols.size(), 1u);
  EXPECT_EQ(symbols[0].name, "ALLOWLIST");
  EXPECT_EQ(symbols[0].score, -20.0);
  EXPECT_EQ(symbols[0].family, Family::admin);
  EXPECT_EQ(symbols[0].detail, "192.0.2.0/24");
  EXPECT_TRUE(run_check(*deny, tx_).empty());

  tx_.client_address = ip("2001:db8:bad:1::25");
  symbols = run_check(*deny, tx_);
  ASSERT_EQ(symbols.size(), 1u);
  EXPECT_EQ(symbols[0].name, "DENYLIST");
  EXPECT_EQ(symbols[0].score, 20.0);
  EXPECT_EQ(symbols[0].detail, "2001:db8:bad::/48");

  tx_.client_address.reset();  // e.g. a message-only `check`
  EXPECT_TRUE(run_check(*deny, tx_).empty());
}

TEST_F(AdminListsCheck, DenySenderMatchesAsWritten) {
  auto deny = make_denylist_sender_check(lists_);
  EXPECT_EQ(deny->stage(), Stage::mail);
  tx_.sender = "whoever@Spam.Example";  // no SPF, no DKIM: denied all the same
  auto symbols = run_check(*deny, tx_);
  ASSERT_EQ(symbols.size(), 1u);
  EXPECT_EQ(symbols[0].name, "DENYLIST");
  EXPECT_EQ(symbols[0].detail, "@spam.example");
  tx_.sender = "";
  EXPECT_TRUE(run_check(*deny, tx_).empty());
}

TEST_F(AdminListsCheck, AllowSenderNeedsSpfOrDkim) {
  auto spf = make_allowlist_sender_check(lists_);
  auto dkim = make_allowlist_sender_dkim_check(lists_);
  EXPECT_TRUE(spf->can_only_lower());
  EXPECT_TRUE(dkim->can_only_lower());
  EXPECT_EQ(spf->stage(), Stage::rcpt);
  EXPECT_EQ(dkim->stage(), Stage::eom);

  tx_.sender = "anyone@partner.example";
  // Forged: nothing vouches, or something vouches for another domain.
  EXPECT_TRUE(run_check(*spf, tx_).empty());
  EXPECT_TRUE(run_check(*dkim, tx_).empty());
  tx_.spf_pass_domain = "attacker.example";
  tx_.dkim_valid_domains = {"attacker.example", "example"};
  EXPECT_TRUE(run_check(*spf, tx_).empty());
  EXPECT_TRUE(run_check(*dkim, tx_).empty());

  // SPF vouches: the rcpt check emits, the eom check stays silent (no double ALLOWLIST).
  tx_.spf_pass_domain = "Partner.Example";
  auto symbols = run_check(*spf, tx_);
  ASSERT_EQ(symbols.size(), 1u);
  EXPECT_EQ(symbols[0].name, "ALLOWLIST");
  EXPECT_EQ(symbols[0].detail, "@partner.example");
  tx_.dkim_valid_domains = {"partner.example"};
  EXPECT_TRUE(run_check(*dkim, tx_).empty());

  // DKIM alone vouches: only the eom check emits.
  tx_.spf_pass_domain = "";
  EXPECT_TRUE(run_check(*spf, tx_).empty());
  symbols = run_check(*dkim, tx_);
  ASSERT_EQ(symbols.size(), 1u);
  EXPECT_EQ(symbols[0].name, "ALLOWLIST");
  EXPECT_EQ(symbols[0].score, -20.0);

  // A user@domain entry: only that user.
  tx_.sender = "ceo@bank.example";
  tx_.spf_pass_domain = "bank.example";
  EXPECT_EQ(run_check(*spf, tx_).size(), 1u);
  tx_.sender = "intern@bank.example";
  EXPECT_TRUE(run_check(*spf, tx_).empty());
}

TEST_F(AdminListsCheck, FactoryBuildsAllFiveWithDistinctNames) {
  auto checks = make_admin_list_checks(lists_);
  ASSERT_EQ(checks.size(), 5u);
  std::set<std::string_view> names;
  for (const auto& c : checks) names.insert(c->name());
  EXPECT_EQ(names.size(), 5u);
  EXPECT_TRUE(names.contains("allowlist"));
  EXPECT_TRUE(names.contains("denylist"));
}

}  // namespace
