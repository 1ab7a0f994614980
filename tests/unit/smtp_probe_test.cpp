// `spamward probe backscatter` (cli/smtp_probe.h): the SMTP reply parser and its limits,
// HOST[:PORT], option checks, and the verdicts against a scripted SMTP server on 127.0.0.1.
#include "cli/smtp_probe.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace spamward::cli {
namespace {

// "spamward-probe-" and 12 lower-case hex digits, then `rest`.
bool is_probe_address(const std::string& s, const std::string& rest) {
  const std::string prefix = "spamward-probe-";
  if (s.size() != prefix.size() + 12 + rest.size()) return false;
  if (s.compare(0, prefix.size(), prefix) != 0) return false;
  for (size_t i = prefix.size(); i < prefix.size() + 12; ++i) {
    if (!std::isdigit(static_cast<unsigned char>(s[i])) && (s[i] < 'a' || s[i] > 'f')) {
      return false;
    }
  }
  return s.compare(prefix.size() + 12, std::string::npos, rest) == 0;
}

// ---------------------------------------------------------------------------------------
// Reply parser

std::vector<SmtpReply> parse_all(SmtpReplyParser& p) {
  std::vector<SmtpReply> out;
  SmtpReply r;
  while (p.next(r)) out.push_back(r);
  return out;
}

TEST(SmtpProbeReplyParser, SingleAndMultiLine) {
  SmtpReplyParser p;
  p.feed("220 mx.example.test ESMTP\r\n250-mx.example.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n");
  auto replies = parse_all(p);
  ASSERT_EQ(replies.size(), 2u);
  EXPECT_EQ(replies[0].code, 220);
  EXPECT_EQ(replies[0].lines, std::vector<std::string>{"mx.example.test ESMTP"});
  EXPECT_EQ(replies[1].code, 250);
  EXPECT_EQ(replies[1].lines,
            (std::vector<std::string>{"mx.example.test", "PIPELINING", "8BITMIME"}));
  EXPECT_EQ(replies[1].text(), "mx.example.test / PIPELINING / 8BITMIME");
  EXPECT_EQ(p.buffered(), 0u);
  EXPECT_EQ(p.error(), "");
}

TEST(SmtpProbeReplyParser, BareCodeLfOnlyAndEmptyContinuation) {
  SmtpReplyParser p;
  p.feed("250-\r\n250\n354 go ahead\n");
  auto replies = parse_all(p);
  ASSERT_EQ(replies.size(), 2u);
  EXPECT_EQ(replies[0].code, 250);
  EXPECT_EQ(replies[0].lines, (std::vector<std::string>{"", ""}));
  EXPECT_EQ(replies[1].code, 354);
  EXPECT_EQ(replies[1].first_digit(), 3);
}

TEST(SmtpProbeReplyParser, ByteByByteGivesTheSameReplies) {
  const std::string input = "250-first\r\n250-second line\r\n250 last\r\n550 5.1.1 no\r\n";
  SmtpReplyParser whole;
  whole.feed(input);
  auto expected = parse_all(whole);
  SmtpReplyParser split;
  std::vector<SmtpReply> got;
  for (char c : input) {
    split.feed(std::string_view(&c, 1));
    SmtpReply r;
    while (split.next(r)) got.push_back(r);
  }
  ASSERT_EQ(got.size(), expected.size());
  ASSERT_EQ(got.size(), 2u);
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].code, expected[i].code);
    EXPECT_EQ(got[i].lines, expected[i].lines);
  }
}

TEST(SmtpProbeReplyParser, PartialReplyIsNotReturned) {
  SmtpReplyParser p;
  p.feed("250-one\r\n250 tw");
  SmtpReply r;
  EXPECT_FALSE(p.next(r));
  EXPECT_GT(p.buffered(), 0u);
  p.feed("o\r\n");
  ASSERT_TRUE(p.next(r));
  EXPECT_EQ(r.lines, (std::vector<std::string>{"one", "two"}));
  EXPECT_EQ(p.buffered(), 0u);
}

TEST(SmtpProbeReplyParser, LineLengthLimit) {
  SmtpReplyLimits limits;  // 2000 bytes, CRLF included
  std::string exact = "250 " + std::string(limits.max_line_bytes - 6, 'x') + "\r\n";
  ASSERT_EQ(exact.size(), limits.max_line_bytes);
  SmtpReplyParser ok(limits);
  ok.feed(exact);
  SmtpReply r;
  ASSERT_TRUE(ok.next(r)) << ok.error();
  EXPECT_EQ(r.lines[0].size(), limits.max_line_bytes - 6);

  SmtpReplyParser over(limits);
  over.feed("250 " + std::string(limits.max_line_bytes - 5, 'x') + "\r\n");
  EXPECT_FALSE(over.next(r));
  EXPECT_NE(over.error().find("longer than 2000"), std::string::npos) << over.error();

  // A line that never ends is cut off at the limit: the buffer stays bounded.
  SmtpReplyParser endless(limits);
  for (int i = 0; i < 1000; ++i) endless.feed(std::string(1000, 'y'));
  EXPECT_FALSE(endless.error().empty());
  EXPECT_LE(endless.buffered(), limits.max_line_bytes);
}

TEST(SmtpProbeReplyParser, AtMost100Lines) {
  std::string hundred;
  for (int i = 0; i < 99; ++i) hundred += "250-line\r\n";
  hundred += "250 end\r\n";
  SmtpReplyParser ok;
  ok.feed(hundred);
  SmtpReply r;
  ASSERT_TRUE(ok.next(r)) << ok.error();
  EXPECT_EQ(r.lines.size(), 100u);

  std::string more;
  for (int i = 0; i < 100; ++i) more += "250-line\r\n";
  more += "250 end\r\n";
  SmtpReplyParser over;
  over.feed(more);
  EXPECT_FALSE(over.next(r));
  EXPECT_NE(over.error().find("more than 100 lines"), std::string::npos) << over.error();
}

TEST(SmtpProbeReplyParser, BadCodesAndMalformedLines) {
  for (const char* bad :
       {"199 too low\r\n", "600 too high\r\n", "260 second digit\r\n", "2x0 letter\r\n", "abc\r\n",
        "25\r\n", "\r\n", "250x no separator\r\n", "250-a\r\n251 code changes\r\n",
        "250 nul\0byte\r\n", "250 bare\rcr\r\n", "-250 dash\r\n", " 250 space\r\n"}) {
    std::string input(bad, bad + std::char_traits<char>::length(bad));
    if (std::string_view(bad) == "250 nul") input = std::string("250 nul\0byte\r\n", 14);
    SmtpReplyParser p;
    p.feed(input);
    SmtpReply r;
    EXPECT_FALSE(p.next(r)) << "accepted: " << printable(input);
    EXPECT_FALSE(p.error().empty()) << "no error for: " << printable(input);
  }
}

TEST(SmtpProbeReplyParser, ErrorSticksAndDropsWhatFollows) {
  SmtpReplyParser p;
  p.feed("999 bad\r\n");
  std::string first = p.error();
  ASSERT_FALSE(first.empty());
  p.feed("250 fine\r\n");
  SmtpReply r;
  EXPECT_FALSE(p.next(r));
  EXPECT_EQ(p.error(), first);
  EXPECT_EQ(p.buffered(), 0u);
}

TEST(SmtpProbeReplyParser, RepliesBeforeAnErrorAreKept) {
  // Whether "250 ok" was taken before the bad line arrived or not, the result is the same.
  SmtpReplyParser p;
  p.feed("250 ok\r\n250-half\r\nnonsense\r\n250 after\r\n");
  EXPECT_FALSE(p.error().empty());
  SmtpReply r;
  ASSERT_TRUE(p.next(r));
  EXPECT_EQ(r.code, 250);
  EXPECT_EQ(r.lines, std::vector<std::string>{"ok"});
  EXPECT_FALSE(p.next(r));  // neither the half reply nor anything after the error
  EXPECT_EQ(p.buffered(), 0u);
}

TEST(SmtpProbePrintable, EscapesControlAndHighBytesAndCuts) {
  EXPECT_EQ(printable("ok text"), "ok text");
  EXPECT_EQ(printable(std::string("a\x1b[31m\xff\\", 8)), "a\\x1b[31m\\xff\\\\");
  EXPECT_EQ(printable(std::string(300, 'z'), 10), std::string(10, 'z') + "...");
}

// ---------------------------------------------------------------------------------------
// HOST[:PORT] and option values

TEST(SmtpProbeHostPort, Forms) {
  std::string err;
  auto a = parse_host_port("mx.example.org", &err);
  ASSERT_TRUE(a) << err;
  EXPECT_EQ(a->host, "mx.example.org");
  EXPECT_EQ(a->port, 25);
  auto b = parse_host_port("127.0.0.1:2525", &err);
  ASSERT_TRUE(b) << err;
  EXPECT_EQ(b->host, "127.0.0.1");
  EXPECT_EQ(b->port, 2525);
  auto c = parse_host_port("[2001:db8::1]:587", &err);
  ASSERT_TRUE(c) << err;
  EXPECT_EQ(c->host, "2001:db8::1");
  EXPECT_EQ(c->port, 587);
  auto d = parse_host_port("[::1]", &err);
  ASSERT_TRUE(d) << err;
  EXPECT_EQ(d->host, "::1");
  EXPECT_EQ(d->port, 25);
  auto e = parse_host_port("2001:db8::25", &err);
  ASSERT_TRUE(e) << err;
  EXPECT_EQ(e->host, "2001:db8::25");
  EXPECT_EQ(e->port, 25);
}

TEST(SmtpProbeHostPort, Refused) {
  for (const char* bad :
       {"", ":25", "host:", "host:0", "host:65536", "host:2x", "[::1", "[::1]x", "[mx.org]:25",
        "[::1]:", "a b", "mx\r\n.org", "2001:db8::zz", "mx_!.org", "host:25:26", "]host"}) {
    std::string err;
    EXPECT_FALSE(parse_host_port(bad, &err)) << "accepted: " << printable(bad);
    EXPECT_FALSE(err.empty()) << printable(bad);
  }
}

TEST(SmtpProbeArguments, RefusesWhatCouldBreakACommand) {
  EXPECT_EQ(smtp_argument_problem("example.org", "domain"), "");
  EXPECT_EQ(smtp_argument_problem("probe@example.org", "address"), "");
  EXPECT_EQ(smtp_argument_problem("postmaster@[192.0.2.1]", "address"), "");
  EXPECT_EQ(smtp_argument_problem("mx.example.org", "helo"), "");
  EXPECT_EQ(smtp_argument_problem("[IPv6:2001:db8::1]", "helo"), "");
  EXPECT_NE(smtp_argument_problem("", "domain"), "");
  EXPECT_NE(smtp_argument_problem("localhost", "domain"), "");
  EXPECT_NE(smtp_argument_problem("192.0.2.1", "domain"), "");
  EXPECT_NE(smtp_argument_problem("a@example.org\r\nDATA", "address"), "");
  EXPECT_NE(smtp_argument_problem("<a@example.org>", "address"), "");
  EXPECT_NE(smtp_argument_problem("a b@example.org", "address"), "");
  EXPECT_NE(smtp_argument_problem("nobody", "address"), "");
  EXPECT_NE(smtp_argument_problem("@example.org", "address"), "");
  EXPECT_NE(smtp_argument_problem("mx.example.org\nRSET", "helo"), "");
  EXPECT_NE(smtp_argument_problem(std::string(256, 'a'), "helo"), "");
}

TEST(SmtpProbeArguments, RandomLocalPart) {
  std::string a = random_probe_local_part(), b = random_probe_local_part();
  EXPECT_TRUE(is_probe_address(a, "")) << a;
  EXPECT_FALSE(is_probe_address("spamward-probe-0123456789aG", ""));  // the checker checks
  EXPECT_NE(a, b);
}

// ---------------------------------------------------------------------------------------
// A scripted SMTP server: one connection on 127.0.0.1, a free port, replies chosen by
// `answer` for each command line it receives (which it records). A reply of kHang means: say
// nothing more, wait for the client to go away; kClose: close the connection. A greeting of
// kDrip sends "220-slow" lines every 50 ms and never ends the reply.

const std::string kHang = "<hang>";
const std::string kClose = "<close>";
const std::string kDrip = "<drip>";

class FakeSmtp {
 public:
  std::string greeting = "220 mx.example.test ESMTP fake\r\n";
  std::string unknown_rcpt = "550 5.1.1 <x>: Recipient address rejected: User unknown\r\n";
  std::string postmaster = "250 2.1.5 Ok\r\n";
  std::string ehlo = "250-mx.example.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n";
  std::string mail = "250 2.1.0 Ok\r\n";
  std::function<std::string(const std::string&)> answer;  // overrides the above when set

  explicit FakeSmtp(bool ipv6 = false) : host_(ipv6 ? "::1" : "127.0.0.1") {
    fd_ = ::socket(ipv6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_storage ss{};
    socklen_t len;
    if (ipv6) {
      auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
      a->sin6_family = AF_INET6;
      a->sin6_addr = in6addr_loopback;
      len = sizeof *a;
    } else {
      auto* a = reinterpret_cast<sockaddr_in*>(&ss);
      a->sin_family = AF_INET;
      a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      len = sizeof *a;
    }
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&ss), len) != 0 || ::listen(fd_, 4) != 0) {
      throw std::runtime_error("FakeSmtp: bind/listen failed");
    }
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&ss), &len);
    port = ntohs(ipv6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port
                      : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  }
  ~FakeSmtp() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    ::close(fd_);
  }

  void start() {
    thread_ = std::thread([this] { serve(); });
  }

  std::vector<std::string> received() {
    std::lock_guard<std::mutex> lock(mu_);
    return received_;
  }
  bool received_verb(const std::string& verb) {
    for (const std::string& l : received()) {
      if (l.compare(0, verb.size(), verb) == 0) return true;
    }
    return false;
  }

  ProbeOptions options() const {
    ProbeOptions o;
    o.target = HostPort{host_, port};
    o.timeout = std::chrono::milliseconds(5000);
    return o;
  }

  uint16_t port = 0;

 private:
  std::string reply_to(const std::string& line) {
    if (answer) {
      std::string r = answer(line);
      if (!r.empty()) return r;
    }
    std::string upper = line.substr(0, 4);
    for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    if (upper == "EHLO") return ehlo;
    if (upper == "HELO") return "250 mx.example.test\r\n";
    if (upper == "MAIL") return mail;
    if (upper == "RCPT") {
      return line.find("<postmaster@") != std::string::npos ? postmaster : unknown_rcpt;
    }
    if (upper == "RSET") return "250 2.0.0 Ok\r\n";
    if (upper == "QUIT") return "221 2.0.0 Bye\r\n";
    if (upper == "DATA") return "354 End data with <CR><LF>.<CR><LF>\r\n";
    return "502 5.5.2 Error: command not recognized\r\n";
  }

  bool wait_readable(int fd) {
    for (int i = 0; i < 200 && !stop_; ++i) {  // at most 10 s
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 50) > 0) return true;
    }
    return false;
  }

  void serve() {
    if (!wait_readable(fd_)) return;
    int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) return;
    bool hang = greeting == kHang;
    if (greeting == kDrip) {
      const std::string line = "220-slow\r\n";
      for (int i = 0; i < 200 && !stop_; ++i) {
        if (::send(c, line.data(), line.size(), MSG_NOSIGNAL) < 0) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      ::close(c);
      return;
    }
    if (!hang) ::send(c, greeting.data(), greeting.size(), MSG_NOSIGNAL);
    std::string buf;
    char chunk[1024];
    while (wait_readable(c)) {
      ssize_t n = ::recv(c, chunk, sizeof chunk, 0);
      if (n <= 0) break;
      buf.append(chunk, static_cast<size_t>(n));
      size_t nl;
      while ((nl = buf.find("\r\n")) != std::string::npos) {
        std::string line = buf.substr(0, nl);
        buf.erase(0, nl + 2);
        {
          std::lock_guard<std::mutex> lock(mu_);
          received_.push_back(line);
        }
        if (hang) continue;
        std::string r = reply_to(line);
        if (r == kHang) {
          hang = true;
          continue;
        }
        if (r == kClose) {
          ::close(c);
          return;
        }
        ::send(c, r.data(), r.size(), MSG_NOSIGNAL);
        if (line == "QUIT") {
          ::close(c);
          return;
        }
      }
    }
    ::close(c);
  }

  std::string host_;
  int fd_ = -1;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::vector<std::string> received_;
};

// Every scripted session: no DATA, and the recipient commands never carry anything else.
void expect_no_data(FakeSmtp& server) {
  for (const std::string& line : server.received()) {
    EXPECT_NE(line.substr(0, 4), "DATA") << "DATA was sent";
    EXPECT_NE(line.substr(0, 4), "BDAT") << "BDAT was sent";
  }
}

// Starts the scripted server and probes it with its default options.
ProbeResult probe(FakeSmtp& server) {
  server.start();
  return run_backscatter_probe(server.options());
}

// The probe could not tell, and its summary says why (contains `why`).
void expect_cannot_tell(const ProbeResult& r, std::string_view why) {
  EXPECT_EQ(r.verdict, ProbeVerdict::unknown) << r.summary;
  EXPECT_NE(r.summary.find(why), std::string::npos) << r.summary;
}

TEST(SmtpProbeDialogue, RefusesUnknownRecipientIsSafe) {
  FakeSmtp server;
  server.start();
  std::vector<std::string> traced;
  ProbeOptions o = server.options();
  o.trace = [&traced](const std::string& l) { traced.push_back(l); };
  ProbeResult r = run_backscatter_probe(o);
  EXPECT_EQ(r.verdict, ProbeVerdict::safe) << r.summary;
  EXPECT_EQ(static_cast<int>(r.verdict), 0);
  EXPECT_NE(r.summary.find("refuses unknown recipients in the SMTP dialogue: safe"),
            std::string::npos)
      << r.summary;
  EXPECT_EQ(r.domain, "mx.example.test");  // from the greeting
  EXPECT_TRUE(is_probe_address(r.rcpt, "@mx.example.test")) << r.rcpt;
  EXPECT_EQ(traced, r.transcript);
  auto got = server.received();
  ASSERT_GE(got.size(), 6u);
  EXPECT_EQ(got[0].substr(0, 5), "EHLO ");
  // Not the null sender: postmaster@ the HELO name (an FQDN or an address literal).
  EXPECT_EQ(got[1].substr(0, 22), "MAIL FROM:<postmaster@") << got[1];
  EXPECT_EQ(got[1], "MAIL FROM:<postmaster@" + got[0].substr(5) + ">");
  EXPECT_EQ(got[2], "RCPT TO:<postmaster@mx.example.test>");
  EXPECT_EQ(got[3], "RCPT TO:<" + r.rcpt + ">");
  EXPECT_EQ(got[4], "RSET");
  EXPECT_EQ(got[5], "QUIT");
  expect_no_data(server);
}

TEST(SmtpProbeDialogue, AcceptsUnknownRecipientIsVulnerable) {
  FakeSmtp server;
  server.unknown_rcpt = "250 2.1.5 Ok\r\n";
  server.start();
  ProbeOptions o = server.options();
  o.domain = "local.example.test";
  ProbeResult r = run_backscatter_probe(o);
  EXPECT_EQ(r.verdict, ProbeVerdict::vulnerable) << r.summary;
  EXPECT_EQ(static_cast<int>(r.verdict), 1);
  EXPECT_NE(r.summary.find("vulnerable"), std::string::npos) << r.summary;
  std::string advice;
  for (const std::string& a : r.advice) advice += a + "\n";
  EXPECT_NE(advice.find("local_recipient_maps"), std::string::npos);
  EXPECT_NE(advice.find("relay_recipient_maps"), std::string::npos);
  EXPECT_NE(advice.find("smtpd_reject_unlisted_recipient = yes"), std::string::npos);
  EXPECT_NE(advice.find("backup MX"), std::string::npos);
  EXPECT_NE(advice.find("catch-all"), std::string::npos);
  EXPECT_TRUE(server.received_verb("RCPT TO:<postmaster@local.example.test>"));
  EXPECT_TRUE(server.received_verb("RCPT TO:<spamward-probe-"));
  EXPECT_TRUE(server.received_verb("RSET"));
  EXPECT_TRUE(server.received_verb("QUIT"));
  expect_no_data(server);
}

TEST(SmtpProbeDialogue, OverIpv6) {
  FakeSmtp server(/*ipv6=*/true);
  server.unknown_rcpt = "250 2.1.5 Ok\r\n";
  server.start();
  std::string err;
  auto target = parse_host_port("[::1]:" + std::to_string(server.port), &err);
  ASSERT_TRUE(target) << err;
  ProbeOptions o = server.options();
  o.target = *target;
  ProbeResult r = run_backscatter_probe(o);
  EXPECT_EQ(r.verdict, ProbeVerdict::vulnerable) << r.summary;
  EXPECT_EQ(r.summary.rfind("[::1]:" + std::to_string(server.port) + " accepts mail", 0), 0u)
      << r.summary;
  auto got = server.received();
  ASSERT_GE(got.size(), 2u);
  // Our FQDN, or without one the address literal of our end.
  EXPECT_TRUE(got[0] == "EHLO [IPv6:::1]" || got[0].find('.') != std::string::npos) << got[0];
  EXPECT_EQ(got[1], "MAIL FROM:<postmaster@" + got[0].substr(5) + ">");
  expect_no_data(server);
}

TEST(SmtpProbeDialogue, GivenRecipientHeloAndSenderAreUsed) {
  FakeSmtp server;
  server.start();
  ProbeOptions o = server.options();
  o.rcpt = "nobody-here@example.org";
  o.helo = "probe.example.net";
  o.from = "me@example.net";
  ProbeResult r = run_backscatter_probe(o);
  EXPECT_EQ(r.verdict, ProbeVerdict::safe) << r.summary;
  EXPECT_EQ(r.domain, "example.org");  // the control recipient follows --rcpt's domain
  auto got = server.received();
  ASSERT_GE(got.size(), 4u);
  EXPECT_EQ(got[0], "EHLO probe.example.net");
  EXPECT_EQ(got[1], "MAIL FROM:<me@example.net>");
  EXPECT_EQ(got[2], "RCPT TO:<postmaster@example.org>");
  EXPECT_EQ(got[3], "RCPT TO:<nobody-here@example.org>");
  expect_no_data(server);
}

TEST(SmtpProbeDialogue, PostmasterRefusedCannotTell) {
  FakeSmtp server;
  server.postmaster = "554 5.7.1 <postmaster@mx.example.test>: Relay access denied\r\n";
  server.unknown_rcpt = "250 2.1.5 Ok\r\n";  // must not matter
  ProbeResult r = probe(server);
  EXPECT_EQ(r.verdict, ProbeVerdict::unknown) << r.summary;
  EXPECT_EQ(static_cast<int>(r.verdict), 2);
  EXPECT_NE(r.summary.find("refused <postmaster@mx.example.test>"), std::string::npos) << r.summary;
  ASSERT_FALSE(r.advice.empty());
  EXPECT_NE(r.advice[0].find("--domain"), std::string::npos);
  EXPECT_FALSE(server.received_verb("RCPT TO:<spamward-probe-"));  // stopped at the control
  EXPECT_TRUE(server.received_verb("QUIT"));
  expect_no_data(server);
}

TEST(SmtpProbeDialogue, TemporaryFailureCannotTell) {
  FakeSmtp server;
  server.unknown_rcpt = "450 4.2.0 <x>: Recipient address rejected: Greylisted\r\n";
  ProbeResult r = probe(server);
  expect_cannot_tell(r, "450");
  ASSERT_FALSE(r.advice.empty());
  EXPECT_NE(r.advice[0].find("greylisting"), std::string::npos);
  expect_no_data(server);
}

TEST(SmtpProbeDialogue, BadGreetingCannotTell) {
  FakeSmtp server;
  server.greeting = "554 5.7.1 go away\r\n";
  ProbeResult r = probe(server);
  expect_cannot_tell(r, "did not greet with 220");
  EXPECT_FALSE(server.received_verb("EHLO"));
  EXPECT_FALSE(server.received_verb("MAIL"));
  expect_no_data(server);
}

TEST(SmtpProbeDialogue, MalformedGreetingCannotTell) {
  FakeSmtp server;
  server.greeting = "SSH-2.0-OpenSSH_9.2\r\n";
  ProbeResult r = probe(server);
  expect_cannot_tell(r, "malformed reply");
  EXPECT_TRUE(server.received().empty());  // a broken session gets no commands at all
}

TEST(SmtpProbeDialogue, OverlongReplyCannotTell) {
  FakeSmtp server;
  server.ehlo = "250 " + std::string(5000, 'x') + "\r\n";
  ProbeResult r = probe(server);
  expect_cannot_tell(r, "longer than 2000 bytes");
  EXPECT_FALSE(server.received_verb("MAIL"));
}

TEST(SmtpProbeDialogue, GreetingTimeoutCannotTell) {
  FakeSmtp server;
  server.greeting = kHang;
  server.start();
  ProbeOptions o = server.options();
  o.timeout = std::chrono::milliseconds(300);
  auto t0 = std::chrono::steady_clock::now();
  ProbeResult r = run_backscatter_probe(o);
  auto took = std::chrono::steady_clock::now() - t0;
  expect_cannot_tell(r, "no complete reply within 300 ms");
  EXPECT_GE(took, std::chrono::milliseconds(250));
  EXPECT_LT(took, std::chrono::seconds(3));
  EXPECT_TRUE(server.received().empty());
}

TEST(SmtpProbeDialogue, ReplyTimeoutMidDialogueCannotTell) {
  FakeSmtp server;
  server.unknown_rcpt = kHang;
  server.start();
  ProbeOptions o = server.options();
  o.timeout = std::chrono::milliseconds(300);
  auto t0 = std::chrono::steady_clock::now();
  ProbeResult r = run_backscatter_probe(o);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(3));
  expect_cannot_tell(r, "no complete reply");
  EXPECT_FALSE(server.received_verb("QUIT"));  // nothing more on a stuck session
  expect_no_data(server);
}

TEST(SmtpProbeDialogue, DripFeedingServerIsBoundedByOneTimeoutPerReply) {
  // A reply that never completes (a new continuation line every 50 ms) must not keep the
  // probe forever: the timeout covers the whole reply, not each read.
  FakeSmtp server;
  server.greeting = kDrip;
  server.start();
  ProbeOptions o = server.options();
  o.timeout = std::chrono::milliseconds(300);
  auto t0 = std::chrono::steady_clock::now();
  ProbeResult r = run_backscatter_probe(o);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(3));
  expect_cannot_tell(r, "no complete reply within 300 ms");
}

TEST(SmtpProbeDialogue, ClosedConnectionCannotTell) {
  FakeSmtp server;
  server.mail = kClose;
  ProbeResult r = probe(server);
  expect_cannot_tell(r, "closed the connection");
  EXPECT_FALSE(server.received_verb("RCPT"));
}

TEST(SmtpProbeDialogue, ServerClosingAfterGreetingCannotTell) {
  // 421 right after EHLO: the server is going away; the probe does not go on.
  FakeSmtp server;
  server.ehlo = "421 4.3.2 Service shutting down\r\n";
  ProbeResult r = probe(server);
  expect_cannot_tell(r, "421");
  EXPECT_FALSE(server.received_verb("MAIL"));
  EXPECT_FALSE(server.received_verb("QUIT"));
}

TEST(SmtpProbeDialogue, EhloRefusedFallsBackToHelo) {
  FakeSmtp server;
  server.ehlo = "502 5.5.2 Error: command not recognized\r\n";
  server.unknown_rcpt = "250 ok\r\n";
  ProbeResult r = probe(server);
  EXPECT_EQ(r.verdict, ProbeVerdict::vulnerable) << r.summary;
  auto got = server.received();
  ASSERT_GE(got.size(), 2u);
  EXPECT_EQ(got[0].substr(0, 5), "EHLO ");
  EXPECT_EQ(got[1].substr(0, 5), "HELO ");
  expect_no_data(server);
}

TEST(SmtpProbeDialogue, RefusedSenderCannotTell) {
  FakeSmtp server;
  server.mail = "553 5.7.1 sender rejected\r\n";
  ProbeResult r = probe(server);
  expect_cannot_tell(r, "refused MAIL FROM");
  ASSERT_FALSE(r.advice.empty());
  EXPECT_NE(r.advice[0].find("--from"), std::string::npos);
  EXPECT_FALSE(server.received_verb("RCPT"));
  expect_no_data(server);
}

TEST(SmtpProbeDialogue, RepliesOutOfTurnCannotTell) {
  FakeSmtp server;
  server.greeting = "220 mx.example.test ESMTP\r\n250 unasked\r\n";
  ProbeResult r = probe(server);
  expect_cannot_tell(r, "out of turn");
  EXPECT_TRUE(server.received().empty());
}

TEST(SmtpProbeDialogue, GarbageAfterAReplyCannotTell) {
  FakeSmtp server;
  server.greeting = "220 mx.example.test ESMTP\r\nnonsense\r\n";
  ProbeResult r = probe(server);
  expect_cannot_tell(r, "malformed reply");
  EXPECT_TRUE(server.received().empty());
}

TEST(SmtpProbeDialogue, NoDomainInGreetingNeedsDomainOption) {
  FakeSmtp server;
  server.greeting = "220 ESMTP ready\r\n";
  server.start();
  ProbeResult r = run_backscatter_probe(server.options());  // target is an IP address
  EXPECT_EQ(r.verdict, ProbeVerdict::unknown) << r.summary;
  ASSERT_FALSE(r.advice.empty());
  EXPECT_NE(r.advice[0].find("--domain"), std::string::npos);
  EXPECT_FALSE(server.received_verb("RCPT"));
}

TEST(SmtpProbeDialogue, HostileGreetingTextIsEscapedInTheTranscript) {
  FakeSmtp server;
  server.greeting = "220 mx.example.test \x1b]0;pwned\x07 ESMTP\r\n";
  ProbeResult r = probe(server);
  EXPECT_EQ(r.verdict, ProbeVerdict::safe) << r.summary;
  ASSERT_GE(r.transcript.size(), 3u);
  for (const std::string& line : r.transcript) {
    for (unsigned char c : line) EXPECT_GE(c, 0x20) << printable(line);
  }
}

TEST(SmtpProbeDialogue, NothingListeningCannotTell) {
  uint16_t port;
  {
    FakeSmtp closed;  // bound and listening, then closed: the port is free again
    port = closed.port;
  }
  ProbeOptions o;
  o.target = HostPort{"127.0.0.1", port};
  o.timeout = std::chrono::milliseconds(2000);
  ProbeResult r = run_backscatter_probe(o);
  expect_cannot_tell(r, "cannot connect");
}

TEST(SmtpProbeDialogue, BadOptionIsRefusedBeforeConnecting) {
  FakeSmtp server;
  server.start();
  ProbeOptions o = server.options();
  o.rcpt = "x@example.org>\r\nDATA";
  ProbeResult r = run_backscatter_probe(o);
  EXPECT_EQ(r.verdict, ProbeVerdict::unknown);
  EXPECT_NE(r.summary.find("--rcpt"), std::string::npos) << r.summary;
  EXPECT_TRUE(server.received().empty());
}

}  // namespace
}  // namespace spamward::cli
