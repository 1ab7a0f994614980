// The greylisting compatibility list (engine/greylist_compat.h) and the shipped list.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>

#include "engine/greylist_compat.h"
#include "test_support.h"

using namespace spamward;
using namespace spamward::test;

namespace {

// The message of the std::invalid_argument that parsing `text` throws, or "" when it parses.
std::string parse_error(const std::string& text) {
  try {
    GreylistCompatList::parse(text, "compat.txt");
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

TEST(GreylistCompatParse, ErrorsNameSourceAndLine) {
  EXPECT_EQ(parse_error("# ok\n192.0.2.0/24\n192.0.2.0/33\n").rfind("compat.txt:3: ", 0), 0u)
      << parse_error("192.0.2.0/33");
  struct Case {
    const char* text;
    const char* says;
  };
  for (const Case& c : {
           Case{"192.0.2.0/33", "bad address or CIDR"},
           Case{"2001:db8::/129", "bad address or CIDR"},
           Case{"195.235.39", "bad address or CIDR"},  // postgrey's partial address
           Case{"1.2.3.4.5", "bad address or CIDR"},
           Case{"/[a-/", "bad regular expression"},
           Case{"/(unclosed/", "bad regular expression"},
           Case{"//", "empty pattern"},
           Case{"/^mx$", "no closing '/'"},
           Case{"*.", "empty pattern"},
           Case{"*", "'*' is allowed only"},
           Case{"mx*.example.org", "'*' is allowed only"},
           Case{"*.*.example.org", "bad wildcard"},
           Case{"exa mple.org", "unexpected \"mple.org\""},
           Case{"a..example.org", "empty label"},
           Case{"m\xC3\xBC.example.org", "bad host name"},
           Case{"example.org!", "bad host name"},
       }) {
    std::string text = std::string("# comment\n\n") + c.text + "\n";
    std::string error = parse_error(text);
    EXPECT_EQ(error.rfind("compat.txt:3: ", 0), 0u) << c.text << " -> " << error;
    EXPECT_NE(error.find(c.says), std::string::npos) << c.text << " -> " << error;
  }
}

TEST(GreylistCompatParse, EnforcesItsLimits) {
  std::string long_line = "# " + std::string(GreylistCompatList::kMaxLineBytes, 'x');
  EXPECT_NE(parse_error("a.example\n" + long_line).find("compat.txt:2: line longer than 1000"),
            std::string::npos);
  std::string max_line = std::string(GreylistCompatList::kMaxLineBytes - 2, 'x');
  EXPECT_EQ(parse_error("# " + max_line + "\r\n"), "");  // the line end does not count

  std::string long_regex = "/" + std::string(GreylistCompatList::kMaxRegexBytes + 1, 'a') + "/";
  EXPECT_NE(parse_error(long_regex).find("compat.txt:1: regular expression longer than 200"),
            std::string::npos);
  EXPECT_EQ(parse_error("/" + std::string(GreylistCompatList::kMaxRegexBytes, 'a') + "/"), "");

  std::string many;
  for (size_t i = 0; i < GreylistCompatList::kMaxEntries; ++i) {
    many += "h" + std::to_string(i) + ".example\n";
  }
  EXPECT_EQ(parse_error(many), "");
  EXPECT_EQ(parse_error(many + "# a comment is no entry\n"), "");
  std::string error = parse_error(many + "one-more.example\n");
  EXPECT_NE(error.find("compat.txt:10001: more than 10000 entries"), std::string::npos) << error;
}

TEST(GreylistCompatParse, AcceptsCommentsBlanksAndTrailingComments) {
  auto list = GreylistCompatList::parse(
      "  # indented comment\n\n\t\nmx.example.org   # a trailing comment\r\n"
      "192.0.2.0/24\t# another\n",
      "compat.txt");
  EXPECT_EQ(list.size(), 2u);
  EXPECT_EQ(list.match(ip("203.0.113.1"), "MX.Example.Org."), "mx.example.org");
  EXPECT_EQ(list.match(ip("192.0.2.99"), ""), "192.0.2.0/24");
}

TEST(GreylistCompatMatch, Networks) {
  auto list = GreylistCompatList::parse(
      "192.0.2.0/24\n198.51.100.7\n2001:db8:1::/48\n2001:db8:2::5\n10.0.0.0/8\n10.1.0.0/16\n",
      "compat.txt");
  EXPECT_EQ(list.match(ip("192.0.2.1"), ""), "192.0.2.0/24");
  EXPECT_EQ(list.match(ip("192.0.2.255"), ""), "192.0.2.0/24");
  EXPECT_EQ(list.match(ip("192.0.3.0"), ""), std::nullopt);
  EXPECT_EQ(list.match(ip("198.51.100.7"), ""), "198.51.100.7");
  EXPECT_EQ(list.match(ip("198.51.100.8"), ""), std::nullopt);
  EXPECT_EQ(list.match(ip("2001:db8:1:ffff::1"), ""), "2001:db8:1::/48");
  EXPECT_EQ(list.match(ip("2001:db8:2::5"), ""), "2001:db8:2::5");
  EXPECT_EQ(list.match(ip("2001:db8:2::6"), ""), std::nullopt);
  EXPECT_EQ(list.match(ip("::ffff:192.0.2.9"), ""), "192.0.2.0/24");  // v4-mapped is v4
  EXPECT_EQ(list.match(ip("10.1.2.3"), ""), "10.1.0.0/16");           // the longest prefix
  EXPECT_EQ(list.match(ip("10.2.2.3"), ""), "10.0.0.0/8");
  // A v4 network never matches a v6 client with the same leading bytes.
  EXPECT_EQ(list.match(ip("c000:200::1"), ""), std::nullopt);
}

TEST(GreylistCompatMatch, ExactNames) {
  auto list = GreylistCompatList::parse("mx.example.org\n", "compat.txt");
  EXPECT_EQ(list.match(ip("192.0.2.1"), "mx.example.org"), "mx.example.org");
  EXPECT_EQ(list.match(ip("192.0.2.1"), "MX.EXAMPLE.ORG"), "mx.example.org");
  EXPECT_EQ(list.match(ip("192.0.2.1"), "mx.example.org."), "mx.example.org");
  EXPECT_EQ(list.match(ip("192.0.2.1"), "a.mx.example.org"), std::nullopt);
  EXPECT_EQ(list.match(ip("192.0.2.1"), "example.org"), std::nullopt);
  EXPECT_EQ(list.match(ip("192.0.2.1"), ""), std::nullopt);
}

TEST(GreylistCompatMatch, Wildcards) {
  auto list = GreylistCompatList::parse("*.Example.org\n", "compat.txt");
  EXPECT_EQ(list.match(ip("192.0.2.1"), "sub.example.org"), "*.Example.org");
  EXPECT_EQ(list.match(ip("192.0.2.1"), "a.b.EXAMPLE.org"), "*.Example.org");
  EXPECT_EQ(list.match(ip("192.0.2.1"), "example.org"), std::nullopt);
  EXPECT_EQ(list.match(ip("192.0.2.1"), "example.org-evil.com"), std::nullopt);
  EXPECT_EQ(list.match(ip("192.0.2.1"), "sub.example.org-evil.com"), std::nullopt);
  EXPECT_EQ(list.match(ip("192.0.2.1"), "evilexample.org"), std::nullopt);
  EXPECT_EQ(list.match(ip("192.0.2.1"), "sub.example.org.evil.com"), std::nullopt);
}

TEST(GreylistCompatMatch, RegularExpressions) {
  auto list = GreylistCompatList::parse("/^mail\\d+\\.example\\.org$/\n/pool/\n", "compat.txt");
  EXPECT_EQ(list.match(ip("192.0.2.1"), "mail12.example.org"), "/^mail\\d+\\.example\\.org$/");
  EXPECT_EQ(list.match(ip("192.0.2.1"), "MAIL7.Example.ORG"), "/^mail\\d+\\.example\\.org$/");
  EXPECT_EQ(list.match(ip("192.0.2.1"), "mail.example.org"), std::nullopt);
  EXPECT_EQ(list.match(ip("192.0.2.1"), "xmail1.example.org.evil"), std::nullopt);
  // Unanchored patterns are searched, as written.
  EXPECT_EQ(list.match(ip("192.0.2.1"), "a.pool.example"), "/pool/");
  // A name longer than DNS allows matches nothing.
  std::string too_long(300, 'a');
  too_long += ".pool.example";
  EXPECT_EQ(list.match(ip("192.0.2.1"), too_long), std::nullopt);
}

TEST(GreylistCompatMatch, AnEmptyListMatchesNothing) {
  GreylistCompatList empty;
  EXPECT_EQ(empty.match(ip("192.0.2.1"), "mx.example.org"), std::nullopt);
  EXPECT_EQ(GreylistCompatList::parse("# nothing\n", "x").size(), 0u);
}

TEST(GreylistCompatBuiltin, ParsesAndHoldsEveryKindOfEntry) {
  const GreylistCompatList& list = GreylistCompatList::builtin();
  EXPECT_GT(list.size(), 10u);
  EXPECT_EQ(&list, &GreylistCompatList::builtin());  // parsed once
  // One entry of each kind, as shipped.
  EXPECT_EQ(list.match(ip("205.201.130.1"), ""), "205.201.128.0/20");  // CIDR
  EXPECT_EQ(list.match(ip("192.0.2.1"), "mout-xforward.gmx.net"), "mout-xforward.gmx.net");
  EXPECT_EQ(list.match(ip("192.0.2.1"), "mail-ed1-f41.google.com"), "*.google.com");
  EXPECT_EQ(list.match(ip("192.0.2.1"), "fallback12.mail.ru"), "/^fallback\\d+\\.mail\\.ru$/");
  // Nothing for an ordinary client.
  EXPECT_EQ(list.match(ip("192.0.2.1"), "mail.example.org"), std::nullopt);
  EXPECT_EQ(list.match(ip("192.0.2.1"), "google.com.evil.example"), std::nullopt);
}

TEST(GreylistCompatBuiltin, IsTheShippedFile) {
  std::ifstream in(std::string(SPAMWARD_SOURCE_DIR) + "/config/greylist-compat.txt");
  ASSERT_TRUE(in);
  std::stringstream text;
  text << in.rdbuf();
  auto from_file = GreylistCompatList::parse(text.str(), "config/greylist-compat.txt");
  EXPECT_EQ(from_file.size(), GreylistCompatList::builtin().size());
  // The header says what the list is, for whoever opens it.
  EXPECT_NE(text.str().find("COMPATIBILITY, NOT TRUST"), std::string::npos);
}

}  // namespace

TEST(GreylistCompatParse, RefusesPatternsThatWouldOverflowOrNeedBacktracking) {
  // Found by compat_fuzz: long numbers overflow inside GCC 12's regex compiler.
  EXPECT_THROW(GreylistCompatList::parse("/a{99999999999999999999}/\n", "t"),
               std::invalid_argument);
  EXPECT_THROW(GreylistCompatList::parse("/(a)\\99999999999999999999/\n", "t"),
               std::invalid_argument);
  // Back-references need the backtracking matcher; polynomial mode refuses them.
  EXPECT_THROW(GreylistCompatList::parse("/^(a)\\1$/\n", "t"), std::invalid_argument);
  auto list = GreylistCompatList::parse("/^mx[0-9]{1,3}\\.pool\\.example$/\n/^(a|a)*$/\n", "t");
  EXPECT_TRUE(list.match(spamward::test::ip("192.0.2.1"), "mx12.pool.example"));
  // A host name built to make a backtracking matcher take exponential time is answered fast.
  EXPECT_FALSE(list.match(spamward::test::ip("192.0.2.1"), std::string(40, 'a') + "b"));
}
