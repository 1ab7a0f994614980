// Reverse DNS (checks/rdns_check.h) and HELO (checks/helo_check.h): the MTA-facts path, the
// lookup path on a FixtureResolver, timeouts (never an answer), the IPv6 cap, the
// dynamic-name heuristic, the HELO rules, and the "home-made server" bound.
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "checks/helo_check.h"
#include "checks/rdns_check.h"
#include "test_support.h"

using namespace spamward;

namespace {

using namespace spamward::test;

// Every query times out, as a dead DNS server's would.
class TimeoutResolver final : public Resolver {
 public:
  int queries = 0;
  boost::asio::awaitable<DnsAnswer> query(std::string, DnsType) override {
    ++queries;
    co_return DnsAnswer{DnsAnswer::Status::timeout, {}, 0};
  }
};

// Runs a check as the Engine does: run_now() first, run() only when it declines.
std::vector<Symbol> run_check(Check& check, const Transaction& tx) {
  if (auto now = check.run_now(tx)) return *now;
  boost::asio::io_context io;
  std::vector<Symbol> result;
  std::exception_ptr error;
  auto task = check.run(tx);
  boost::asio::co_spawn(io, std::move(task), [&](std::exception_ptr e, std::vector<Symbol> r) {
    error = e;
    result = std::move(r);
  });
  io.run();
  if (error) std::rethrow_exception(error);
  return result;
}

std::map<std::string, double> by_name(const std::vector<Symbol>& symbols) {
  std::map<std::string, double> out;
  for (const auto& s : symbols) {
    EXPECT_EQ(s.family, Family::rfc) << s.name;
    EXPECT_FALSE(s.detail.empty()) << s.name;
    out[s.name] += s.score;
  }
  return out;
}

Transaction client(const char* address, std::string client_name = "", std::string reverse_name = "",
                   std::string helo = "") {
  Transaction tx;
  tx.client_address = ip(address);
  tx.client_name = std::move(client_name);
  tx.reverse_client_name = std::move(reverse_name);
  tx.helo = std::move(helo);
  return tx;
}

std::map<std::string, double> rdns(Resolver* resolver, const Transaction& tx) {
  Env env;
  env.resolver = resolver;
  auto check = make_rdns_check(env);
  EXPECT_EQ(check->stage(), Stage::connect);
  EXPECT_EQ(check->family(), Family::rfc);
  return by_name(run_check(*check, tx));
}

std::map<std::string, double> helo(Resolver* resolver, const Transaction& tx,
                                   std::vector<std::string> our_names = {}) {
  Env env;
  env.resolver = resolver;
  auto check = make_helo_check(env, std::move(our_names));
  EXPECT_EQ(check->stage(), Stage::helo);
  EXPECT_EQ(check->family(), Family::rfc);
  return by_name(run_check(*check, tx));
}

using Syms = std::map<std::string, double>;

// ---- rDNS from the MTA's facts ----

TEST(RdnsMtaFacts, ReverseUnknownIsRdnsNone) {
  CountingResolver dns;
  EXPECT_EQ(rdns(&dns, client("192.0.2.10", "unknown", "unknown")), (Syms{{"RDNS_NONE", 1.0}}));
  EXPECT_EQ(dns.queries, 0) << "the MTA's facts are used: no lookup";
}

TEST(RdnsMtaFacts, UnconfirmedPtrIsMismatch) {
  CountingResolver dns;
  EXPECT_EQ(rdns(&dns, client("192.0.2.10", "unknown", "mx.example.net")),
            (Syms{{"FCRDNS_MISMATCH", 0.5}}));
  EXPECT_EQ(dns.queries, 0);
}

TEST(RdnsMtaFacts, ConfirmedNameIsClean) {
  CountingResolver dns;
  EXPECT_EQ(rdns(&dns, client("192.0.2.10", "mx.example.net", "mx.example.net")), Syms{});
  EXPECT_EQ(rdns(nullptr, client("192.0.2.10", "Mail.Example.COM.", "mail.example.com")), Syms{});
  EXPECT_EQ(dns.queries, 0);
}

TEST(RdnsMtaFacts, DynamicNameStillScores) {
  EXPECT_EQ(rdns(nullptr,
                 client("192.0.2.10", "dsl-192-0-2-10.example.net", "dsl-192-0-2-10.example.net")),
            (Syms{{"RDNS_DYNAMIC", 1.0}}));
  // A PTR that does not confirm but looks dynamic: both.
  EXPECT_EQ(rdns(nullptr, client("192.0.2.10", "unknown", "10.2.0.192.pool.example.net")),
            (Syms{{"FCRDNS_MISMATCH", 0.5}, {"RDNS_DYNAMIC", 1.0}}));
}

TEST(RdnsMtaFacts, BracketFormsMeanUnknown) {
  EXPECT_EQ(rdns(nullptr, client("192.0.2.10", "[UNAVAILABLE]", "[UNAVAILABLE]")),
            (Syms{{"RDNS_NONE", 1.0}}));
  EXPECT_EQ(rdns(nullptr, client("192.0.2.10", "[192.0.2.10]", "host.example.net")),
            (Syms{{"FCRDNS_MISMATCH", 0.5}}));
}

TEST(RdnsMtaFacts, OnlyAConfirmedNameIsEnough) {
  CountingResolver dns;
  EXPECT_EQ(rdns(&dns, client("192.0.2.10", "mx.example.net", "")), Syms{});
  EXPECT_EQ(dns.queries, 0);
}

TEST(RdnsMtaFacts, Ipv6MissingReverseScoresAtMostPointOne) {
  EXPECT_EQ(rdns(nullptr, client("2001:db8::25", "unknown", "unknown")),
            (Syms{{"RDNS_NONE", 0.1}}));
}

TEST(RdnsMtaFacts, NothingForAuthenticatedLoopbackOrNoAddress) {
  Transaction tx = client("192.0.2.10", "unknown", "unknown");
  tx.sasl_username = "alice";
  EXPECT_EQ(rdns(nullptr, tx), Syms{});
  EXPECT_EQ(rdns(nullptr, client("127.0.0.1", "unknown", "unknown")), Syms{});
  Transaction none;
  none.reverse_client_name = "unknown";
  EXPECT_EQ(rdns(nullptr, none), Syms{});
}

// ---- rDNS looked up ----

TEST(RdnsLookup, ConfirmedPtrIsClean) {
  CountingResolver dns;
  dns.fixture.set("10.2.0.192.in-addr.arpa", DnsType::ptr, ok({"mx.example.net"}));
  dns.fixture.set("mx.example.net", DnsType::a, ok({"192.0.2.9", "192.0.2.10"}));
  EXPECT_EQ(rdns(&dns, client("192.0.2.10")), Syms{});
  EXPECT_EQ(dns.queries, 2);
}

TEST(RdnsLookup, NoPtrIsRdnsNone) {
  CountingResolver dns;  // the fixture answers NXDOMAIN
  EXPECT_EQ(rdns(&dns, client("192.0.2.10")), (Syms{{"RDNS_NONE", 1.0}}));
  dns.fixture.set("11.2.0.192.in-addr.arpa", DnsType::ptr, {DnsAnswer::Status::nodata, {}, 0});
  EXPECT_EQ(rdns(&dns, client("192.0.2.11")), (Syms{{"RDNS_NONE", 1.0}}));
}

TEST(RdnsLookup, PtrNotResolvingBackIsMismatch) {
  CountingResolver dns;
  dns.fixture.set("10.2.0.192.in-addr.arpa", DnsType::ptr, ok({"mx.example.net."}));
  dns.fixture.set("mx.example.net", DnsType::a, ok({"198.51.100.1"}));
  EXPECT_EQ(rdns(&dns, client("192.0.2.10")), (Syms{{"FCRDNS_MISMATCH", 0.5}}));
  // A PTR name that does not exist at all is a mismatch too.
  dns.fixture.set("12.2.0.192.in-addr.arpa", DnsType::ptr, ok({"gone.example.net"}));
  EXPECT_EQ(rdns(&dns, client("192.0.2.12")), (Syms{{"FCRDNS_MISMATCH", 0.5}}));
}

TEST(RdnsLookup, TriesAtMostThreePtrNames) {
  CountingResolver dns;
  dns.fixture.set("10.2.0.192.in-addr.arpa", DnsType::ptr,
                  ok({"a.example.net", "b.example.net", "c.example.net", "d.example.net"}));
  dns.fixture.set("c.example.net", DnsType::a, ok({"192.0.2.10"}));
  dns.fixture.set("d.example.net", DnsType::a, ok({"192.0.2.10"}));
  EXPECT_EQ(rdns(&dns, client("192.0.2.10")), Syms{}) << "the third name confirms";
  EXPECT_EQ(dns.queries, 4);

  CountingResolver dns2;
  dns2.fixture.set("10.2.0.192.in-addr.arpa", DnsType::ptr,
                   ok({"a.example.net", "b.example.net", "c.example.net", "d.example.net"}));
  dns2.fixture.set("d.example.net", DnsType::a, ok({"192.0.2.10"}));
  EXPECT_EQ(rdns(&dns2, client("192.0.2.10")), (Syms{{"FCRDNS_MISMATCH", 0.5}}))
      << "the fourth name is not tried";
  EXPECT_EQ(dns2.queries, 4);
}

TEST(RdnsLookup, Ipv6UsesAaaaAndTheCap) {
  CountingResolver dns;
  const std::string v6ptr =
      "5.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa";
  dns.fixture.set(v6ptr, DnsType::ptr, ok({"mx6.example.net"}));
  dns.fixture.set("mx6.example.net", DnsType::aaaa, ok({"2001:DB8:0:0::25"}));
  EXPECT_EQ(rdns(&dns, client("2001:db8::25")), Syms{});
  EXPECT_EQ(rdns(&dns, client("2001:db8::26")), (Syms{{"RDNS_NONE", 0.1}}));
}

TEST(RdnsLookup, DynamicPtrFromLookup) {
  CountingResolver dns;
  dns.fixture.set("10.2.0.192.in-addr.arpa", DnsType::ptr, ok({"host-192-0-2-10.dyn.example.net"}));
  dns.fixture.set("host-192-0-2-10.dyn.example.net", DnsType::a, ok({"192.0.2.10"}));
  EXPECT_EQ(rdns(&dns, client("192.0.2.10")), (Syms{{"RDNS_DYNAMIC", 1.0}}));
}

TEST(RdnsLookup, TimeoutIsNotAnAnswer) {
  TimeoutResolver dead;
  EXPECT_EQ(rdns(&dead, client("192.0.2.10")), Syms{});
  EXPECT_EQ(rdns(&dead, client("2001:db8::25")), Syms{});
  EXPECT_EQ(dead.queries, 2);

  // PTR answered, forward lookup times out: no mismatch, but the name's shape still counts.
  class ForwardTimeout final : public Resolver {
   public:
    boost::asio::awaitable<DnsAnswer> query(std::string, DnsType type) override {
      if (type == DnsType::ptr) co_return ok({"10.2.0.192.pool.example.net"});
      co_return DnsAnswer{DnsAnswer::Status::timeout, {}, 0};
    }
  } forward_timeout;
  EXPECT_EQ(rdns(&forward_timeout, client("192.0.2.10")), (Syms{{"RDNS_DYNAMIC", 1.0}}));

  // An error (SERVFAIL) is no answer either.
  FixtureResolver servfail;
  servfail.set("10.2.0.192.in-addr.arpa", DnsType::ptr, {DnsAnswer::Status::error, {}, 0});
  EXPECT_EQ(rdns(&servfail, client("192.0.2.10")), Syms{});
}

TEST(RdnsLookup, NoResolverNoFacts) {
  EXPECT_EQ(rdns(nullptr, client("192.0.2.10")), Syms{});
}

// ---- the dynamic-name heuristic ----

TEST(RdnsDynamicName, Positives) {
  const IpAddress a = ip("192.0.2.10");
  for (const char* name : {
           "192-0-2-10.example.net",                 // dashed octets
           "10.2.0.192.static.example.net",          // reversed, dotted
           "c-192-0-2-10.hsd1.ca.example.net",       //
           "ip192-0-2-10.example.net",               //
           "host192_0_2_10.example.com",             //
           "c000020a.example.net",                   // hex (192.0.2.10 = c0.00.02.0a)
           "ipc000020a.dip.example.de",              //
           "192000002010.example.jp",                // zero-padded
           "dsl-187-22-33-44.example.net",           // keyword + number (other address)
           "pool-71-1-2-3.nycmny.fios.example.net",  //
           "ppp94-1-2-3.home.example.gr",            //
           "cpe-1-2-3-4.cable.example.com",          //
           "dhcp-7-12.example.edu.example.org",      //
           "host-17-22.customer.example.net",        //
           "ip-10-0-0-1.eu-west-1.compute.example",  //
           "user4711.dialup.example.co.uk",          //
           "adsl196-12.example.com",                 //
           "abc12.dynamic.example.net",              //
           "x7.broadband.example.com",               //
           "n1-2.residential.example.net",           //
       }) {
    EXPECT_NE(dynamic_name_reason(name, a), "") << name;
  }
}

TEST(RdnsDynamicName, Negatives) {
  const IpAddress a = ip("192.0.2.10");
  for (const char* name : {
           "mail.example.com",            //
           "mx1.dsl-shop.example",        // keyword in the registered domain
           "mail.dsl-provider.example",   //
           "smtp-out.provider.example",   //
           "mx.cable-tv.example.net",     //
           "smtp2.pool.example.net",      // mail role first: a server in a provider's pool
           "mail7.dsl.example.co.uk",     //
           "dynamic.example.com",         // no host part
           "www.dyn.example.com",         // no per-line number
           "host1.example.net",           // "host" without "-number"
           "ipsum12.example.net",         // "ip" only as a whole token
           "clientele3.example.net",      // a substring is not a label part
           "poolside-2.example.net",      //
           "mx-192-0-2.example.net",      // three octets are not the address
           "192-0-2-11.example.net",      // another address
           "10.2.0.193.in-addr.example",  //
           "o365-mail1.example.com",      //
           "mta-10-2.example.com",        //
           "outbound2.example.com",       //
           "unknown",                     //
           "",                            //
       }) {
    EXPECT_EQ(dynamic_name_reason(name, a), "") << name;
  }
  // IPv6 clients: only the label rule; an address-looking name is not decoded.
  EXPECT_EQ(dynamic_name_reason("2001-db8--25.example.net", ip("2001:db8::25")), "");
  EXPECT_NE(dynamic_name_reason("dyn-2001-db8-25.pool.example.net", ip("2001:db8::25")), "");
}

// ---- HELO ----

TEST(HeloRules, GoodHelosAddNothing) {
  for (const char* h : {"mx.example.net", "MX.Example.NET.", "mail-1.example.co.uk", "[192.0.2.10]",
                        "[IPv6:2001:db8::25]", "[2001:db8::25]", "xn--bcher-kva.example"}) {
    EXPECT_EQ(helo(nullptr, client("192.0.2.10", "", "", h)), Syms{}) << h;
  }
}

TEST(HeloRules, EmptyHeloIsNotGiven) {
  EXPECT_EQ(helo(nullptr, client("192.0.2.10", "", "", "")), Syms{});
  EXPECT_EQ(helo(nullptr, client("192.0.2.10", "", "", "  ")), Syms{});
}

TEST(HeloRules, NotFqdn) {
  for (const char* h :
       {"localhost", "DiskStation", "my_pc.example.com", "-bad.example.com", "a..example.com",
        "1.2.3", "[foo]", "[192.0.2.300]", "exa mple.com", "host.example.com-"}) {
    EXPECT_EQ(helo(nullptr, client("192.0.2.10", "", "", h)), (Syms{{"HELO_NOT_FQDN", 0.5}})) << h;
  }
  EXPECT_TRUE(is_fqdn_hostname("a.b"));
  std::string long_label(64, 'a');
  long_label.append(".example");  // not operator+: GCC 12 warns falsely (-Warray-bounds)
  EXPECT_FALSE(is_fqdn_hostname(long_label));
}

TEST(HeloRules, BareIp) {
  EXPECT_EQ(helo(nullptr, client("192.0.2.10", "", "", "192.0.2.10")),
            (Syms{{"HELO_BARE_IP", 0.5}}));
  EXPECT_EQ(helo(nullptr, client("192.0.2.10", "", "", "2001:db8::25")),
            (Syms{{"HELO_BARE_IP", 0.5}}));
}

TEST(HeloRules, Forged) {
  const std::vector<std::string> ours = {"MX.Local.Example.test", "198.51.100.25",
                                         "[2001:db8:1::25]"};
  EXPECT_EQ(helo(nullptr, client("192.0.2.10", "", "", "mx.local.example.test"), ours),
            (Syms{{"HELO_FORGED", 2.0}}));
  EXPECT_EQ(helo(nullptr, client("192.0.2.10", "", "", "MX.LOCAL.EXAMPLE.TEST."), ours),
            (Syms{{"HELO_FORGED", 2.0}}));
  EXPECT_EQ(helo(nullptr, client("192.0.2.10", "", "", "[198.51.100.25]"), ours),
            (Syms{{"HELO_FORGED", 2.0}}));
  EXPECT_EQ(helo(nullptr, client("192.0.2.10", "", "", "198.51.100.25"), ours),
            (Syms{{"HELO_BARE_IP", 0.5}, {"HELO_FORGED", 2.0}}));
  EXPECT_EQ(helo(nullptr, client("192.0.2.10", "", "", "[IPv6:2001:DB8:1:0::25]"), ours),
            (Syms{{"HELO_FORGED", 2.0}}));
  EXPECT_EQ(helo(nullptr, client("192.0.2.10", "", "", "other.example.test"), ours), Syms{});
  // Our own host (not in trusted) calling itself by its name is not forging.
  EXPECT_EQ(helo(nullptr, client("198.51.100.25", "", "", "mx.local.example.test"), ours), Syms{});
  // The check costs no lookup for a forged name.
  CountingResolver dns;
  EXPECT_EQ(helo(&dns, client("192.0.2.10", "", "", "mx.local.example.test"), ours),
            (Syms{{"HELO_FORGED", 2.0}}));
  EXPECT_EQ(dns.queries, 0);
}

TEST(HeloRules, NoResolveOnNxdomainOnly) {
  CountingResolver dns;
  dns.fixture.set("mx.example.net", DnsType::a, ok({"192.0.2.10"}));
  dns.fixture.set("v6only.example.net", DnsType::a, {DnsAnswer::Status::nodata, {}, 0});
  EXPECT_EQ(helo(&dns, client("192.0.2.10", "", "", "mx.example.net")), Syms{});
  EXPECT_EQ(helo(&dns, client("192.0.2.10", "", "", "v6only.example.net")), Syms{});
  EXPECT_EQ(helo(&dns, client("192.0.2.10", "", "", "nas.fritz.box")),
            (Syms{{"HELO_NO_RESOLVE", 0.3}}));
  EXPECT_EQ(dns.queries, 3);
  // Not looked up: addresses, literals and names that are not FQDNs.
  EXPECT_EQ(helo(&dns, client("192.0.2.10", "", "", "[192.0.2.10]")), Syms{});
  EXPECT_EQ(helo(&dns, client("192.0.2.10", "", "", "nas")), (Syms{{"HELO_NOT_FQDN", 0.5}}));
  EXPECT_EQ(dns.queries, 3);
  TimeoutResolver dead;
  EXPECT_EQ(helo(&dead, client("192.0.2.10", "", "", "nas.fritz.box")), Syms{})
      << "a timeout adds nothing";
  EXPECT_EQ(dead.queries, 1);
}

TEST(HeloRules, NothingForAuthenticatedOrLoopback) {
  Transaction tx = client("192.0.2.10", "", "", "laptop");
  tx.sasl_username = "alice";
  EXPECT_EQ(helo(nullptr, tx), Syms{});
  EXPECT_EQ(helo(nullptr, client("127.0.0.1", "", "", "localhost")), Syms{});
}

// ---- every score soft: a home-made server stays far below `tag` ----

double rdns_helo_sum(Resolver* resolver, const Transaction& tx) {
  double sum = 0;
  for (const auto& [name, score] : rdns(resolver, tx)) sum += score;
  for (const auto& [name, score] : helo(resolver, tx)) sum += score;
  return sum;
}

TEST(RdnsHeloSoft, HomeMadeServerWithBadHeloAndNoReverseStaysBelowThree) {
  // A NAS on a home line: no PTR at all, HELO is its bare name, an address, or a LAN name.
  CountingResolver dns;  // NXDOMAIN for everything: no PTR, LAN name unresolvable
  for (const char* h :
       {"DiskStation", "192.168.1.20", "nas.fritz.box", "[192.168.1.20]", "nas_01"}) {
    Transaction looked_up = client("203.0.113.7", "", "", h);
    double a = rdns_helo_sum(&dns, looked_up);
    EXPECT_GT(a, 0.0) << h;
    EXPECT_LT(a, 3.0) << h;
    Transaction from_mta = client("203.0.113.7", "unknown", "unknown", h);
    double b = rdns_helo_sum(&dns, from_mta);
    EXPECT_LT(b, 3.0) << h;
  }
  // The worst non-forged shape: a dynamic PTR that does not confirm, plus a bad HELO.
  Transaction dyn = client("203.0.113.7", "unknown", "dsl-203-0-113-7.pool.example.net", "nas");
  EXPECT_LT(rdns_helo_sum(nullptr, dyn), 3.0);
}

}  // namespace
