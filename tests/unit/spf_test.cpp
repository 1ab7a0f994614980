// SPF: record parser and macros (auth/spf_record.h), check_host() limits and edge cases
// (auth/spf.h) on a FixtureResolver, and the SPF check (checks/spf_check.h). The RFC 7208
// conformance suite is in spf_suite_test.cpp.
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <cctype>
#include <string>
#include <vector>

#include "auth/spf.h"
#include "auth/spf_record.h"
#include "checks/spf_check.h"
#include "core/clock.h"
#include "test_support.h"

using namespace spamward;

namespace {

using namespace spamward::test;

SpfResult check(Resolver& dns, const char* client, const std::string& mail_from,
                const std::string& helo = "mx.client.example", SpfOptions options = {}) {
  SpfIdentity id = spf_identity(mail_from, helo);
  auto task = check_host(dns, ip(client), id.domain, id.sender, helo, std::move(options));
  return run_sync(std::move(task));
}

// ---- Record syntax ----

TEST(SpfRecord, VersionMustBeFollowedBySpaceOrEnd) {
  EXPECT_TRUE(is_spf_record("v=spf1"));
  EXPECT_TRUE(is_spf_record("V=SpF1 -all"));
  EXPECT_FALSE(is_spf_record("v=spf10"));
  EXPECT_FALSE(is_spf_record("v=spf1mx"));
  EXPECT_FALSE(is_spf_record("spf2.0/pra -all"));
  EXPECT_FALSE(is_spf_record(""));
}

TEST(SpfRecord, ParsesEveryMechanismWithItsArguments) {
  SpfParse p = parse_spf_record(
      "v=spf1  +a -mx:mail.example.org/24//64 ~ptr:Example.ORG ?ip4:192.0.2.0/24 "
      "ip6:2001:DB8::/32 include:_spf.example.net exists:%{ir}.bl.example all "
      "redirect=_spf.example.com exp=why.%{d} x-future=anything ");
  ASSERT_TRUE(p.record) << p.error;
  const auto& m = p.record->mechanisms;
  ASSERT_EQ(m.size(), 8u);
  EXPECT_EQ(m[0].kind, SpfMechanismKind::a);
  EXPECT_EQ(m[0].qualifier, SpfQualifier::pass);
  EXPECT_EQ(m[0].domain_spec, "");
  EXPECT_EQ(m[1].kind, SpfMechanismKind::mx);
  EXPECT_EQ(m[1].qualifier, SpfQualifier::fail);
  EXPECT_EQ(m[1].domain_spec, "mail.example.org");
  EXPECT_EQ(m[1].cidr4, 24);
  EXPECT_EQ(m[1].cidr6, 64);
  EXPECT_EQ(m[2].qualifier, SpfQualifier::softfail);
  EXPECT_EQ(m[2].domain_spec, "Example.ORG");
  EXPECT_EQ(m[3].kind, SpfMechanismKind::ip4);
  EXPECT_EQ(m[3].qualifier, SpfQualifier::neutral);
  EXPECT_EQ(m[3].cidr4, 24);
  EXPECT_EQ(m[3].network[0], 192);
  EXPECT_EQ(m[3].network[3], 0);
  EXPECT_EQ(m[4].kind, SpfMechanismKind::ip6);
  EXPECT_EQ(m[4].cidr6, 32);
  EXPECT_EQ(m[4].network[0], 0x20);
  EXPECT_EQ(m[4].network[3], 0xb8);
  EXPECT_EQ(m[5].kind, SpfMechanismKind::include);
  EXPECT_EQ(m[6].kind, SpfMechanismKind::exists);
  EXPECT_EQ(m[6].domain_spec, "%{ir}.bl.example");
  EXPECT_EQ(m[7].kind, SpfMechanismKind::all);
  EXPECT_EQ(m[7].text, "all");
  EXPECT_EQ(p.record->redirect, "_spf.example.com");
  EXPECT_EQ(p.record->exp, "why.%{d}");
}

TEST(SpfRecord, DomainSpecMayContainSlashesAndColons) {
  SpfParse p = parse_spf_record("v=spf1 a:foo:bar/baz.example.com a:x.example/16");
  ASSERT_TRUE(p.record) << p.error;
  EXPECT_EQ(p.record->mechanisms[0].domain_spec, "foo:bar/baz.example.com");
  EXPECT_EQ(p.record->mechanisms[0].cidr4, 32);
  EXPECT_EQ(p.record->mechanisms[1].domain_spec, "x.example");
  EXPECT_EQ(p.record->mechanisms[1].cidr4, 16);
}

TEST(SpfRecord, SyntaxErrorsAreReportedWithTheTerm) {
  for (const char* bad : {
           "v=spf1 moo",                                    // unknown mechanism
           "v=spf1 -all.",                                  // junk after all
           "v=spf1 all:x",                                  //
           "v=spf1 a/33",                                   // CIDR out of range
           "v=spf1 a//129",                                 //
           "v=spf1 a/24/64",                                // not a dual CIDR
           "v=spf1 ip4:192.0.2.1/032",                      // leading zero
           "v=spf1 ip4:192.0.2",                            // omitted octet
           "v=spf1 ip4:192.0.02.1",                         // leading zero in an octet
           "v=spf1 ip4:192.0.2.1:25",                       // port
           "v=spf1 ip4:192.0.2.1//32",                      // dual CIDR on ip4
           "v=spf1 ip6:2001:db8::1//64",                    // dual CIDR on ip6
           "v=spf1 ip6::db8::1",                            // malformed address
           "v=spf1 ip4",                                    // no address
           "v=spf1 include",                                // no domain
           "v=spf1 include:",                               //
           "v=spf1 include:x.example/24",                   // CIDR on include
           "v=spf1 exists:x.example/24",                    //
           "v=spf1 ptr/0",                                  //
           "v=spf1 a:museum",                               // no dot before the top label
           "v=spf1 a:192.0.2.1",                            // all-numeric top label
           "v=spf1 a:example.-com",                         // top label starting with a dash
           "v=spf1 redirect=a.example redirect=b.example",  // repeated
           "v=spf1 exp=a.example exp=b.example",            //
           "v=spf1 exp=",                                   // empty domain-spec
           "v=spf1 redirect=-all",                          //
           "v=spf1 1up=foo",                   // modifier name must start with a letter
           "v=spf1 =all",                      //
           "v=spf1 foo=%x",                    // bad macro in an unknown modifier
           "v=spf1 exists:%{r}.example.com",   // r is for explanations only
           "v=spf1 exists:%{d0}.example.com",  // zero parts
           "v=spf1 a:x.example\r -all",        // control character
           "v=spf1 a:\xC3\xA9.example -all",   // non-ASCII
       }) {
    SpfParse p = parse_spf_record(bad);
    EXPECT_FALSE(p.record) << bad;
    EXPECT_FALSE(p.error.empty()) << bad;
  }
  EXPECT_NE(parse_spf_record("v=spf1 ip4:1.2.3.4 moo -all").error.find("moo"), std::string::npos);
}

TEST(SpfRecord, TopLabelMayHaveDashesInside) {
  EXPECT_TRUE(valid_domain_spec("foo.example.xn--zckzah"));
  EXPECT_TRUE(valid_domain_spec("foo.example.com."));
  EXPECT_TRUE(valid_domain_spec("%{d}"));
  EXPECT_TRUE(valid_domain_spec("_spf.%{d2}"));
  EXPECT_FALSE(valid_domain_spec("%{d}."));
  EXPECT_FALSE(valid_domain_spec("foo.example.com-"));
  EXPECT_FALSE(valid_domain_spec(""));
}

// ---- Macros (RFC 7208 §7.4 examples) ----

MacroContext rfc_context(const char* client) {
  MacroContext ctx;
  ctx.sender = "strong-bad@email.example.com";
  ctx.local_part = "strong-bad";
  ctx.sender_domain = "email.example.com";
  ctx.domain = "email.example.com";
  ctx.ip = ip(client);
  ctx.helo = "mx.example.org";
  ctx.receiver = "mx.receiver.example";
  ctx.now_unix = 1'700'000'123;
  return ctx;
}

TEST(SpfMacro, ExpandsTheRfcExamples) {
  MacroContext ctx = rfc_context("192.0.2.3");
  auto x = [&](const char* s) {
    return expand_spf_macros(s, ctx, MacroMode::domain).value_or("<error>");
  };
  EXPECT_EQ(x("%{s}"), "strong-bad@email.example.com");
  EXPECT_EQ(x("%{o}"), "email.example.com");
  EXPECT_EQ(x("%{d}"), "email.example.com");
  EXPECT_EQ(x("%{d4}"), "email.example.com");
  EXPECT_EQ(x("%{d3}"), "email.example.com");
  EXPECT_EQ(x("%{d2}"), "example.com");
  EXPECT_EQ(x("%{d1}"), "com");
  EXPECT_EQ(x("%{dr}"), "com.example.email");
  EXPECT_EQ(x("%{d2r}"), "example.email");
  EXPECT_EQ(x("%{l}"), "strong-bad");
  EXPECT_EQ(x("%{l-}"), "strong.bad");
  EXPECT_EQ(x("%{lr}"), "strong-bad");
  EXPECT_EQ(x("%{lr-}"), "bad.strong");
  EXPECT_EQ(x("%{l1r-}"), "strong");
  EXPECT_EQ(x("%{ir}.%{v}._spf.%{d2}"), "3.2.0.192.in-addr._spf.example.com");
  EXPECT_EQ(x("%{lr-}.lp._spf.%{d2}"), "bad.strong.lp._spf.example.com");
  EXPECT_EQ(x("%{lr-}.lp.%{ir}.%{v}._spf.%{d2}"),
            "bad.strong.lp.3.2.0.192.in-addr._spf.example.com");
  EXPECT_EQ(x("%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}"), "3.2.0.192.in-addr.strong.lp._spf.example.com");
  EXPECT_EQ(x("%{d2}.trusted-domains.example.net"), "example.com.trusted-domains.example.net");
  EXPECT_EQ(x("%{D200}"), "email.example.com");  // more parts than there are: all of them
}

TEST(SpfMacro, Ipv6UsesNibblesAndTheIp6Label) {
  MacroContext ctx = rfc_context("2001:db8::cb01");
  auto got = expand_spf_macros("%{ir}.%{v}._spf.%{d2}", ctx, MacroMode::domain);
  ASSERT_TRUE(got);
  // RFC 7208 §7.4 writes the nibbles in lower case; we give upper case as pyspf does, which
  // DNS treats the same. Compare ignoring case.
  std::string lowered = *got;
  for (char& c : lowered) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  EXPECT_EQ(lowered,
            "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6._spf.example.com");
  EXPECT_EQ(expand_spf_macros("%{c}", ctx, MacroMode::explanation), "2001:db8::cb01");
  EXPECT_EQ(spf_reverse_name(ip("2001:db8::cb01")),
            "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa");
  EXPECT_EQ(spf_reverse_name(ip("192.0.2.3")), "3.2.0.192.in-addr.arpa");
}

TEST(SpfMacro, UpperCaseEscapesAndLiteralEscapes) {
  MacroContext ctx = rfc_context("192.0.2.3");
  ctx.local_part = "~jack&jill=up a/b";
  EXPECT_EQ(expand_spf_macros("%{L}", ctx, MacroMode::domain), "~jack%26jill%3Dup%20a%2Fb");
  EXPECT_EQ(expand_spf_macros("a%%b%_c%-d", ctx, MacroMode::domain), "a%b c%20d");
  EXPECT_EQ(expand_spf_macros("%{l+=/}", ctx, MacroMode::domain), "~jack&jill.up a.b");
}

TEST(SpfMacro, ExplanationOnlyLettersAndSyntaxErrors) {
  MacroContext ctx = rfc_context("192.0.2.3");
  EXPECT_EQ(expand_spf_macros("%{c} %{r} %{t}", ctx, MacroMode::explanation),
            "192.0.2.3 mx.receiver.example 1700000123");
  for (const char* bad :
       {"%{c}", "%{r}", "%{t}", "%{x}", "%{", "%{}", "%", "%x", "a b", "%{d0}", "%{d2q}"}) {
    EXPECT_FALSE(valid_macro_string(bad, MacroMode::domain)) << bad;
    EXPECT_FALSE(expand_spf_macros(bad, ctx, MacroMode::domain)) << bad;
  }
  EXPECT_TRUE(valid_macro_string("spaces are fine here", MacroMode::explanation));
  EXPECT_FALSE(valid_macro_string("tab\there", MacroMode::explanation));
}

TEST(SpfMacro, DetectsThePMacroOnly) {
  EXPECT_TRUE(uses_p_macro("%{p}.example.com"));
  EXPECT_TRUE(uses_p_macro("x.%{P2r}.example.com"));
  EXPECT_FALSE(uses_p_macro("%%{p}.example.com"));  // "%%" is a literal percent
  EXPECT_FALSE(uses_p_macro("%{d}.p.example.com"));
}

TEST(SpfMacro, TargetNamesAreTruncatedFromTheLeftAndValidated) {
  std::string label(60, 'x');
  std::string longname;
  for (int i = 0; i < 5; ++i) longname += label + ".";
  longname += "example.com";  // 5 * 61 + 11 = 316 characters
  auto name = spf_target_name(longname);
  ASSERT_TRUE(name);
  EXPECT_LE(name->size(), 253u);
  EXPECT_TRUE(name->ends_with(".example.com"));
  EXPECT_EQ(name->size() % 61, 11u % 61);  // whole labels were dropped
  EXPECT_EQ(spf_target_name("Mail.Example.COM."), "mail.example.com");
  EXPECT_FALSE(spf_target_name("a..example.com"));
  EXPECT_FALSE(spf_target_name(std::string(64, 'a') + ".example.com"));
  EXPECT_FALSE(spf_target_name(""));
}

// ---- check_host() ----

TEST(SpfCheckHost, IncludeChainPassReportsTheMechanism) {
  CountingResolver dns;
  dns.fixture.set("example.org", DnsType::txt, ok({"v=spf1 include:_spf.example.net -all"}));
  dns.fixture.set("_spf.example.net", DnsType::txt, ok({"v=spf1 ip4:192.0.2.0/24 ~all"}));
  SpfResult r = check(dns, "192.0.2.77", "alice@example.org");
  EXPECT_EQ(r.code, SpfCode::pass);
  EXPECT_EQ(r.mechanism, "include:_spf.example.net");
  EXPECT_EQ(r.domain, "example.org");
  EXPECT_EQ(check(dns, "198.51.100.1", "alice@example.org").code, SpfCode::fail);
}

TEST(SpfCheckHost, DnsTermLimitIsConfigurableAndCountsIncludes) {
  CountingResolver dns;
  dns.fixture.set("example.org", DnsType::txt,
                  ok({"v=spf1 a:a1.example.org a:a2.example.org include:i.example.org -all"}));
  dns.fixture.set("i.example.org", DnsType::txt, ok({"v=spf1 a:a3.example.org ip4:192.0.2.1"}));
  for (const char* n : {"a1.example.org", "a2.example.org", "a3.example.org"}) {
    dns.fixture.set(n, DnsType::a, ok({"198.51.100.9"}));
  }
  SpfOptions three;
  three.max_dns_terms = 3;
  SpfResult r = check(dns, "192.0.2.1", "bob@example.org", "h.example", three);
  EXPECT_EQ(r.code, SpfCode::permerror);
  EXPECT_NE(r.problem.find("DNS-querying"), std::string::npos) << r.problem;
  SpfOptions four;
  four.max_dns_terms = 4;
  EXPECT_EQ(check(dns, "192.0.2.1", "bob@example.org", "h.example", four).code, SpfCode::pass);
}

TEST(SpfCheckHost, VoidLookupLimit) {
  CountingResolver dns;
  dns.fixture.set("example.org", DnsType::txt,
                  ok({"v=spf1 a:n1.example.org exists:n2.example.org mx:n3.example.org ?all"}));
  SpfResult r = check(dns, "192.0.2.1", "bob@example.org");
  EXPECT_EQ(r.code, SpfCode::permerror);
  EXPECT_NE(r.problem.find("void"), std::string::npos) << r.problem;
  SpfOptions lenient;
  lenient.max_void_lookups = 3;
  EXPECT_EQ(check(dns, "192.0.2.1", "bob@example.org", "h.example", lenient).code,
            SpfCode::neutral);
}

TEST(SpfCheckHost, RecursionDepthAndRecordLengthAreBounded) {
  CountingResolver dns;
  dns.fixture.set("example.org", DnsType::txt, ok({"v=spf1 include:l1.example.org -all"}));
  dns.fixture.set("l1.example.org", DnsType::txt, ok({"v=spf1 redirect=l2.example.org"}));
  dns.fixture.set("l2.example.org", DnsType::txt, ok({"v=spf1 +all"}));
  EXPECT_EQ(check(dns, "192.0.2.1", "bob@example.org").code, SpfCode::pass);
  SpfOptions shallow;
  shallow.max_depth = 1;
  SpfResult r = check(dns, "192.0.2.1", "bob@example.org", "h.example", shallow);
  EXPECT_EQ(r.code, SpfCode::permerror);
  EXPECT_NE(r.problem.find("deep"), std::string::npos) << r.problem;

  SpfOptions short_records;
  short_records.max_record_length = 20;
  EXPECT_EQ(check(dns, "192.0.2.1", "bob@example.org", "h.example", short_records).code,
            SpfCode::permerror);
}

TEST(SpfCheckHost, MxNamesOverTheLimitArePermerrorAndPtrNamesAreCapped) {
  CountingResolver dns;
  std::vector<std::string> mxs;
  for (int i = 0; i < 11; ++i) mxs.push_back("mx" + std::to_string(i) + ".example.org");
  dns.fixture.set("example.org", DnsType::txt, ok({"v=spf1 mx -all"}));
  dns.fixture.set("example.org", DnsType::mx, ok(mxs));
  EXPECT_EQ(check(dns, "192.0.2.1", "bob@example.org").code, SpfCode::permerror);

  // 11 PTR names, the matching one last: ignored, so no match.
  std::vector<std::string> ptrs;
  for (int i = 0; i < 10; ++i) ptrs.push_back("h" + std::to_string(i) + ".elsewhere.example");
  ptrs.push_back("mail.example.net");
  dns.fixture.set("1.2.0.192.in-addr.arpa", DnsType::ptr, ok(ptrs));
  dns.fixture.set("mail.example.net", DnsType::a, ok({"192.0.2.1"}));
  dns.fixture.set("example.net", DnsType::txt, ok({"v=spf1 ptr -all"}));
  EXPECT_EQ(check(dns, "192.0.2.1", "bob@example.net").code, SpfCode::fail);
  SpfOptions more;
  more.max_ptr_names = 11;
  EXPECT_EQ(check(dns, "192.0.2.1", "bob@example.net", "h.example", more).code, SpfCode::pass);
}

TEST(SpfCheckHost, TimeoutsAreTemperrorNeverAnAnswer) {
  CountingResolver dns;
  dns.fixture.set("slow.example", DnsType::txt, timeout());
  SpfResult r = check(dns, "192.0.2.1", "bob@slow.example");
  EXPECT_EQ(r.code, SpfCode::temperror);
  EXPECT_NE(r.problem.find("timeout"), std::string::npos) << r.problem;

  dns.fixture.set("example.org", DnsType::txt, ok({"v=spf1 a:slow.example -all"}));
  dns.fixture.set("slow.example", DnsType::a, timeout());
  EXPECT_EQ(check(dns, "192.0.2.1", "bob@example.org").code, SpfCode::temperror);

  // A timeout on the exp= lookup only costs the explanation.
  dns.fixture.set("exp.example", DnsType::txt, ok({"v=spf1 -all exp=why.slow.example"}));
  dns.fixture.set("why.slow.example", DnsType::txt, timeout());
  SpfOptions o;
  o.default_explanation = "not allowed: %{i}";
  SpfResult f = check(dns, "192.0.2.1", "bob@exp.example", "h.example", o);
  EXPECT_EQ(f.code, SpfCode::fail);
  EXPECT_EQ(f.explanation, "not allowed: 192.0.2.1");
}

TEST(SpfCheckHost, MultipleRecordsAndNoRecord) {
  CountingResolver dns;
  dns.fixture.set("two.example", DnsType::txt, ok({"v=spf1 -all", "v=spf1 +all", "other"}));
  dns.fixture.set("none.example", DnsType::txt, ok({"google-site-verification=x"}));
  EXPECT_EQ(check(dns, "192.0.2.1", "bob@two.example").code, SpfCode::permerror);
  EXPECT_EQ(check(dns, "192.0.2.1", "bob@none.example").code, SpfCode::none);
  EXPECT_EQ(check(dns, "192.0.2.1", "bob@nxdomain.example").code, SpfCode::none);
  EXPECT_EQ(check(dns, "192.0.2.1", "bob@[192.0.2.1]").code, SpfCode::none);
  int before = dns.queries;
  EXPECT_EQ(check(dns, "192.0.2.1", "bob@singlelabel").code, SpfCode::none);
  EXPECT_EQ(dns.queries, before) << "a malformed domain is none without a query";
}

TEST(SpfCheckHost, HeloIdentityWhenMailFromIsEmpty) {
  SpfIdentity id = spf_identity("", "mx.example.org");
  EXPECT_TRUE(id.is_helo);
  EXPECT_EQ(id.domain, "mx.example.org");
  EXPECT_EQ(id.sender, "postmaster@mx.example.org");
  SpfIdentity m = spf_identity("a@b@Example.org", "mx.example.org");
  EXPECT_FALSE(m.is_helo);
  EXPECT_EQ(m.domain, "Example.org");

  CountingResolver dns;
  dns.fixture.set("mx.example.org", DnsType::txt, ok({"v=spf1 a -all exp=e.example.org"}));
  dns.fixture.set("mx.example.org", DnsType::a, ok({"192.0.2.10"}));
  dns.fixture.set("e.example.org", DnsType::txt, ok({"%{s} (%{l}) via %{h} at %{t} to %{r}"}));
  EXPECT_EQ(check(dns, "192.0.2.10", "", "mx.example.org").code, SpfCode::pass);
  SpfOptions o;
  o.now_unix = 42;
  o.receiver = "us.example";
  SpfResult r = check(dns, "192.0.2.11", "", "mx.example.org", o);
  EXPECT_EQ(r.code, SpfCode::fail);
  EXPECT_EQ(r.explanation,
            "postmaster@mx.example.org (postmaster) via mx.example.org at 42 to us.example");
}

TEST(SpfCheckHost, Ipv6AndV4MappedClients) {
  CountingResolver dns;
  dns.fixture.set("example.org", DnsType::txt,
                  ok({"v=spf1 ip6:2001:db8:1::/48 ip4:192.0.2.0/24 -all"}));
  EXPECT_EQ(check(dns, "2001:db8:1:2::5", "a@example.org").code, SpfCode::pass);
  EXPECT_EQ(check(dns, "2001:db8:2::5", "a@example.org").code, SpfCode::fail);
  SpfResult mapped = check(dns, "::ffff:192.0.2.9", "a@example.org");
  EXPECT_EQ(mapped.code, SpfCode::pass);
  EXPECT_EQ(mapped.mechanism, "ip4:192.0.2.0/24");

  // a with dual CIDR: the IPv6 length applies to AAAA records.
  dns.fixture.set("dual.example", DnsType::txt, ok({"v=spf1 a/24//64 -all"}));
  dns.fixture.set("dual.example", DnsType::aaaa, ok({"2001:db8:5:6::1"}));
  dns.fixture.set("dual.example", DnsType::a, ok({"198.51.100.1"}));
  EXPECT_EQ(check(dns, "2001:db8:5:6::99", "a@dual.example").code, SpfCode::pass);
  EXPECT_EQ(check(dns, "198.51.100.200", "a@dual.example").code, SpfCode::pass);
  EXPECT_EQ(check(dns, "198.51.101.1", "a@dual.example").code, SpfCode::fail);
}

// ---- The check ----

std::vector<Symbol> run_check(Check& c, const Transaction& tx) {
  return run_sync(c.run(tx));
}

Transaction mail_tx(const char* client, const char* sender,
                    const char* helo = "mx.client.example") {
  Transaction tx;
  tx.stage = Stage::mail;
  tx.client_address = ip(client);
  tx.sender = sender;
  tx.helo = helo;
  return tx;
}

TEST(SpfCheck, NotCreatedWithoutAResolver) {
  Env env;
  EXPECT_EQ(make_spf_check(env), nullptr);
}

TEST(SpfCheck, EmitsOneSymbolWithTableScoreAndDetail) {
  CountingResolver dns;
  dns.fixture.set("example.org", DnsType::txt,
                  ok({"v=spf1 ip4:192.0.2.0/24 ~ip4:198.51.100.0/24 -all exp=why.example.org"}));
  dns.fixture.set("why.example.org", DnsType::txt, ok({"%{i} is not ours"}));
  FakeClock clock;
  Env env;
  env.resolver = &dns;
  env.clock = &clock;
  auto check_ptr = make_spf_check(env);
  ASSERT_NE(check_ptr, nullptr);
  Check& c = *check_ptr;
  EXPECT_EQ(c.name(), "spf");
  EXPECT_EQ(c.stage(), Stage::mail);
  EXPECT_EQ(c.family(), Family::auth);

  struct Want {
    const char* client;
    const char* symbol;
  };
  for (Want w : {Want{"192.0.2.5", "SPF_PASS"}, Want{"198.51.100.5", "SPF_SOFTFAIL"},
                 Want{"203.0.113.5", "SPF_FAIL"}}) {
    auto symbols = run_check(c, mail_tx(w.client, "Alice@Example.ORG"));
    ASSERT_EQ(symbols.size(), 1u) << w.client;
    EXPECT_EQ(symbols[0].name, w.symbol);
    EXPECT_EQ(symbols[0].family, Family::auth);
    const SymbolInfo* info = find_symbol(w.symbol);
    ASSERT_NE(info, nullptr);
    EXPECT_EQ(symbols[0].score, info->default_score);
    EXPECT_TRUE(symbols[0].detail.starts_with("mfrom example.org: ")) << symbols[0].detail;
  }
  auto fail = run_check(c, mail_tx("203.0.113.5", "alice@example.org"));
  EXPECT_EQ(fail[0].detail, "mfrom example.org: -all; 203.0.113.5 is not ours");
}

TEST(SpfCheck, TemperrorScoresZeroAndHeloIdentityForBounces) {
  CountingResolver dns;
  dns.fixture.set("slow.example", DnsType::txt, timeout());
  dns.fixture.set("mx.client.example", DnsType::txt, ok({"v=spf1 ?all"}));
  Env env;
  env.resolver = &dns;
  auto c = make_spf_check(env);
  auto t = run_check(*c, mail_tx("192.0.2.1", "x@slow.example"));
  ASSERT_EQ(t.size(), 1u);
  EXPECT_EQ(t[0].name, "SPF_TEMPERROR");
  EXPECT_EQ(t[0].score, 0.0);

  auto bounce = run_check(*c, mail_tx("192.0.2.1", ""));
  ASSERT_EQ(bounce.size(), 1u);
  EXPECT_EQ(bounce[0].name, "SPF_NEUTRAL");
  EXPECT_EQ(bounce[0].detail, "helo mx.client.example: ?all");

  auto none = run_check(*c, mail_tx("192.0.2.1", "x@nothing.example"));
  ASSERT_EQ(none.size(), 1u);
  EXPECT_EQ(none[0].name, "SPF_NONE");
}

TEST(SpfCheck, SkipsAuthenticatedAndAddresslessClients) {
  CountingResolver dns;
  dns.fixture.set("example.org", DnsType::txt, ok({"v=spf1 -all"}));
  Env env;
  env.resolver = &dns;
  auto c = make_spf_check(env);
  Transaction authed = mail_tx("192.0.2.1", "a@example.org");
  authed.sasl_username = "alice";
  EXPECT_TRUE(run_check(*c, authed).empty());
  Transaction no_ip = mail_tx("192.0.2.1", "a@example.org");
  no_ip.client_address.reset();
  EXPECT_TRUE(run_check(*c, no_ip).empty());
  EXPECT_EQ(dns.queries, 0);
}

TEST(SpfCheck, PublishesThePassDomainForTheSenderOnly) {
  CountingResolver dns;
  dns.fixture.set("example.org", DnsType::txt, ok({"v=spf1 ip4:192.0.2.0/24 -all"}));
  dns.fixture.set("mx.example.org", DnsType::txt, ok({"v=spf1 +all"}));
  Env env;
  env.resolver = &dns;
  auto c = make_spf_check(env);

  Transaction pass = mail_tx("192.0.2.1", "a@Example.org");
  c->publish(run_check(*c, pass), pass);
  EXPECT_EQ(pass.spf_pass_domain, "example.org");

  Transaction fail = mail_tx("203.0.113.1", "a@example.org");
  c->publish(run_check(*c, fail), fail);
  EXPECT_EQ(fail.spf_pass_domain, "");

  Transaction bounce = mail_tx("203.0.113.1", "", "mx.example.org");
  auto symbols = run_check(*c, bounce);
  ASSERT_EQ(symbols.size(), 1u);
  EXPECT_EQ(symbols[0].name, "SPF_PASS");
  c->publish(symbols, bounce);
  EXPECT_EQ(bounce.spf_pass_domain, "") << "a HELO pass vouches for no sender";
}

}  // namespace
