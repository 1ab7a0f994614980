// Unknown-recipient events from the MTA's log (state/mta_log.h): the Postfix and Exim line
// parser (every prefix and client form, and the refusals that must not count, including lines
// a client crafted to pin its guesses on another address), and the follower on real files in
// a temporary directory (appended and partial lines, rotation, truncation, a file that
// appears later, overlong lines). Follower tests wait for events with a deadline.
#include "state/mta_log.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace spamward {
namespace {

IpAddress ip(std::string_view text) {
  auto a = IpAddress::parse(text);
  if (!a) throw std::invalid_argument(std::string(text));
  return *a;
}

// The message part of a Postfix unknown-recipient refusal.
std::string postfix_message(std::string_view client = "unknown[192.0.2.1]",
                            std::string_view table = "virtual mailbox table",
                            std::string_view rcpt = "nobody@example.org") {
  return "NOQUEUE: reject: RCPT from " + std::string(client) + ": 550 5.1.1 <" + std::string(rcpt) +
         ">: Recipient address rejected: User unknown in " + std::string(table) +
         "; from=<a@b.example> to=<" + std::string(rcpt) + "> proto=ESMTP helo=<x.example>";
}

std::string syslog_line(std::string_view program, std::string_view message) {
  return "Dec  3 10:00:00 mx1 " + std::string(program) + "[123]: " + std::string(message);
}

// ---------------------------------------------------------------------------------------
// Postfix

TEST(MtaLogParse, PostfixVirtualMailboxTable) {
  auto e = parse_mta_log_line(syslog_line("postfix/smtpd", postfix_message()));
  ASSERT_TRUE(e);
  EXPECT_EQ(e->client, ip("192.0.2.1"));
  EXPECT_EQ(e->recipient, "nobody@example.org");
  EXPECT_EQ(e->helo, "x.example");
}

TEST(MtaLogParse, PostfixEveryRecipientTable) {
  for (const char* table : {"local recipient table", "relay recipient table", "virtual alias table",
                            "virtual mailbox table"}) {
    SCOPED_TRACE(table);
    auto e = parse_mta_log_line(
        syslog_line("postfix/smtpd", postfix_message("mail.example.net[198.51.100.7]", table)));
    ASSERT_TRUE(e);
    EXPECT_EQ(e->client, ip("198.51.100.7"));
    EXPECT_EQ(e->recipient, "nobody@example.org");
  }
  EXPECT_FALSE(parse_mta_log_line(
      syslog_line("postfix/smtpd", postfix_message("unknown[192.0.2.1]", "canonical table"))));
}

TEST(MtaLogParse, PostfixServiceNames) {
  for (const char* program : {"postfix/smtpd", "postfix/smtps/smtpd", "postfix/submission/smtpd",
                              "postfix-instance/smtpd", "postfix-out/smtpd"}) {
    SCOPED_TRACE(program);
    auto e = parse_mta_log_line(syslog_line(program, postfix_message()));
    ASSERT_TRUE(e);
    EXPECT_EQ(e->client, ip("192.0.2.1"));
  }
  // Not the SMTP server: the outbound client reporting a remote refusal, another program.
  for (const char* program : {"postfix/smtp", "postfix/postscreen", "postfix/smtpd-x", "smtpd",
                              "dovecot", "exim", "sendmail/smtpd"}) {
    SCOPED_TRACE(program);
    EXPECT_FALSE(parse_mta_log_line(syslog_line(program, postfix_message())));
  }
}

TEST(MtaLogParse, PostfixIpv6ClientAndQueueId) {
  auto e = parse_mta_log_line(
      syslog_line("postfix/smtpd", postfix_message("mail.example.net[2001:db8::1]")));
  ASSERT_TRUE(e);
  EXPECT_EQ(e->client, ip("2001:db8::1"));

  std::string with_id = postfix_message();
  with_id.replace(0, 7, "4Bq3Xs1kK9z2Nq");  // a long queue id
  e = parse_mta_log_line(syslog_line("postfix/smtpd", with_id));
  ASSERT_TRUE(e);
  EXPECT_EQ(e->recipient, "nobody@example.org");
  with_id = postfix_message();
  with_id.replace(0, 7, "3F2A81C0D4");  // a short (hex) one
  EXPECT_TRUE(parse_mta_log_line(syslog_line("postfix/smtpd", with_id)));
  with_id.replace(0, 10, "3F2A-81C0");
  EXPECT_FALSE(parse_mta_log_line(syslog_line("postfix/smtpd", with_id)));
}

TEST(MtaLogParse, PostfixPrefixes) {
  const std::string msg = postfix_message("unknown[203.0.113.9]");
  for (const std::string& line : {
           "Dec  3 10:00:00 mx1 postfix/smtpd[4242]: " + msg,
           "Dec 13 10:00:00 mx1 postfix/smtpd[4242]: " + msg,
           "Dec 03 10:00:00.123456 mx1 postfix/smtpd[4242]: " + msg,
           "2026-12-03T10:00:00.123456+00:00 mx1 postfix/smtpd[4242]: " + msg,
           "2026-12-03T10:00:00+0000 mx1 postfix/smtpd[4242]: " + msg,  // journalctl short-iso
           "2026-12-03T10:00:00Z mx1 postfix/smtpd: " + msg,            // no pid
           "MESSAGE=" + msg,                                            // journal export
           msg,                                                         // journalctl -o cat
           msg + "\r",
       }) {
    SCOPED_TRACE(line);
    auto e = parse_mta_log_line(line);
    ASSERT_TRUE(e);
    EXPECT_EQ(e->client, ip("203.0.113.9"));
    EXPECT_EQ(e->recipient, "nobody@example.org");
    EXPECT_EQ(e->helo, "x.example");
  }
  // A timestamp needs host and tag after it.
  EXPECT_FALSE(parse_mta_log_line("Dec  3 10:00:00 " + msg));
  EXPECT_FALSE(parse_mta_log_line("Dec  3 10:00:00 mx1 postfix/smtpd[12x]: " + msg));
}

TEST(MtaLogParse, PostfixHeloIsOptionalAndTakenWhole) {
  std::string msg = postfix_message();
  msg.erase(msg.find(" helo="));
  auto e = parse_mta_log_line(msg);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->helo, "");
  EXPECT_EQ(e->recipient, "nobody@example.org");

  msg = postfix_message();
  msg.replace(msg.find("helo=<x.example>"), 16, "helo=<[192.0.2.1] odd> helo>");
  e = parse_mta_log_line(msg);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->helo, "[192.0.2.1] odd> helo");
}

TEST(MtaLogParse, PostfixRefusalsThatAreNotUnknownRecipients) {
  const std::string head = "Dec  3 10:00:00 mx1 postfix/smtpd[1]: NOQUEUE: reject: RCPT from ";
  const std::string tail = "; from=<a@b.example> to=<x@example.org> proto=ESMTP helo=<h>";
  for (const std::string& line : {
           // relaying, policy servers (spamward's own 5.1.1 included), access maps
           head + "unknown[192.0.2.1]: 554 5.7.1 <x@example.org>: Relay access denied" + tail,
           head +
               "unknown[192.0.2.1]: 550 5.1.1 <x@example.org>: Recipient address rejected: "
               "Recipient refused by spamward: Recipient address rejected: user unknown" +
               tail,
           head +
               "unknown[192.0.2.1]: 554 5.7.1 <x@example.org>: Recipient address rejected: "
               "Access denied" +
               tail,
           // greylisting and soft unknown-user refusals (4xx)
           head +
               "unknown[192.0.2.1]: 450 4.2.0 <x@example.org>: Recipient address rejected: "
               "Greylisted, see http://postgrey.schweikert.ch/help/example.org.html" +
               tail,
           head +
               "unknown[192.0.2.1]: 450 4.1.1 <x@example.org>: Recipient address rejected: "
               "User unknown in local recipient table" +
               tail,
           // the sender, not the recipient
           head +
               "unknown[192.0.2.1]: 550 5.1.0 <a@b.example>: Sender address rejected: User "
               "unknown in local recipient table" +
               tail,
           head +
               "unknown[192.0.2.1]: 550 5.1.1 <a@b.example>: Sender address rejected: User "
               "unknown in local recipient table" +
               tail,
       }) {
    SCOPED_TRACE(line);
    EXPECT_FALSE(parse_mta_log_line(line));
  }
  // warn_if_reject: logged, not refused.
  std::string warn = postfix_message();
  warn.replace(warn.find("reject:"), 7, "reject_warning:");
  EXPECT_FALSE(parse_mta_log_line(warn));
  // postscreen's own refusals (DNSBL, pregreet) name "[ip]:port" and are never about users.
  EXPECT_FALSE(parse_mta_log_line(
      "Dec  3 10:00:00 mx1 postfix/postscreen[9]: NOQUEUE: reject: RCPT from "
      "[192.0.2.1]:41234: 550 5.7.1 Service unavailable; client [192.0.2.1] blocked using "
      "zen.spamhaus.org; from=<a@b.example>, to=<x@example.org>, proto=ESMTP, helo=<h>"));
  // Another stage.
  std::string data = postfix_message();
  data.replace(data.find("RCPT"), 4, "DATA");
  EXPECT_FALSE(parse_mta_log_line(data));
}

TEST(MtaLogParse, PostfixClientMustParse) {
  for (const char* client : {"unknown[192.0.2.999]", "unknown[]", "unknown[example.org]",
                             "[192.0.2.1]", "bad name[192.0.2.1]", "x<y[192.0.2.1]"}) {
    SCOPED_TRACE(client);
    EXPECT_FALSE(parse_mta_log_line(postfix_message(client)));
  }
  EXPECT_TRUE(parse_mta_log_line(postfix_message("_gateway[192.0.2.1]")));
}

TEST(MtaLogParse, PostfixRecipientMustMatchTo) {
  // A recipient crafted to carry the refusal text itself: the first split disagrees with to=.
  const std::string rcpt =
      "\"a>: Recipient address rejected: User unknown in local recipient "
      "table; from=<\"@example.org";
  const std::string line =
      "NOQUEUE: reject: RCPT from unknown[192.0.2.1]: 550 5.1.1 <" + rcpt +
      ">: Recipient address rejected: Recipient refused by spamward; from=<a@b.example> to=<" +
      rcpt + "> proto=ESMTP helo=<h>";
  EXPECT_FALSE(parse_mta_log_line(line));
  std::string other = postfix_message();
  other.replace(other.find("to=<nobody"), 10, "to=<someone");
  EXPECT_FALSE(parse_mta_log_line(other));
}

// ---------------------------------------------------------------------------------------
// Exim

TEST(MtaLogParse, EximHeloAndAddress) {
  auto e = parse_mta_log_line(
      "2026-12-03 10:00:00 H=(helo.example) [192.0.2.1] F=<a@b.example> rejected RCPT "
      "<nobody@example.org>: Unknown user");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->client, ip("192.0.2.1"));
  EXPECT_EQ(e->recipient, "nobody@example.org");
  EXPECT_EQ(e->helo, "helo.example");
}

TEST(MtaLogParse, EximHostForms) {
  struct Case {
    const char* host;
    const char* client;
    const char* helo;
  };
  for (const Case& c : {
           Case{"H=mail.example.net (helo.example) [198.51.100.7]:52011 I=[192.0.2.25]:25",
                "198.51.100.7", "helo.example"},
           Case{"H=mail.example.net [198.51.100.7]", "198.51.100.7", ""},
           Case{"H=[198.51.100.7]", "198.51.100.7", ""},
           Case{"H=[198.51.100.7]:25000", "198.51.100.7", ""},
           Case{"H=([198.51.100.7]) [198.51.100.7]", "198.51.100.7", "[198.51.100.7]"},
           Case{"H=(helo.example) [2001:db8::25]:4711 I=[2001:db8::1]:25", "2001:db8::25",
                "helo.example"},
           Case{"H=(helo.example) [192.0.2.1] U=ident X=TLS1.3:TLS_AES_256_GCM_SHA384:256 "
                "CV=no SNI=mx.example.org",
                "192.0.2.1", "helo.example"},
       }) {
    SCOPED_TRACE(c.host);
    const std::string line = std::string("2026-12-03 10:00:00 ") + c.host +
                             " F=<a@b.example> rejected RCPT <nobody@example.org>: Unknown user";
    auto e = parse_mta_log_line(line);
    ASSERT_TRUE(e);
    EXPECT_EQ(e->client, ip(c.client));
    EXPECT_EQ(e->helo, c.helo);
    EXPECT_EQ(e->recipient, "nobody@example.org");
  }
}

TEST(MtaLogParse, EximReasonsAndPrefixes) {
  const std::string msg =
      "H=(helo.example) [192.0.2.1] F=<> rejected RCPT <info@example.org>: Unrouteable address";
  for (const std::string& line : {
           "2026-12-03 10:00:00 " + msg,
           "2026-12-03 10:00:00.123 " + msg,                              // +millisec
           "2026-12-03 10:00:00 +0100 " + msg,                            // log_timezone
           "2026-12-03 10:00:00.123 +0100 [4711] " + msg,                 // +pid
           "Dec  3 10:00:00 mx1 exim[4711]: 2026-12-03 10:00:00 " + msg,  // syslog_timestamp
           "Dec  3 10:00:00 mx1 exim4[4711]: " + msg,
           "2026-12-03T10:00:00+01:00 mx1 exim[4711]: " + msg,
           "MESSAGE=" + msg,
           msg,
           msg + "\r",
       }) {
    SCOPED_TRACE(line);
    auto e = parse_mta_log_line(line);
    ASSERT_TRUE(e);
    EXPECT_EQ(e->client, ip("192.0.2.1"));
    EXPECT_EQ(e->recipient, "info@example.org");
  }
  // Any case, as sites word their ACL messages; cPanel's "No Such User Here".
  EXPECT_TRUE(parse_mta_log_line(
      "H=[192.0.2.1] F=<a@b.example> rejected RCPT <x@example.org>: unknown user"));
  EXPECT_TRUE(parse_mta_log_line(
      "H=[192.0.2.1] F=<a@b.example> rejected RCPT <x@example.org>: No Such User Here"));
  // Old Exims logged the bare address.
  auto e = parse_mta_log_line(
      "H=[192.0.2.1] F=<a@b.example> rejected RCPT x@example.org: "
      "Unrouteable address");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->recipient, "x@example.org");
  // An Exim line under another program's tag.
  EXPECT_FALSE(parse_mta_log_line("Dec  3 10:00:00 mx1 postfix/smtpd[1]: " + msg));
}

TEST(MtaLogParse, EximRefusalsThatAreNotUnknownRecipients) {
  const std::string head = "2026-12-03 10:00:00 H=(helo.example) [192.0.2.1] F=<a@b.example> ";
  for (const char* rest : {
           "rejected RCPT <x@example.org>: relay not permitted",
           "rejected RCPT <x@example.org>: Sender verify failed",
           "rejected RCPT <x@example.org>: found in zen.spamhaus.org",
           "temporarily rejected RCPT <x@example.org>: greylisted",
           "temporarily rejected RCPT <x@example.org>: Unrouteable address",
           "rejected RCPT <x@example.org>: Unknown user (no such mailbox)",
           "rejected RCPT <x@example.org>: Unknown",
           "rejected MAIL <a@b.example>: Unknown user",
           "rejected RCPT <>: Unknown user",
           "rejected RCPT <x@example.org: Unknown user",
       }) {
    SCOPED_TRACE(rest);
    EXPECT_FALSE(parse_mta_log_line(head + rest));
  }
  EXPECT_FALSE(
      parse_mta_log_line("2026-12-03 10:00:00 H=(helo.example) [192.0.2.999] "
                         "rejected RCPT <x@example.org>: Unknown user"));
  EXPECT_FALSE(
      parse_mta_log_line("2026-12-03 10:00:00 H=(helo.example) rejected RCPT "
                         "<x@example.org>: Unknown user"));
  // A message id: a line about a message, not an RCPT refusal.
  EXPECT_FALSE(
      parse_mta_log_line("2026-12-03 10:00:00 1x5ZA2-00000002VJa-0L1J H=[192.0.2.1] "
                         "rejected RCPT <x@example.org>: Unknown user"));
}

// A client chooses its HELO, sender and recipient. None of them may move the refusal to
// another address (10.0.0.1, a partner of ours): such lines are no event at all.
TEST(MtaLogParse, EximForgedTextNeverNamesAnotherClient) {
  const std::string real = " [203.0.113.66]:40000 F=<a@b.example> rejected RCPT <x@example.org>";
  for (const std::string& forged : std::vector<std::string>{
           // HELO closing the parenthesis and faking the whole rest of a line
           "2026-12-03 10:00:00 H=(x) [10.0.0.1] F=<a> rejected RCPT <b@example.org>: Unknown "
           "user (z)" +
               real + ": Unknown user",
           // HELO with an address and junk after it
           "2026-12-03 10:00:00 H=(x) [10.0.0.1] (y)" + real + ": Unknown user",
           "2026-12-03 10:00:00 H=(x) [10.0.0.1] F=<a)" + real + ": Unknown user",
           "2026-12-03 10:00:00 H=(x) [10.0.0.1]) [203.0.113.66] rejected RCPT <x@example.org>: "
           "Unknown user",
           // a sender carrying " [address]"
           "2026-12-03 10:00:00 H=[203.0.113.66] F=<\"a [10.0.0.1]\"@b.example> rejected RCPT "
           "<x@example.org>: Unknown user",
           // a recipient carrying a second refusal
           "2026-12-03 10:00:00 H=[10.0.0.1] F=<a@b.example> rejected RCPT <\"x rejected RCPT "
           "y\"@example.org>: Unknown user",
       }) {
    SCOPED_TRACE(forged);
    EXPECT_FALSE(parse_mta_log_line(forged));
  }
}

TEST(MtaLogParse, JunkAndHostileLinesAreNoEvents) {
  for (const std::string& line : {
           std::string(),
           std::string("\r"),
           std::string("MESSAGE="),
           std::string("H="),
           std::string("NOQUEUE: reject: RCPT from "),
           std::string("Dec  3 10:00:00 mx1 postfix/smtpd[1]: connect from unknown[192.0.2.1]"),
           std::string(8000, '['),
           std::string(8000, ' '),
           "H=" + std::string(4000, '(') + " rejected RCPT <x@y>: Unknown user",
       }) {
    EXPECT_FALSE(parse_mta_log_line(line)) << line.substr(0, 80);
  }
  // Many " to=<" and ">: " in a hostile sender still end in one linear parse.
  std::string many;
  for (int i = 0; i < 1000; ++i) many += " to=<x>: ";
  std::string line = postfix_message();
  line.insert(line.find("from=<") + 6, many);
  EXPECT_FALSE(parse_mta_log_line(line));
  // Recipients are bounded (1024 bytes).
  const std::string at_limit = std::string(1024 - 12, 'a') + "@example.org";
  EXPECT_TRUE(
      parse_mta_log_line(postfix_message("unknown[192.0.2.1]", "local recipient table", at_limit)));
  EXPECT_FALSE(parse_mta_log_line(
      postfix_message("unknown[192.0.2.1]", "local recipient table", "a" + at_limit)));
  EXPECT_TRUE(parse_mta_log_line("H=[192.0.2.1] rejected RCPT <" + at_limit + ">: Unknown user"));
  EXPECT_FALSE(parse_mta_log_line("H=[192.0.2.1] rejected RCPT <a" + at_limit + ">: Unknown user"));
  // An embedded NUL is just a byte.
  std::string nul = postfix_message();
  nul.insert(nul.find("helo=<") + 6, std::string(1, '\0'));
  auto e = parse_mta_log_line(nul);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->helo, std::string("\0x.example", 10));
}

// What the fuzz target checks, over random mutations of real lines (fixed seed): an event's
// recipient and HELO are copied from the line, never built, and a trailing CR changes nothing.
TEST(MtaLogParse, MutatedLinesKeepTheContract) {
  const std::vector<std::string> seeds = {
      syslog_line("postfix/smtpd", postfix_message()),
      syslog_line("postfix/smtps/smtpd", postfix_message("mx.example.net[2001:db8::1]")),
      "2026-12-03 10:00:00 H=mail.example.net (helo.example) [198.51.100.7]:52011 "
      "I=[192.0.2.25]:25 F=<a@b.example> rejected RCPT <nobody@example.org>: Unknown user",
  };
  std::mt19937 rng(20261203);
  const std::string alphabet("[]()<>:; =@.5HFIRCPTto\"\r\n\0x", 27);
  int events = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string line = seeds[i % seeds.size()];
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < edits && !line.empty(); ++k) {
      const size_t at = rng() % line.size();
      const char c = alphabet[rng() % alphabet.size()];
      switch (rng() % 3) {
        case 0:
          line[at] = c;
          break;
        case 1:
          line.insert(line.begin() + static_cast<std::ptrdiff_t>(at), c);
          break;
        default:
          line.erase(at, 1 + rng() % 8);
          break;
      }
    }
    auto e = parse_mta_log_line(line);
    auto with_cr = parse_mta_log_line(line + "\r");
    if (!line.empty() && line.back() != '\r') {
      ASSERT_EQ(e.has_value(), with_cr.has_value()) << line;
    }
    if (!e) continue;
    ++events;
    ASSERT_FALSE(e->recipient.empty()) << line;
    ASSERT_NE(line.find(e->recipient), std::string::npos) << line;
    ASSERT_NE(line.find(e->helo), std::string::npos) << line;
  }
  EXPECT_GT(events, 0);  // the mutations left some lines intact enough to count
}

// ---------------------------------------------------------------------------------------
// The follower

constexpr auto kPoll = std::chrono::milliseconds(10);
constexpr auto kDeadline = std::chrono::seconds(10);

class MtaLogFollowerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "spamward-mtalog-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    path_ = (dir_ / "mail.log").string();
  }
  void TearDown() override {
    follower_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  void make_follower() {
    follower_ = std::make_unique<MtaLogFollower>(
        path_,
        [this](const UnknownRecipientEvent& e) {
          std::lock_guard lock(mu_);
          events_.push_back(e);
          cv_.notify_all();
        },
        kPoll);
  }

  // Appends `text` with one write(2), as a logger does.
  static void append(const std::string& path, std::string_view text) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    ASSERT_GE(fd, 0) << path;
    ASSERT_EQ(::write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
    ::close(fd);
  }
  void append(std::string_view text) { append(path_, text); }

  // True once `n` events arrived (false at the deadline).
  bool wait_events(size_t n) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, kDeadline, [&] { return events_.size() >= n; });
  }
  template <class Pred>
  static bool wait_until(Pred pred) {
    const auto deadline = std::chrono::steady_clock::now() + kDeadline;
    while (!pred()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    return true;
  }
  std::vector<std::string> recipients() {
    std::lock_guard lock(mu_);
    std::vector<std::string> out;
    for (const auto& e : events_) out.push_back(e.recipient);
    return out;
  }
  // A few polls' time, for "nothing happens" checks; what follows asserts with a deadline.
  static void let_it_poll() { std::this_thread::sleep_for(kPoll * 8); }

  static std::string event_line(std::string_view rcpt, std::string_view client = "192.0.2.1") {
    return syslog_line("postfix/smtpd", postfix_message("unknown[" + std::string(client) + "]",
                                                        "local recipient table", rcpt)) +
           "\n";
  }

  std::filesystem::path dir_;
  std::string path_;
  std::unique_ptr<MtaLogFollower> follower_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<UnknownRecipientEvent> events_;
};

TEST_F(MtaLogFollowerTest, StartsAtTheEndAndReadsAppendedLines) {
  append(event_line("old@example.org"));
  make_follower();
  follower_->start();
  append(event_line("new@example.org", "2001:db8::7"));
  append("Dec  3 10:00:01 mx1 postfix/smtpd[1]: disconnect from unknown[192.0.2.1]\n");
  std::string crlf = event_line("crlf@example.org");
  crlf.insert(crlf.size() - 1, "\r");
  append(crlf);
  ASSERT_TRUE(wait_events(2));
  ASSERT_TRUE(wait_until([&] { return follower_->lines_read() == 3; }));
  EXPECT_EQ(recipients(), (std::vector<std::string>{"new@example.org", "crlf@example.org"}));
  EXPECT_EQ(follower_->events(), 2u);
  std::lock_guard lock(mu_);
  EXPECT_EQ(events_[0].client, ip("2001:db8::7"));
}

TEST_F(MtaLogFollowerTest, PartialLineWaitsForItsNewline) {
  append("");
  make_follower();
  follower_->start();
  const std::string line = event_line("split@example.org");
  append(line.substr(0, 40));
  let_it_poll();
  EXPECT_EQ(follower_->lines_read(), 0u);
  append(line.substr(40, 30));
  let_it_poll();
  EXPECT_EQ(follower_->lines_read(), 0u);
  append(line.substr(70));
  ASSERT_TRUE(wait_events(1));
  EXPECT_EQ(recipients(), std::vector<std::string>{"split@example.org"});
  EXPECT_EQ(follower_->lines_read(), 1u);
}

TEST_F(MtaLogFollowerTest, FollowsRotationByRename) {
  append("");
  make_follower();
  follower_->start();
  append(event_line("a@example.org"));
  ASSERT_TRUE(wait_events(1));
  // logrotate renames; the MTA writes a last line to the old file before it reopens.
  std::filesystem::rename(path_, path_ + ".1");
  append(path_ + ".1", event_line("b@example.org"));
  let_it_poll();  // the path is missing for a while: the old file is still followed
  append(event_line("c@example.org"));
  ASSERT_TRUE(wait_events(3));
  append(event_line("d@example.org"));
  ASSERT_TRUE(wait_events(4));
  EXPECT_EQ(recipients(), (std::vector<std::string>{"a@example.org", "b@example.org",
                                                    "c@example.org", "d@example.org"}));
}

TEST_F(MtaLogFollowerTest, RotationWithTheNewFileAlreadyThere) {
  append("");
  make_follower();
  follower_->start();
  // Rename and create in one go, between two polls or not: both lines arrive, in order.
  std::filesystem::rename(path_, path_ + ".1");
  append(path_ + ".1", event_line("old@example.org"));
  append(event_line("new@example.org"));
  ASSERT_TRUE(wait_events(2));
  EXPECT_EQ(recipients(), (std::vector<std::string>{"old@example.org", "new@example.org"}));
}

TEST_F(MtaLogFollowerTest, RereadsATruncatedFile) {
  append("");
  make_follower();
  follower_->start();
  for (int i = 0; i < 20; ++i) append("Dec  3 10:00:00 mx1 postfix/smtpd[1]: filler line\n");
  append(event_line("before@example.org"));
  ASSERT_TRUE(wait_events(1));
  std::filesystem::resize_file(path_, 0);  // copytruncate
  append(event_line("after@example.org"));
  ASSERT_TRUE(wait_events(2));
  EXPECT_EQ(recipients(), (std::vector<std::string>{"before@example.org", "after@example.org"}));
  EXPECT_EQ(follower_->lines_read(), 22u);
}

TEST_F(MtaLogFollowerTest, WaitsForAFileThatDoesNotExistYet) {
  make_follower();
  follower_->start();
  let_it_poll();
  EXPECT_EQ(follower_->lines_read(), 0u);
  // A file that appears later is new: read from its beginning.
  append(event_line("first@example.org") + event_line("second@example.org"));
  ASSERT_TRUE(wait_events(2));
  EXPECT_EQ(recipients(), (std::vector<std::string>{"first@example.org", "second@example.org"}));
}

TEST_F(MtaLogFollowerTest, SkipsOverlongLinesWithoutBufferingThem) {
  append("");
  make_follower();
  follower_->start();
  // An event line just over the limit (without its newline), written in two pieces so the
  // follower meets it across reads; then one exactly at the limit, which counts.
  std::string longer = event_line("long@example.org");
  longer.insert(longer.find("helo=<") + 6, std::string(MtaLogFollower::kMaxLineBytes, 'h'));
  ASSERT_GT(longer.size() - 1, MtaLogFollower::kMaxLineBytes);
  append(longer.substr(0, 5000));
  let_it_poll();
  append(longer.substr(5000));
  std::string exact = event_line("exact@example.org");
  exact.insert(exact.find("helo=<") + 6,
               std::string(MtaLogFollower::kMaxLineBytes - (exact.size() - 1), 'h'));
  ASSERT_EQ(exact.size() - 1, MtaLogFollower::kMaxLineBytes);
  append(exact);
  // And one far over the limit in a single write.
  append(std::string(100000, 'x') + "\n" + event_line("after@example.org"));
  ASSERT_TRUE(wait_events(2));
  ASSERT_TRUE(wait_until([&] { return follower_->lines_skipped() == 2; }));
  EXPECT_EQ(recipients(), (std::vector<std::string>{"exact@example.org", "after@example.org"}));
  EXPECT_EQ(follower_->lines_read(), 2u);
}

TEST_F(MtaLogFollowerTest, ACallbackThatThrowsDoesNotStopIt) {
  append("");
  int calls = 0;
  follower_ = std::make_unique<MtaLogFollower>(
      path_,
      [&](const UnknownRecipientEvent& e) {
        std::lock_guard lock(mu_);
        ++calls;
        events_.push_back(e);
        cv_.notify_all();
        if (calls == 1) throw std::runtime_error("tracker failed");
      },
      kPoll);
  follower_->start();
  append(event_line("one@example.org"));
  append(event_line("two@example.org"));
  ASSERT_TRUE(wait_events(2));
  EXPECT_EQ(follower_->events(), 2u);
  follower_.reset();  // before `calls` goes
}

TEST_F(MtaLogFollowerTest, StopEndsFollowingAndStartResumesAtTheEnd) {
  append("");
  make_follower();
  follower_->start();
  append(event_line("one@example.org"));
  ASSERT_TRUE(wait_events(1));
  follower_->stop();
  follower_->stop();  // idempotent
  append(event_line("while-stopped@example.org"));
  let_it_poll();
  EXPECT_EQ(follower_->events(), 1u);
  follower_->start();
  append(event_line("two@example.org"));
  ASSERT_TRUE(wait_events(2));
  EXPECT_EQ(recipients(), (std::vector<std::string>{"one@example.org", "two@example.org"}));
}

TEST_F(MtaLogFollowerTest, DestructorStopsAPollingFollower) {
  make_follower();  // missing file: the thread keeps polling
  follower_->start();
  let_it_poll();
  const auto t0 = std::chrono::steady_clock::now();
  follower_.reset();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2));
}

}  // namespace
}  // namespace spamward
