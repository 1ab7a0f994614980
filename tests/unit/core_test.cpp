#include <gtest/gtest.h>

#include "core/duration.h"
#include "core/ip_address.h"
#include "core/metrics.h"
#include "core/strings.h"

using namespace spamward;

TEST(IpAddress, ParsesV4AndV6) {
  auto a = IpAddress::parse("192.0.2.1");
  ASSERT_TRUE(a);
  EXPECT_TRUE(a->is_v4());
  EXPECT_EQ(a->to_string(), "192.0.2.1");
  auto b = IpAddress::parse("2001:DB8::0:1");
  ASSERT_TRUE(b);
  EXPECT_TRUE(b->is_v6());
  EXPECT_EQ(b->to_string(), "2001:db8::1");
  EXPECT_EQ(IpAddress::parse("[2001:db8::1]"), b);
  EXPECT_EQ(IpAddress::parse("IPv6:2001:db8::1"), b);
}

TEST(IpAddress, FoldsV4MappedToV4) {
  auto a = IpAddress::parse("::ffff:192.0.2.7");
  ASSERT_TRUE(a);
  EXPECT_TRUE(a->is_v4());
  EXPECT_EQ(*a, *IpAddress::parse("192.0.2.7"));
}

TEST(IpAddress, RejectsGarbage) {
  for (const char* bad : {"", "1.2.3", "1.2.3.4.5", "256.1.1.1", "abc", "1.2.3.4 ",
                          ":::", "[1.2.3.4", "2001:db8::1::2"}) {
    EXPECT_FALSE(IpAddress::parse(bad)) << bad;
  }
}

TEST(Prefix, ParsesAndContains) {
  auto p = Prefix::parse("192.0.2.77/24");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->to_string(), "192.0.2.0/24");  // host bits cleared
  EXPECT_TRUE(p->contains(*IpAddress::parse("192.0.2.200")));
  EXPECT_FALSE(p->contains(*IpAddress::parse("192.0.3.1")));
  EXPECT_FALSE(p->contains(*IpAddress::parse("2001:db8::1")));
  auto v6 = Prefix::parse("2001:db8:1:2::/64");
  ASSERT_TRUE(v6);
  EXPECT_TRUE(v6->contains(*IpAddress::parse("2001:db8:1:2:ffff::1")));
  EXPECT_FALSE(v6->contains(*IpAddress::parse("2001:db8:1:3::1")));
  EXPECT_TRUE(Prefix::parse("0.0.0.0/0")->contains(*IpAddress::parse("8.8.8.8")));
  auto host = Prefix::parse("::1");
  ASSERT_TRUE(host);
  EXPECT_TRUE(host->is_host());
  EXPECT_EQ(host->to_string(), "::1");
}

TEST(Prefix, V4MappedPrefixMapsToV4) {
  auto p = Prefix::parse("::ffff:10.0.0.0/104");
  ASSERT_TRUE(p);
  EXPECT_TRUE(p->address().is_v4());
  EXPECT_EQ(p->length(), 8);
  EXPECT_TRUE(p->contains(*IpAddress::parse("10.9.9.9")));
}

TEST(Prefix, RejectsBadLengths) {
  for (const char* bad :
       {"10.0.0.0/33", "10.0.0.0/-1", "10.0.0.0/", "10.0.0.0/8x", "::/129", "x/8"}) {
    EXPECT_FALSE(Prefix::parse(bad)) << bad;
  }
}

TEST(Duration, ParsesUnits) {
  EXPECT_EQ(parse_duration("500ms"), Duration(500));
  EXPECT_EQ(parse_duration("30s"), Duration(30'000));
  EXPECT_EQ(parse_duration("5m"), Duration(300'000));
  EXPECT_EQ(parse_duration("48h"), Duration(48 * 3'600'000LL));
  EXPECT_EQ(parse_duration("35d"), Duration(35 * 86'400'000LL));
  EXPECT_EQ(parse_duration("1h30m"), Duration(5'400'000));
}

TEST(Duration, RejectsBadText) {
  for (const char* bad : {"", "5", "m", "-5m", "5 m", "5x", "1.5h", "99999999999999999999d"}) {
    EXPECT_FALSE(parse_duration(bad)) << bad;
  }
}

TEST(Duration, FormatsShortest) {
  EXPECT_EQ(format_duration(Duration(300'000)), "5m");
  EXPECT_EQ(format_duration(Duration(90'000)), "1m30s");
  EXPECT_EQ(format_duration(Duration(0)), "0s");
  EXPECT_EQ(format_duration(Duration(86'400'000)), "1d");
}

TEST(Metrics, RendersPrometheusText) {
  Metrics m;
  m.describe("spamward_decisions_total", Metrics::Type::counter, "Decisions by action");
  m.inc("spamward_decisions_total", {{"action", "accept"}});
  m.inc("spamward_decisions_total", {{"action", "accept"}});
  m.describe("spamward_stage_seconds", Metrics::Type::histogram, "Stage latency", {0.01, 0.1});
  m.observe("spamward_stage_seconds", {{"stage", "rcpt"}}, 0.05);
  std::string text = m.render();
  EXPECT_NE(text.find("# TYPE spamward_decisions_total counter"), std::string::npos);
  EXPECT_NE(text.find("spamward_decisions_total{action=\"accept\"} 2"), std::string::npos);
  EXPECT_NE(text.find("spamward_stage_seconds_bucket{stage=\"rcpt\",le=\"0.01\"} 0"),
            std::string::npos);
  EXPECT_NE(text.find("spamward_stage_seconds_bucket{stage=\"rcpt\",le=\"0.1\"} 1"),
            std::string::npos);
  EXPECT_NE(text.find("spamward_stage_seconds_count{stage=\"rcpt\"} 1"), std::string::npos);
  EXPECT_EQ(m.value("spamward_decisions_total", {{"action", "accept"}}), 2);
}

TEST(Metrics, HandlesUpdateTheSameSeries) {
  Metrics m;
  auto c = m.counter("spamward_x_total", {{"k", "v"}});
  c.inc();
  c.inc(2);
  m.inc("spamward_x_total", {{"k", "v"}});
  EXPECT_EQ(m.value("spamward_x_total", {{"k", "v"}}), 4);
  auto h = m.histogram("spamward_y_seconds", {{"stage", "rcpt"}});
  h.observe(0.002);
  m.observe("spamward_y_seconds", {{"stage", "rcpt"}}, 0.5);
  EXPECT_EQ(m.histogram_count("spamward_y_seconds", {{"stage", "rcpt"}}), 2);
  Metrics::CounterHandle empty;
  empty.inc();  // a default handle is a no-op, not a crash
  EXPECT_FALSE(empty);
}

TEST(Strings, ToLowerIsAsciiOnly) {
  EXPECT_EQ(to_lower("Example.ORG"), "example.org");
  EXPECT_EQ(to_lower("\xC3\x84-X"), "\xC3\x84-x");  // UTF-8 bytes stay as they are
  EXPECT_EQ(join({"a", "b", "c"}), "a,b,c");
  EXPECT_EQ(join({}, ";"), "");
  EXPECT_EQ(join({"x", "y"}, ", "), "x, y");
}
