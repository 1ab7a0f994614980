// DMARC (auth/dmarc.h, checks/dmarc_check.h) and Authentication-Results
// (auth/authentication_results.h): record parsing and its limits, organisational domains by the
// Public Suffix List, alignment, the check's symbols on fixture DNS, and, through an Engine,
// that DMARC_FAIL never refuses mail on its own (DESIGN §1).
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "auth/authentication_results.h"
#include "auth/dmarc.h"
#include "checks/dmarc_check.h"
#include "core/clock.h"
#include "core/config.h"
#include "dns/resolver.h"
#include "engine/engine.h"
#include "test_support.h"

using namespace spamward;
using spamward::test::ok;
using spamward::test::timeout;
namespace asio = boost::asio;

namespace {

// ---- Record parsing ----

DmarcRecord parsed(std::string_view txt) {
  auto p = parse_dmarc_record(txt);
  EXPECT_TRUE(p.record.has_value()) << txt << ": " << p.error;
  return p.record.value_or(DmarcRecord{});
}

std::string error_of(std::string_view txt, const DmarcLimits& limits = {}) {
  auto p = parse_dmarc_record(txt, limits);
  EXPECT_FALSE(p.record.has_value()) << txt;
  return p.error;
}

TEST(DmarcRecord, VersionMustComeFirst) {
  EXPECT_TRUE(is_dmarc_record("v=DMARC1; p=none"));
  EXPECT_TRUE(is_dmarc_record("v=DMARC1"));
  EXPECT_TRUE(is_dmarc_record("V = DMARC1 ;p=none"));
  EXPECT_TRUE(is_dmarc_record("  v=DMARC1;p=none"));
  EXPECT_FALSE(is_dmarc_record("v=DMARC10; p=none"));
  EXPECT_FALSE(is_dmarc_record("v=dmarc1; p=none"));  // the version is case-sensitive
  EXPECT_FALSE(is_dmarc_record("p=none; v=DMARC1"));
  EXPECT_FALSE(is_dmarc_record("v=spf1 -all"));
  EXPECT_FALSE(is_dmarc_record("v=DMARC1 p=none"));
  EXPECT_FALSE(is_dmarc_record(""));
  EXPECT_FALSE(is_dmarc_record("v="));
  EXPECT_NE(error_of("v=spf1 -all"), "");
}

TEST(DmarcRecord, Defaults) {
  DmarcRecord r = parsed("v=DMARC1; p=reject");
  EXPECT_EQ(r.policy, DmarcPolicy::reject);
  EXPECT_FALSE(r.subdomain_policy.has_value());
  EXPECT_EQ(r.dkim_alignment, DmarcAlignment::relaxed);
  EXPECT_EQ(r.spf_alignment, DmarcAlignment::relaxed);
  EXPECT_EQ(r.percent, 100);
  EXPECT_FALSE(r.policy_defaulted);
}

TEST(DmarcRecord, AllTagsAndUnknownOnesIgnored) {
  DmarcRecord r = parsed(
      "v=DMARC1; p=quarantine; sp=reject; adkim=s; aspf=s; pct=50; "
      "rua=mailto:dmarc@example.org; ruf=mailto:f@example.org; fo=1; rf=afrf; ri=86400; "
      "np=reject; x-future=anything");
  EXPECT_EQ(r.policy, DmarcPolicy::quarantine);
  EXPECT_EQ(r.subdomain_policy, DmarcPolicy::reject);
  EXPECT_EQ(r.dkim_alignment, DmarcAlignment::strict);
  EXPECT_EQ(r.spf_alignment, DmarcAlignment::strict);
  EXPECT_EQ(r.percent, 50);
}

TEST(DmarcRecord, CaseWhitespaceAndEmptySegments) {
  DmarcRecord r = parsed("v=DMARC1;;; P = Reject ;\tADKIM=S ; ;");
  EXPECT_EQ(r.policy, DmarcPolicy::reject);
  EXPECT_EQ(r.dkim_alignment, DmarcAlignment::strict);
  EXPECT_EQ(parsed("v=DMARC1;p=QUARANTINE").policy, DmarcPolicy::quarantine);
}

TEST(DmarcRecord, FirstOccurrenceWinsAndMalformedSegmentsAreIgnored) {
  EXPECT_EQ(parsed("v=DMARC1; p=none; p=reject").policy, DmarcPolicy::none);
  DmarcRecord r = parsed("v=DMARC1; garbage; =x; 1a=b; a-b=c; p=reject; pct");
  EXPECT_EQ(r.policy, DmarcPolicy::reject);
  EXPECT_EQ(r.percent, 100);
}

TEST(DmarcRecord, InvalidValuesFallBackToDefaults) {
  DmarcRecord r = parsed("v=DMARC1; p=reject; adkim=x; aspf=; pct=150");
  EXPECT_EQ(r.dkim_alignment, DmarcAlignment::relaxed);
  EXPECT_EQ(r.spf_alignment, DmarcAlignment::relaxed);
  EXPECT_EQ(r.percent, 100);
  EXPECT_EQ(parsed("v=DMARC1; p=reject; pct=abc").percent, 100);
  EXPECT_EQ(parsed("v=DMARC1; p=reject; pct=-1").percent, 100);
  EXPECT_EQ(parsed("v=DMARC1; p=reject; pct=99999999999999999999").percent, 100);
  EXPECT_EQ(parsed("v=DMARC1; p=reject; pct=0").percent, 0);
  EXPECT_EQ(parsed("v=DMARC1; p=reject; pct=007").percent, 7);
}

TEST(DmarcRecord, InvalidPolicyIsIgnoredUnlessRuaIsPresent) {
  EXPECT_EQ(error_of("v=DMARC1"), "no p= tag");
  EXPECT_EQ(error_of("v=DMARC1; p=bogus"), "invalid p= value");
  EXPECT_EQ(error_of("v=DMARC1; p=reject; sp=bogus"), "invalid sp= value");
  EXPECT_NE(error_of("v=DMARC1; p=bogus; rua=nonsense"), "");
  EXPECT_NE(error_of("v=DMARC1; p=bogus; rua=mailto:"), "");
  // RFC 7489 §6.6.3: with a valid rua=, act as if p=none.
  for (const char* txt :
       {"v=DMARC1; p=bogus; rua=mailto:d@example.org", "v=DMARC1; rua=junk, mailto:d@example.org",
        "v=DMARC1; p=reject; sp=bogus; rua=https://example.org/r"}) {
    DmarcRecord r = parsed(txt);
    EXPECT_EQ(r.policy, DmarcPolicy::none) << txt;
    EXPECT_EQ(r.subdomain_policy, DmarcPolicy::none) << txt;
    EXPECT_TRUE(r.policy_defaulted) << txt;
  }
}

TEST(DmarcRecord, Limits) {
  std::string longest = "v=DMARC1; p=reject; rua=mailto:";
  longest += std::string(2048 - longest.size() - 12, 'a') + "@example.org";
  ASSERT_EQ(longest.size(), 2048u);
  EXPECT_TRUE(parse_dmarc_record(longest).record.has_value());
  EXPECT_NE(error_of(longest + "x").find("longer than 2048"), std::string::npos);

  std::string tags = "v=DMARC1; p=reject";  // 2 tags
  for (int i = 0; i < 30; ++i) tags += "; x" + std::to_string(i) + "=1";
  EXPECT_TRUE(parse_dmarc_record(tags).record.has_value());  // 32 tags
  EXPECT_NE(error_of(tags + "; y=1").find("more than 32 tags"), std::string::npos);
  // Malformed segments count against the limit too: they cost parsing all the same.
  EXPECT_NE(error_of(tags + "; junk").find("more than 32 tags"), std::string::npos);

  DmarcLimits small;
  small.max_record = 20;
  small.max_tags = 2;
  EXPECT_NE(error_of("v=DMARC1; p=reject; sp=none", small), "");
  EXPECT_TRUE(parse_dmarc_record("v=DMARC1; p=reject", small).record.has_value());

  // Hostile bytes are just bytes.
  std::string nul("v=DMARC1; p=reject\0; sp=none", 28);
  EXPECT_NO_THROW(parse_dmarc_record(nul));
  EXPECT_NO_THROW(parse_dmarc_record(std::string(100000, ';')));
}

TEST(DmarcRecord, EffectivePolicy) {
  DmarcRecord r = parsed("v=DMARC1; p=reject; sp=none");
  EXPECT_EQ(effective_policy(r, false), DmarcPolicy::reject);
  EXPECT_EQ(effective_policy(r, true), DmarcPolicy::none);
  DmarcRecord no_sp = parsed("v=DMARC1; p=quarantine");
  EXPECT_EQ(effective_policy(no_sp, true), DmarcPolicy::quarantine);
  // pct < 100: the next lower policy.
  EXPECT_EQ(effective_policy(parsed("v=DMARC1; p=reject; pct=50"), false), DmarcPolicy::quarantine);
  EXPECT_EQ(effective_policy(parsed("v=DMARC1; p=quarantine; pct=0"), false), DmarcPolicy::none);
  EXPECT_EQ(effective_policy(parsed("v=DMARC1; p=none; pct=10"), false), DmarcPolicy::none);
}

// ---- Organisational domain and alignment ----

TEST(DmarcOrgDomain, PublicSuffixList) {
  if (std::filesystem::exists("/usr/share/publicsuffix/public_suffix_list.dafsa")) {
    EXPECT_EQ(public_suffix_source(), "psl_latest");
  }
  EXPECT_NE(public_suffix_source(), "none");
  EXPECT_EQ(organizational_domain("example.co.uk"), "example.co.uk");
  EXPECT_EQ(organizational_domain("mail.example.co.uk"), "example.co.uk");
  EXPECT_EQ(organizational_domain("a.b.example.com"), "example.com");
  EXPECT_EQ(organizational_domain("example.com"), "example.com");
  EXPECT_EQ(organizational_domain("A.B.Example.COM."), "example.com");
  // A public suffix itself has no other organisational domain.
  EXPECT_EQ(organizational_domain("co.uk"), "co.uk");
  EXPECT_EQ(organizational_domain("com"), "com");
  // The private section counts (as in OpenDMARC).
  EXPECT_EQ(organizational_domain("a.foo.blogspot.com"), "foo.blogspot.com");
  EXPECT_EQ(organizational_domain(""), "");
}

TEST(DmarcAlignment, StrictAndRelaxed) {
  auto strict = DmarcAlignment::strict;
  auto relaxed = DmarcAlignment::relaxed;
  EXPECT_TRUE(dmarc_aligned("example.org", "Example.ORG.", strict));
  EXPECT_FALSE(dmarc_aligned("mail.example.org", "example.org", strict));
  EXPECT_TRUE(dmarc_aligned("mail.example.org", "example.org", relaxed));
  EXPECT_TRUE(dmarc_aligned("a.example.co.uk", "b.example.co.uk", relaxed));
  EXPECT_FALSE(dmarc_aligned("example.co.uk", "other.co.uk", relaxed));
  EXPECT_FALSE(dmarc_aligned("co.uk", "example.co.uk", relaxed));
  EXPECT_FALSE(dmarc_aligned("example.org", "example.net", relaxed));
  EXPECT_FALSE(dmarc_aligned("", "", relaxed));
  EXPECT_FALSE(dmarc_aligned("", "example.org", relaxed));
}

// ---- The check ----

std::shared_ptr<Message> message(std::vector<std::pair<std::string, std::string>> fields) {
  auto m = std::make_shared<Message>();
  for (auto& [name, value] : fields) {
    HeaderField h;
    h.name = name;
    h.value = value;
    h.raw = name + ": " + value + "\r\n";
    m->headers.push_back(std::move(h));
  }
  return m;
}

// A well-formed signature (it parses; it would not verify).
const std::string kSignature =
    "v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.org; s=sel; h=from:subject; "
    "bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=dGVzdHNpZ25hdHVyZQ==";

Transaction eom_tx(std::string from = "Alice <alice@example.org>",
                   std::string sender = "bounce@spammer.example") {
  Transaction tx;
  tx.id = "T1";
  tx.stage = Stage::eom;
  tx.client_address = test::ip("192.0.2.1");
  tx.helo = "mx.spammer.example";
  tx.sender = std::move(sender);
  tx.message = message({{"From", std::move(from)}, {"Subject", "hello"}});
  return tx;
}

struct DmarcHarness {
  test::CountingResolver resolver;
  Env env;
  std::unique_ptr<Check> check;
  DmarcHarness() {
    env.resolver = &resolver;
    check = make_dmarc_check(env);
  }
  void record(const std::string& domain, std::vector<std::string> txt) {
    resolver.fixture.set("_dmarc." + domain, DnsType::txt, ok(std::move(txt)));
  }
  void answer(const std::string& domain, DnsAnswer a) {
    resolver.fixture.set("_dmarc." + domain, DnsType::txt, std::move(a));
  }
  std::vector<Symbol> run(const Transaction& tx) {
    if (auto now = check->run_now(tx)) return *now;
    return test::run_sync(check->run(tx));
  }
};

TEST(DmarcCheck, Declaration) {
  DmarcHarness h;
  ASSERT_NE(h.check, nullptr);
  EXPECT_EQ(h.check->name(), "dmarc");
  EXPECT_EQ(h.check->stage(), Stage::eom);
  EXPECT_EQ(h.check->family(), Family::auth);
  EXPECT_TRUE(h.check->reads_published());
  EXPECT_FALSE(h.check->can_only_lower());
  EXPECT_EQ(make_dmarc_check(Env{}), nullptr);  // no resolver, no check
}

TEST(DmarcCheck, PassViaSpf) {
  DmarcHarness h;
  h.record("example.org", {"v=spf1 -all", "v=DMARC1; p=reject"});
  Transaction tx = eom_tx("Alice <alice@example.org>", "alice@mail.example.org");
  tx.spf_pass_domain = "mail.example.org";  // relaxed alignment
  auto s = h.run(tx);
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].name, "DMARC_PASS");
  EXPECT_EQ(s[0].family, Family::auth);
  EXPECT_EQ(s[0].score, 0.0);
  EXPECT_EQ(s[0].detail, "example.org p=reject: SPF aligned");
}

TEST(DmarcCheck, PassViaDkim) {
  DmarcHarness h;
  h.record("example.org", {"v=DMARC1; p=reject"});
  Transaction tx = eom_tx();
  tx.dkim_valid_domains = {"lists.example.net", "example.org"};
  auto s = h.run(tx);
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].name, "DMARC_PASS");
  EXPECT_EQ(s[0].detail, "example.org p=reject: DKIM aligned");
  tx.spf_pass_domain = "example.org";
  tx.sender = "alice@example.org";
  EXPECT_EQ(h.run(tx)[0].detail, "example.org p=reject: SPF and DKIM aligned");
}

TEST(DmarcCheck, FailScoresByPolicyDecreasing) {
  double last = 1e9;
  for (const char* policy : {"reject", "quarantine", "none"}) {
    DmarcHarness h;
    h.record("example.org", {std::string("v=DMARC1; p=") + policy});
    Transaction tx = eom_tx();
    tx.spf_pass_domain = "spammer.example";  // SPF passed, for another domain
    tx.dkim_valid_domains = {"spammer.example"};
    auto s = h.run(tx);
    ASSERT_EQ(s.size(), 1u) << policy;
    EXPECT_EQ(s[0].name, "DMARC_FAIL");
    EXPECT_EQ(s[0].family, Family::auth);
    EXPECT_EQ(s[0].detail,
              std::string("example.org p=") + policy + ": neither SPF nor DKIM aligned");
    EXPECT_LT(s[0].score, last) << policy;
    EXPECT_GT(s[0].score, 0.0) << policy;
    last = s[0].score;
  }
}

TEST(DmarcCheck, FailScores) {
  auto fail_score = [](const std::string& record) {
    DmarcHarness h;
    h.record("example.org", {record});
    auto s = h.run(eom_tx());
    EXPECT_EQ(s.size(), 1u) << record;
    return s.empty() ? -1.0 : s[0].score;
  };
  EXPECT_DOUBLE_EQ(fail_score("v=DMARC1; p=reject"), find_symbol("DMARC_FAIL")->default_score);
  EXPECT_DOUBLE_EQ(fail_score("v=DMARC1; p=quarantine"), 1.0);
  EXPECT_DOUBLE_EQ(fail_score("v=DMARC1; p=none"), 0.3);
  EXPECT_DOUBLE_EQ(fail_score("v=DMARC1; p=reject; pct=50"), 1.0);  // as quarantine
  EXPECT_DOUBLE_EQ(fail_score("v=DMARC1; p=bogus; rua=mailto:r@example.org"), 0.3);
  // The table default stays far below reject on its own.
  Config c;
  EXPECT_LT(find_symbol("DMARC_FAIL")->default_score, c.actions.reject);
}

TEST(DmarcCheck, CapsHoldAgainstOverrides) {
  DmarcHarness h;
  h.record("example.org", {"v=DMARC1; p=quarantine; pct=100"});
  auto s = h.run(eom_tx());
  ASSERT_EQ(s.size(), 1u);
  EXPECT_DOUBLE_EQ(s[0].max_score, 1.0);
  Config c;
  c.scores["DMARC_FAIL"] = 6.0;
  apply_score_overrides(c, s);
  EXPECT_DOUBLE_EQ(s[0].score, 1.0);

  DmarcHarness r;
  r.record("example.org", {"v=DMARC1; p=reject"});
  auto rs = r.run(eom_tx());
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_LT(rs[0].max_score, 0.0);  // p=reject: the override applies as written
  apply_score_overrides(c, rs);
  EXPECT_DOUBLE_EQ(rs[0].score, 6.0);
}

TEST(DmarcCheck, MailingListScoresLittle) {
  DmarcHarness h;
  h.record("example.org", {"v=DMARC1; p=reject"});
  Transaction tx = eom_tx();
  tx.message = message({{"From", "alice@example.org"}, {"List-Id", "<talk.lists.example.net>"}});
  auto s = h.run(tx);
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].name, "DMARC_FAIL");
  EXPECT_DOUBLE_EQ(s[0].score, 0.5);
  EXPECT_EQ(s[0].detail, "example.org p=reject: neither SPF nor DKIM aligned (mailing list)");
}

TEST(DmarcCheck, StrictAlignment) {
  DmarcHarness h;
  h.record("example.org", {"v=DMARC1; p=reject; aspf=s; adkim=s"});
  Transaction tx = eom_tx("alice@example.org", "bounce@mail.example.org");
  tx.spf_pass_domain = "mail.example.org";
  tx.dkim_valid_domains = {"mail.example.org"};
  auto s = h.run(tx);
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].name, "DMARC_FAIL");
  tx.dkim_valid_domains = {"example.org"};
  EXPECT_EQ(h.run(tx)[0].name, "DMARC_PASS");
}

TEST(DmarcCheck, OrganisationalDomainFallbackUsesSp) {
  DmarcHarness h;
  h.record("example.co.uk", {"v=DMARC1; p=reject; sp=quarantine"});
  Transaction tx = eom_tx("alice@news.mail.example.co.uk");
  auto s = h.run(tx);
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].name, "DMARC_FAIL");
  EXPECT_DOUBLE_EQ(s[0].score, 1.0);
  EXPECT_EQ(s[0].detail,
            "news.mail.example.co.uk p=quarantine (policy of example.co.uk): neither SPF nor "
            "DKIM aligned");
  EXPECT_EQ(h.resolver.queries, 2);

  // Without sp=, p= applies to subdomains too.
  DmarcHarness p;
  p.record("example.org", {"v=DMARC1; p=reject"});
  auto ps = p.run(eom_tx("alice@news.example.org"));
  ASSERT_EQ(ps.size(), 1u);
  EXPECT_EQ(ps[0].detail,
            "news.example.org p=reject (policy of example.org): neither SPF nor DKIM aligned");

  // A record at the From domain itself: its p= applies, sp= is for its subdomains.
  DmarcHarness own;
  own.record("news.example.org", {"v=DMARC1; p=none; sp=reject"});
  own.record("example.org", {"v=DMARC1; p=reject"});
  auto os = own.run(eom_tx("alice@news.example.org"));
  ASSERT_EQ(os.size(), 1u);
  EXPECT_EQ(os[0].detail, "news.example.org p=none: neither SPF nor DKIM aligned");
  EXPECT_EQ(own.resolver.queries, 1);

  // A record without v=DMARC1 at the From domain counts as none: fall back.
  DmarcHarness spf_only;
  spf_only.record("news.example.org", {"v=spf1 -all"});
  spf_only.record("example.org", {"v=DMARC1; p=reject"});
  EXPECT_EQ(spf_only.run(eom_tx("alice@news.example.org")).size(), 1u);
  // NODATA likewise.
  DmarcHarness nodata;
  nodata.answer("news.example.org", {DnsAnswer::Status::nodata, {}, 0});
  nodata.record("example.org", {"v=DMARC1; p=reject"});
  EXPECT_EQ(nodata.run(eom_tx("alice@news.example.org")).size(), 1u);
}

TEST(DmarcCheck, PassThroughOrganisationalDomain) {
  DmarcHarness h;
  h.record("example.org", {"v=DMARC1; p=reject"});
  Transaction tx = eom_tx("alice@news.example.org");
  tx.dkim_valid_domains = {"example.org"};
  auto s = h.run(tx);
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].name, "DMARC_PASS");
  EXPECT_EQ(s[0].detail, "news.example.org p=reject (policy of example.org): DKIM aligned");
}

TEST(DmarcCheck, NoRecordNoSymbol) {
  DmarcHarness h;
  EXPECT_TRUE(h.run(eom_tx("alice@news.example.org")).empty());
  EXPECT_EQ(h.resolver.queries, 2);  // _dmarc.news.example.org, _dmarc.example.org
  DmarcHarness org;
  EXPECT_TRUE(org.run(eom_tx("alice@example.org")).empty());
  EXPECT_EQ(org.resolver.queries, 1);  // already the organisational domain
  // A public suffix as From domain: no other place to look.
  DmarcHarness suffix;
  EXPECT_TRUE(suffix.run(eom_tx("alice@co.uk")).empty());
  EXPECT_EQ(suffix.resolver.queries, 1);
}

TEST(DmarcCheck, TimeoutsAreNotAnswers) {
  // A timeout at the From domain: no symbol, and no fallback (it might have had a record).
  DmarcHarness h;
  h.answer("news.example.org", timeout());
  h.record("example.org", {"v=DMARC1; p=reject"});
  EXPECT_TRUE(h.run(eom_tx("alice@news.example.org")).empty());
  EXPECT_EQ(h.resolver.queries, 1);
  // At the organisational domain.
  DmarcHarness org;
  org.answer("example.org", timeout());
  EXPECT_TRUE(org.run(eom_tx("alice@news.example.org")).empty());
  // SERVFAIL and other errors alike.
  DmarcHarness err;
  err.answer("example.org", {DnsAnswer::Status::error, {}, 0});
  EXPECT_TRUE(err.run(eom_tx()).empty());
}

TEST(DmarcCheck, UnusableRecordsEndDiscovery) {
  // Several DMARC records: no DMARC (RFC 7489 §6.6.3), and no fallback.
  DmarcHarness two;
  two.record("news.example.org", {"v=DMARC1; p=reject", "v=DMARC1; p=none"});
  two.record("example.org", {"v=DMARC1; p=reject"});
  EXPECT_TRUE(two.run(eom_tx("alice@news.example.org")).empty());
  EXPECT_EQ(two.resolver.queries, 1);
  // An invalid one likewise.
  DmarcHarness bad;
  bad.record("news.example.org", {"v=DMARC1; p=maybe"});
  bad.record("example.org", {"v=DMARC1; p=reject"});
  EXPECT_TRUE(bad.run(eom_tx("alice@news.example.org")).empty());
}

TEST(DmarcCheck, FromMustNameOneDomain) {
  DmarcHarness h;
  h.record("example.org", {"v=DMARC1; p=reject"});
  h.record("example.net", {"v=DMARC1; p=reject"});
  Transaction tx = eom_tx();
  // Two From fields.
  tx.message = message({{"From", "alice@example.org"}, {"From", "bob@example.org"}});
  EXPECT_TRUE(h.run(tx).empty());
  // Two mailboxes of different domains.
  tx.message = message({{"From", "alice@example.org, bob@example.net"}});
  EXPECT_TRUE(h.run(tx).empty());
  // No From, an invalid one, a group without mailboxes, an address literal, a non-ASCII domain.
  for (const char* from :
       {"", "not an address", "undisclosed:;", "alice@[192.0.2.1]", "alice@exämple.org"}) {
    tx.message = message({{"From", from}});
    EXPECT_TRUE(h.run(tx).empty()) << from;
  }
  tx.message = message({{"Subject", "no From"}});
  EXPECT_TRUE(h.run(tx).empty());
  EXPECT_EQ(h.resolver.queries, 0);
  // Two mailboxes of one domain are judged (RFC 7489 §6.6.1).
  tx.message = message({{"From", "alice@Example.org, \"Bob\" <bob@example.org>"}});
  auto s = h.run(tx);
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].name, "DMARC_FAIL");
}

TEST(DmarcCheck, NothingToJudge) {
  DmarcHarness h;
  h.record("example.org", {"v=DMARC1; p=reject"});
  Transaction tx = eom_tx();
  tx.message = nullptr;  // the policy server
  EXPECT_TRUE(h.run(tx).empty());
  tx = eom_tx();
  tx.sasl_username = "alice";  // our own user submitting
  EXPECT_TRUE(h.run(tx).empty());
  EXPECT_EQ(h.resolver.queries, 0);
}

TEST(DmarcCheck, UnconfirmedAlignedIdentifiersAreNotFailures) {
  DmarcHarness h;
  h.record("example.org", {"v=DMARC1; p=reject"});
  // The envelope sender aligns, yet SPF did not pass: it failed or timed out (SPF_FAIL or
  // SPF_TEMPERROR says which; this check cannot tell).
  EXPECT_TRUE(h.run(eom_tx("alice@example.org", "alice@example.org")).empty());
  EXPECT_TRUE(h.run(eom_tx("alice@example.org", "alice@bounces.example.org")).empty());
  // An aligned DKIM signature that did not verify: broken, or its key lookup timed out.
  Transaction tx = eom_tx();
  tx.message = message({{"DKIM-Signature", kSignature}, {"From", "alice@example.org"}});
  EXPECT_TRUE(h.run(tx).empty());
  // ... unless it is not even well-formed: it could never have passed.
  tx.message =
      message({{"DKIM-Signature", "v=1; d=example.org; junk"}, {"From", "alice@example.org"}});
  auto s = h.run(tx);
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].name, "DMARC_FAIL");
  // A signature of another domain does not matter.
  std::string other = kSignature;
  other.replace(other.find("d=example.org"), 13, "d=example.net");
  tx.message = message({{"DKIM-Signature", other}, {"From", "alice@example.org"}});
  EXPECT_EQ(h.run(tx).size(), 1u);
  // No SPF identity at all (spamd without SMTP facts): nothing to say.
  tx = eom_tx();
  tx.sender.clear();
  tx.helo.clear();
  tx.client_address.reset();
  EXPECT_TRUE(h.run(tx).empty());
}

// When SPF and DKIM said they failed for good (not a timeout), a missing aligned pass is a
// DMARC failure.
TEST(DmarcCheck, DecidedFailuresOfAlignedIdentifiersFail) {
  DmarcHarness h;
  h.record("example.org", {"v=DMARC1; p=reject"});
  Transaction tx = eom_tx("alice@example.org", "alice@example.org");
  EXPECT_TRUE(h.run(tx).empty());  // SPF did not say: unknown
  tx.spf_decided = true;           // SPF_FAIL (or softfail, neutral, none)
  auto s = h.run(tx);
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].name, "DMARC_FAIL");
  // An aligned DKIM signature that did not verify: unknown until DKIM says it failed for good.
  tx = eom_tx();
  tx.message = message({{"DKIM-Signature", kSignature}, {"From", "alice@example.org"}});
  EXPECT_TRUE(h.run(tx).empty());
  tx.dkim_decided = true;  // DKIM_INVALID
  s = h.run(tx);
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].name, "DMARC_FAIL");
  // ... and an aligned pass still passes, whatever else failed.
  tx.dkim_valid_domains = {"example.org"};
  s = h.run(tx);
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].name, "DMARC_PASS");
}

TEST(DmarcCheck, BouncesUseTheHeloIdentity) {
  DmarcHarness h;
  h.record("example.org", {"v=DMARC1; p=reject"});
  Transaction tx = eom_tx("MAILER-DAEMON@example.org", "");
  tx.helo = "mx.spammer.example";
  auto s = h.run(tx);
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].name, "DMARC_FAIL");
  // Our HELO aligns: the SPF check does not publish HELO passes, so it is unknown.
  tx.helo = "mx.example.org";
  EXPECT_TRUE(h.run(tx).empty());
}

// ---- Through the Engine ----

// Stands in for the DKIM check: at eom, says DKIM_VALID for `domain` and publishes it.
class PublishingDkim final : public Check {
 public:
  explicit PublishingDkim(std::string domain) : domain_(std::move(domain)) {}
  std::string_view name() const override { return "dkim"; }
  Stage stage() const override { return Stage::eom; }
  Family family() const override { return Family::auth; }
  asio::awaitable<std::vector<Symbol>> run(const Transaction&) override {
    co_return std::vector<Symbol>{known_symbol("DKIM_VALID", domain_)};
  }
  void publish(const std::vector<Symbol>& emitted, Transaction& tx) const override {
    for (const auto& s : emitted) {
      if (s.name == "DKIM_VALID") tx.dkim_valid_domains = {s.detail};
    }
  }

 private:
  std::string domain_;
};

struct EngineRun {
  Metrics metrics;
  FakeClock clock;
  FixtureResolver resolver;
  Config config;
  EngineRun() {
    config.network.trusted.clear();
    config.engine.stage_deadline = std::chrono::milliseconds(500);
    resolver.set("_dmarc.example.org", DnsType::txt, ok({"v=DMARC1; p=reject"}));
  }
  Verdict evaluate(const Transaction& tx, std::vector<std::unique_ptr<Check>> extra = {}) {
    Env env{&clock, &resolver, nullptr, &metrics, {}};
    env.read_only = true;
    std::vector<std::unique_ptr<Check>> checks;
    // The DMARC check first: the Engine still runs it after the DKIM check publishes.
    checks.push_back(make_dmarc_check(env));
    for (auto& c : extra) checks.push_back(std::move(c));
    Engine engine(std::make_shared<const Config>(config), env, std::move(checks));
    asio::io_context io;
    Verdict out;
    auto body = [&]() -> asio::awaitable<void> {
      auto evaluation = engine.evaluate(tx);
      out = co_await std::move(evaluation);
    };
    auto task = body();
    asio::co_spawn(io, std::move(task), [](std::exception_ptr e) {
      if (e) std::rethrow_exception(e);
    });
    io.run();
    return out;
  }
};

const Symbol* find(const Verdict& v, std::string_view name) {
  for (const auto& s : v.symbols) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

TEST(DmarcEngine, FailAloneIsNeverReject) {
  EngineRun run;
  Verdict v = run.evaluate(eom_tx());
  ASSERT_NE(find(v, "DMARC_FAIL"), nullptr);
  EXPECT_EQ(v.action, Action::accept);
  // Even when an admin scores it past the reject threshold: one family never refuses.
  run.config.scores["DMARC_FAIL"] = 50.0;
  Verdict high = run.evaluate(eom_tx());
  ASSERT_NE(find(high, "DMARC_FAIL"), nullptr);
  EXPECT_GE(high.score, run.config.actions.reject);
  EXPECT_NE(high.action, Action::reject);
  EXPECT_NE(high.action, Action::tempfail);
}

TEST(DmarcEngine, SeesTheDkimResultOfTheSameStage) {
  EngineRun run;
  std::vector<std::unique_ptr<Check>> extra;
  extra.push_back(std::make_unique<PublishingDkim>("example.org"));
  Verdict v = run.evaluate(eom_tx(), std::move(extra));
  ASSERT_NE(find(v, "DKIM_VALID"), nullptr);
  ASSERT_NE(find(v, "DMARC_PASS"), nullptr);
  EXPECT_EQ(find(v, "DMARC_FAIL"), nullptr);
  EXPECT_EQ(find(v, "DMARC_PASS")->detail, "example.org p=reject: DKIM aligned");
}

// ---- Authentication-Results ----

TEST(AuthenticationResults, Renders) {
  std::vector<AuthResult> r = {
      {"spf", "pass", "", {{"smtp", "mailfrom", "example.net"}}},
      {"dkim", "pass", "", {{"header", "d", "example.net"}}},
      {"dmarc", "pass", "", {{"header", "from", "example.net"}}},
  };
  EXPECT_EQ(render_authentication_results("mx.example.org", r),
            "mx.example.org; spf=pass smtp.mailfrom=example.net; dkim=pass header.d=example.net; "
            "dmarc=pass header.from=example.net");
  EXPECT_EQ(render_authentication_results("mx.example.org", {}), "mx.example.org; none");
  std::vector<AuthResult> addr = {{"spf", "fail", "", {{"smtp", "mailfrom", "a.b+c@example.net"}}}};
  EXPECT_EQ(render_authentication_results("mx", addr),
            "mx; spf=fail smtp.mailfrom=a.b+c@example.net");
}

TEST(AuthenticationResults, HostileTextIsQuotedOrDropped) {
  std::vector<AuthResult> r = {
      {"dkim", "fail", "bad \"sig\"\r\nX-Evil: 1", {{"header", "d", "ex ample;\"x\\.org"}}},
      {"SP F\r\n", "Pass;", "", {{"hea der", "d\n", "caf\xc3\xa9.example"}}},
      {"", "pass", "", {}},
      {"dmarc", "\x01", "", {}},
  };
  std::string out = render_authentication_results("host;name", r);
  EXPECT_EQ(out,
            "\"host;name\"; dkim=fail reason=\"bad \\\"sig\\\"??X-Evil: 1\" "
            "header.d=\"ex ample;\\\"x\\\\.org\"; spf=pass header.d=\"caf??.example\"");
  EXPECT_EQ(out.find('\r'), std::string::npos);
  EXPECT_EQ(out.find('\n'), std::string::npos);
  // Long values are cut.
  std::vector<AuthResult> big = {
      {"dmarc", "fail", "", {{"header", "from", std::string(1000, 'a')}}}};
  EXPECT_LT(render_authentication_results("mx", big).size(), 300u);
}

TEST(AuthenticationResults, FromSymbols) {
  std::vector<Symbol> symbols = {
      known_symbol("RDNS_NONE", "no PTR"),
      known_symbol("DMARC_FAIL", "example.org p=reject: neither SPF nor DKIM aligned"),
      known_symbol("DKIM_INVALID",
                   "d=example.org: body hash mismatch; d=lists.example.net: no key; for x"),
      known_symbol("SPF_SOFTFAIL", "mfrom example.net: ~all"),
  };
  EXPECT_EQ(
      render_authentication_results("mx.example.org", authentication_results_from_symbols(symbols)),
      "mx.example.org; spf=softfail smtp.mailfrom=example.net; dkim=fail "
      "reason=\"body hash mismatch\" header.d=example.org; dkim=fail reason=\"no key; for "
      "x\" header.d=lists.example.net; dmarc=fail header.from=example.org");

  std::vector<Symbol> pass = {
      known_symbol("SPF_PASS", "helo mx.example.net: ip4:192.0.2.0/24"),
      known_symbol("DKIM_VALID", "example.net,mail.example.org"),
      known_symbol("DMARC_PASS", "example.net p=none: DKIM aligned"),
  };
  EXPECT_EQ(render_authentication_results("mx", authentication_results_from_symbols(pass)),
            "mx; spf=pass smtp.helo=mx.example.net; dkim=pass header.d=example.net; dkim=pass "
            "header.d=mail.example.org; dmarc=pass header.from=example.net");
  EXPECT_EQ(render_authentication_results(
                "mx", authentication_results_from_symbols(
                          {known_symbol("DKIM_NONE", "x"), known_symbol("SPF_TEMPERROR", "")})),
            "mx; spf=temperror; dkim=none");
  // Details cut short (the fuzzer found "mfrom" alone) or of an unknown shape.
  EXPECT_EQ(render_authentication_results(
                "mx", authentication_results_from_symbols({known_symbol("SPF_FAIL", "mfrom"),
                                                           known_symbol("DKIM_INVALID", "?"),
                                                           known_symbol("DMARC_PASS", "")})),
            "mx; spf=fail; dkim=fail; dmarc=pass");
}

}  // namespace
