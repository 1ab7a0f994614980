// Header sanity (HDR_*), GTUBE, and the mail/date.h and mail/mailbox.h helpers they use.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>

#include "checks/gtube_check.h"
#include "checks/header_check.h"
#include "mail/date.h"
#include "mail/mailbox.h"

using namespace spamward;
using namespace std::chrono_literals;

namespace {

TimePoint utc(int y, unsigned mo, unsigned d, int h, int mi, int s) {
  using namespace std::chrono;
  auto t =
      sys_days(year_month_day{year(y), month(mo), day(d)}) + hours(h) + minutes(mi) + seconds(s);
  return time_point_cast<milliseconds>(t);
}

// ---- dates ----

TEST(MailDate, Rfc5322FormsParse) {
  EXPECT_EQ(parse_mail_date("Mon, 2 Dec 2026 10:15:30 +0000"), utc(2026, 12, 2, 10, 15, 30));
  EXPECT_EQ(parse_mail_date("2 Dec 2026 10:15:30 +0100"), utc(2026, 12, 2, 9, 15, 30));
  EXPECT_EQ(parse_mail_date("Wed, 02 Dec 2026 10:15 -0530"), utc(2026, 12, 2, 15, 45, 0));
  // Obsolete forms: two-digit years, named zones, comments, folding.
  EXPECT_EQ(parse_mail_date("Thu, 5 Sep 02 08:00:00 PDT"), utc(2002, 9, 5, 15, 0, 0));
  EXPECT_EQ(parse_mail_date("Thu, 5 Sep 96 08:00:00 GMT"), utc(1996, 9, 5, 8, 0, 0));
  EXPECT_EQ(parse_mail_date("Thu,\r\n 5 Sep 2002 08:00:00 +0000 (UTC)"), utc(2002, 9, 5, 8, 0, 0));
  EXPECT_EQ(parse_mail_date("thu, 5 sep 2002 08:00:00 EST"), utc(2002, 9, 5, 13, 0, 0));
}

TEST(MailDate, GarbageAndOutOfRangeFieldsAreRefused) {
  for (const char* bad :
       {"", "yesterday", "Mon, 2 Dex 2026 10:15:30 +0000", "31 Nov 2026 10:00:00 +0000",
        "2 Dec 2026 24:00:00 +0000", "2 Dec 2026 10:60:00 +0000", "2 Dec 2026 10:00:00 +0060",
        "2 Dec 2026 10:00:00 +01", "2 Dec 2026 10:00:00 XYZ", "2 Dec 2026 10:00:00 +0000 junk",
        "Foo, 2 Dec 2026 10:00:00 +0000", "2 Dec 12026 10:00:00 +0000", "2 Dec 7 10:00:00 +0000",
        "123 Dec 2026 10:00:00 +0000"}) {
    EXPECT_FALSE(parse_mail_date(bad)) << bad;
  }
  EXPECT_FALSE(parse_mail_date(std::string(100000, '(')));  // unbalanced comment: no hang
}

TEST(MailDate, ReceivedDateIsAfterTheLastSemicolon) {
  EXPECT_EQ(received_date("from a.example (a.example [192.0.2.1]) by mx.example.org (Postfix) "
                          "with ESMTP id ABC; Wed, 2 Dec 2026 10:00:00 +0000 (UTC)"),
            utc(2026, 12, 2, 10, 0, 0));
  EXPECT_FALSE(received_date("from a.example by b.example"));
}

// ---- mailboxes ----

TEST(Mailbox, DisplayNamesQuotesCommentsAndGroups) {
  auto m = parse_mailbox_list("\"Doe, John\" <john@example.org>, jane@example.net (Jane)");
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m[0].display, "Doe, John");
  EXPECT_EQ(m[0].address, "john@example.org");
  EXPECT_TRUE(m[0].valid);
  EXPECT_EQ(m[1].address, "jane@example.net");
  EXPECT_TRUE(m[1].valid);

  EXPECT_TRUE(parse_mailbox_list("undisclosed-recipients:;").empty());
  auto g = parse_mailbox_list("team: a@example.org, b@example.org;");
  ASSERT_EQ(g.size(), 2u);
  EXPECT_EQ(g[1].address, "b@example.org");

  auto bad = parse_mailbox_list("Mr Nobody <nobody>");
  ASSERT_EQ(bad.size(), 1u);
  EXPECT_FALSE(bad[0].valid);
  EXPECT_EQ(parse_mailbox_list(std::string(10000, ','), 5).size(), 0u);
  EXPECT_EQ(parse_mailbox_list("a@x.org,b@x.org,c@x.org", 2).size(), 2u);
}

TEST(Mailbox, AddressShownInText) {
  EXPECT_EQ(address_in_text("PayPal service@paypal.com"), "service@paypal.com");
  EXPECT_EQ(address_in_text("Alice (alice.smith@example.org) via list"), "alice.smith@example.org");
  EXPECT_EQ(address_in_text("Alice Smith"), "");
  EXPECT_EQ(address_in_text("@ home"), "");
}

// ---- the header check ----

class HeaderCheckTest : public ::testing::Test {
 protected:
  HeaderCheckTest() : clock_(utc(2026, 12, 2, 12, 0, 0)) { env_.clock = &clock_; }

  void add(std::string name, std::string value) {
    msg_.headers.push_back({name, name + ": " + value + "\r\n", value});
  }
  void add_good_headers() {
    add("Received", "from a.example by mx.example.org; Wed, 2 Dec 2026 11:59:00 +0000");
    add("Received", "from b.example by a.example; Wed, 2 Dec 2026 11:58:00 +0000");
    add("Date", "Wed, 2 Dec 2026 11:57:00 +0000");
    add("Message-ID", "<abc.123@a.example>");
    add("From", "Alice Example <alice@a.example>");
  }
  std::vector<std::string> names(bool authenticated = false) {
    Transaction tx;
    if (authenticated) tx.sasl_username = "alice";
    tx.message = std::make_shared<Message>(msg_);
    auto check = make_header_check(env_);
    auto symbols = check->run_now(tx);
    EXPECT_TRUE(symbols.has_value());
    std::vector<std::string> out;
    for (const auto& s : *symbols) {
      EXPECT_EQ(s.family, Family::rfc);
      EXPECT_GT(s.score, 0.0);
      EXPECT_LE(s.score, 1.5);  // all soft (principle 1)
      out.push_back(s.name);
    }
    return out;
  }

  FakeClock clock_;
  Env env_;
  Message msg_;
};

TEST_F(HeaderCheckTest, CleanHeaderGivesNothing) {
  add_good_headers();
  EXPECT_TRUE(names().empty());
}

TEST_F(HeaderCheckTest, NoMessageOrAuthenticatedClientGivesNothing) {
  auto check = make_header_check(env_);
  EXPECT_TRUE(check->run_now(Transaction{})->empty());
  EXPECT_TRUE(names(/*authenticated=*/true).empty());  // an empty message, but our own user
  EXPECT_EQ(names().size(), 3u);                       // the same message from outside
}

TEST_F(HeaderCheckTest, MissingFields) {
  add("Subject", "hello");
  auto n = names();
  EXPECT_EQ(n, (std::vector<std::string>{"HDR_DATE_MISSING", "HDR_MESSAGE_ID_MISSING",
                                         "HDR_FROM_MISSING"}));
}

TEST_F(HeaderCheckTest, InvalidFields) {
  add("Date", "next tuesday");
  add("Message-ID", "no brackets here");
  add("From", "Mr Nobody <nobody>");
  auto n = names();
  EXPECT_EQ(n, (std::vector<std::string>{"HDR_DATE_INVALID", "HDR_MESSAGE_ID_INVALID",
                                         "HDR_FROM_INVALID"}));
}

TEST_F(HeaderCheckTest, DuplicatedFieldsAreInvalid) {
  add_good_headers();
  add("From", "Mallory <mallory@m.example>");
  add("Date", "Wed, 2 Dec 2026 11:57:00 +0000");
  auto n = names();
  EXPECT_NE(std::find(n.begin(), n.end(), "HDR_FROM_INVALID"), n.end());
  EXPECT_NE(std::find(n.begin(), n.end(), "HDR_DATE_INVALID"), n.end());
}

TEST_F(HeaderCheckTest, DatesAreJudgedAgainstTheNewestReceivedHop) {
  // Stored mail replayed years later: judged as it arrived, so nothing.
  clock_.set(utc(2030, 1, 1, 0, 0, 0));
  add_good_headers();
  EXPECT_TRUE(names().empty());

  msg_ = {};
  add("Received", "from a.example by mx.example.org; Wed, 2 Dec 2026 12:00:00 +0000");
  add("Date", "Fri, 4 Dec 2026 12:00:01 +0000");  // 48 h ahead of its arrival
  add("Message-ID", "<a@b>");
  add("From", "a@a.example");
  EXPECT_EQ(names(), std::vector<std::string>{"HDR_DATE_FUTURE"});

  msg_.headers[1] = {"Date", "", "Mon, 23 Nov 2026 11:00:00 +0000"};  // 9 days before
  EXPECT_EQ(names(), std::vector<std::string>{"HDR_DATE_PAST"});

  msg_.headers[1] = {"Date", "", "Wed, 2 Dec 2026 13:00:00 +0000"};  // 1 h ahead: clock skew
  EXPECT_TRUE(names().empty());
}

TEST_F(HeaderCheckTest, WithoutReceivedTheClockIsTheReference) {
  add("Date", "Wed, 9 Dec 2026 12:00:00 +0000");
  add("Message-ID", "<a@b>");
  add("From", "a@a.example");
  EXPECT_EQ(names(), std::vector<std::string>{"HDR_DATE_FUTURE"});
}

TEST_F(HeaderCheckTest, DisplayNameShowingAnotherDomain) {
  add_good_headers();
  msg_.headers.back() = {"From", "", "\"service@paypal.com\" <alerts@evil.example>"};
  auto n = names();
  EXPECT_EQ(n, std::vector<std::string>{"HDR_FROM_DISPLAY_MISMATCH"});
  // The same domain, or no address in the name, is fine.
  msg_.headers.back() = {"From", "", "\"alice@a.example\" <ALICE@A.example>"};
  EXPECT_TRUE(names().empty());
  msg_.headers.back() = {"From", "", "\"Alice via Lists\" <list@lists.example>"};
  EXPECT_TRUE(names().empty());
}

TEST_F(HeaderCheckTest, EncodedWordsNeverTakeOverTheAddress) {
  // "<admin@bank.example>" hidden in an encoded display name: the real address stays the one
  // in the brackets, and the display name shows another domain.
  auto m = parse_message(
      "From: =?utf-8?B?PGFkbWluQGJhbmsuZXhhbXBsZT4=?= <evil@x.example>\r\n"
      "Date: Wed, 2 Dec 2026 12:00:00 +0000\r\nMessage-ID: <a@b.example>\r\n\r\nbody\r\n");
  const HeaderField* from = m.header("From");
  ASSERT_NE(from, nullptr);
  auto mailboxes = field_mailboxes(*from);
  ASSERT_EQ(mailboxes.size(), 1u);
  EXPECT_EQ(mailboxes[0].address, "evil@x.example");
  EXPECT_EQ(mailboxes[0].display, "<admin@bank.example>");
  // An encoded comma in a display name does not split the mailbox either.
  auto comma = parse_message("From: =?utf-8?Q?Smith=2C_John?= <john@x.example>\r\n\r\n");
  auto list = field_mailboxes(*comma.header("From"));
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0].display, "Smith, John");
  EXPECT_TRUE(list[0].valid);
  msg_ = m;
  EXPECT_EQ(names(), std::vector<std::string>{"HDR_FROM_DISPLAY_MISMATCH"});
}

TEST_F(HeaderCheckTest, EightBitHeader) {
  add_good_headers();
  msg_.header_8bit = true;
  EXPECT_EQ(names(), std::vector<std::string>{"HDR_8BIT"});
}

TEST_F(HeaderCheckTest, ReceivedChainRunningBackwards) {
  add("Received", "from a.example by mx.example.org; Wed, 2 Dec 2026 11:59:00 +0000");
  add("Received", "from b.example by a.example; Sat, 5 Dec 2026 11:58:00 +0000");
  add("Date", "Wed, 2 Dec 2026 11:57:00 +0000");
  add("Message-ID", "<abc.123@a.example>");
  add("From", "alice@a.example");
  EXPECT_EQ(names(), std::vector<std::string>{"HDR_RECEIVED_IMPLAUSIBLE"});
}

TEST_F(HeaderCheckTest, TooManyHops) {
  for (int i = 0; i < 41; ++i) add("Received", "from x by y; Wed, 2 Dec 2026 11:00:00 +0000");
  add("Date", "Wed, 2 Dec 2026 11:00:00 +0000");
  add("Message-ID", "<abc.123@a.example>");
  add("From", "alice@a.example");
  EXPECT_EQ(names(), std::vector<std::string>{"HDR_RECEIVED_IMPLAUSIBLE"});
}

// ---- GTUBE ----

TEST(Gtube, FoundInTextPartsAndRawBody) {
  Message m;
  EXPECT_FALSE(contains_gtube(m));
  m.parts.push_back({});
  m.parts.back().text = "hello\n" + std::string(kGtube) + "\n";
  EXPECT_TRUE(contains_gtube(m));
  Message raw;
  raw.raw_body = "xx" + std::string(kGtube);
  EXPECT_TRUE(contains_gtube(raw));
  Message almost;
  almost.raw_body = std::string(kGtube.substr(0, kGtube.size() - 1));
  EXPECT_FALSE(contains_gtube(almost));

  Transaction tx;
  tx.message = std::make_shared<Message>(m);
  auto symbols = make_gtube_check()->run_now(tx);
  ASSERT_TRUE(symbols && symbols->size() == 1);
  EXPECT_EQ((*symbols)[0].name, "GTUBE");
  EXPECT_EQ((*symbols)[0].family, Family::admin);
}

}  // namespace
