// MilterServer in-process on loopback TCP (port 0), with a real Engine, test checks chosen by
// the client address, and a content check that reports what the parsed message held. The MTA
// side is a blocking socket speaking milter frames, with receive timeouts, so a hung server
// fails a test instead of hanging it.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "auth/authentication_results.h"
#include "auth/batv.h"
#include "core/clock.h"
#include "core/log.h"
#include "server/milter_server.h"
#include "state/store.h"

namespace spamward {
namespace {

using namespace std::chrono_literals;
using namespace std::string_literals;

// client 192.0.2.N: 1 nothing, 2 reject (two families), 3 tag (7 points), 4 a permanent ban,
// 6 the check throws (fail open).
class ByAddressCheck final : public Check {
 public:
  std::string_view name() const override { return "test_by_address"; }
  Stage stage() const override { return Stage::connect; }
  Family family() const override { return Family::dnsbl; }
  boost::asio::awaitable<std::vector<Symbol>> run(const Transaction& tx) override {
    std::vector<Symbol> out;
    if (!tx.client_address || !tx.client_address->is_v4()) co_return out;
    switch (tx.client_address->v4_host_order() & 0xff) {
      case 2:
        out.push_back({"TEST_DNSBL", 10.0, Family::dnsbl, "", false});
        out.push_back({"TEST_RFC", 10.0, Family::rfc, "", false});
        break;
      case 3:
        out.push_back({"TEST_DNSBL", 7.0, Family::dnsbl, "", false});
        break;
      case 4:
        out.push_back({"REPUTATION_BANNED", 0.0, Family::behaviour, "5 offences", true});
        break;
      case 6:
        throw std::runtime_error("test check failure");
      default:
        break;
    }
    co_return out;
  }
};

// What the content check saw at end of message (written on the server's thread).
struct Seen {
  std::mutex mu;
  Transaction tx;
  std::string subject;
  size_t body_size = 0;
  bool had_message = false;
};

// At end of message: TEST_SUBJECT (0.5) when there is a Subject, TEST_BODY (0.25) always; it
// records the transaction and the parsed message.
class ContentCheck final : public Check {
 public:
  explicit ContentCheck(std::shared_ptr<Seen> seen) : seen_(std::move(seen)) {}
  std::string_view name() const override { return "test_content"; }
  Stage stage() const override { return Stage::eom; }
  Family family() const override { return Family::content; }
  std::optional<std::vector<Symbol>> run_now(const Transaction& tx) override {
    std::vector<Symbol> out;
    std::lock_guard lock(seen_->mu);
    seen_->tx = tx;
    seen_->had_message = tx.message != nullptr;
    seen_->subject.clear();
    seen_->body_size = 0;
    if (!tx.message) return out;
    if (const HeaderField* subject = tx.message->header("Subject")) {
      seen_->subject = subject->value;
      out.push_back({"TEST_SUBJECT", 0.5, Family::content, subject->value, false});
    }
    seen_->body_size = tx.message->raw_body.size();
    out.push_back({"TEST_BODY", 0.25, Family::content, "", false});
    return out;
  }
  boost::asio::awaitable<std::vector<Symbol>> run(const Transaction& tx) override {
    co_return *run_now(tx);
  }

 private:
  std::shared_ptr<Seen> seen_;
};

std::string be32(uint32_t v) {
  std::string s;
  for (int shift : {24, 16, 8, 0}) s += static_cast<char>((v >> shift) & 0xff);
  return s;
}

std::string frame(char cmd, std::string_view data = {}) {
  std::string out;
  append_frame(out, cmd, data);
  return out;
}

struct Reply {
  char code = 0;
  std::string data;
};

// The MTA side.
class Mta {
 public:
  explicit Mta(uint16_t port) : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  }
  ~Mta() { ::close(fd_); }
  bool connected() const { return ok_; }

  bool send(std::string_view data) {
    while (!data.empty()) {
      ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  // One reply frame; code 0 on timeout or EOF.
  Reply reply(std::chrono::milliseconds timeout = 5000ms) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      if (pending_.size() >= 4) {
        uint32_t len = (uint32_t{static_cast<unsigned char>(pending_[0])} << 24) |
                       (uint32_t{static_cast<unsigned char>(pending_[1])} << 16) |
                       (uint32_t{static_cast<unsigned char>(pending_[2])} << 8) |
                       uint32_t{static_cast<unsigned char>(pending_[3])};
        if (len >= 1 && pending_.size() >= 4 + len) {
          Reply r{pending_[4], pending_.substr(5, len - 1)};
          pending_.erase(0, 4 + len);
          return r;
        }
      }
      char buf[65536];
      ssize_t n = read_some(buf, sizeof buf, deadline);
      if (n <= 0) return {};
      pending_.append(buf, static_cast<size_t>(n));
    }
  }

  // Sends a command and returns its reply. For a command the filter asked not to reply to
  // (SMFIP_NR_* in its OPTNEG reply), as Postfix does: it does not wait, and takes CONTINUE.
  Reply command(char cmd, std::string_view data = {}) {
    if (!send(frame(cmd, data))) return {};
    if (!expects_reply(cmd)) return {'c', {}};
    Reply r = reply();
    if (cmd == 'O' && r.code == 'O' && r.data.size() >= 12) {
      no_reply_ = 0;
      for (int i = 8; i < 12; ++i)
        no_reply_ = (no_reply_ << 8) | static_cast<unsigned char>(r.data[i]);
      no_reply_ &= kNoReplyBits;
    }
    return r;
  }

  bool expects_reply(char cmd) const {
    switch (cmd) {
      case 'C':
        return (no_reply_ & 0x1000) == 0;
      case 'H':
        return (no_reply_ & 0x2000) == 0;
      case 'L':
        return (no_reply_ & 0x80) == 0;
      case 'N':
        return (no_reply_ & 0x40000) == 0;
      case 'U':
        return (no_reply_ & 0x20000) == 0;
      default:
        return true;
    }
  }
  uint32_t no_reply() const { return no_reply_; }
  // Whether any byte arrives within `timeout` (a reply the MTA did not ask for).
  bool anything_within(std::chrono::milliseconds timeout) {
    if (!pending_.empty()) return true;
    char buf[4096];
    ssize_t n = read_some(buf, sizeof buf, std::chrono::steady_clock::now() + timeout);
    if (n > 0) pending_.append(buf, static_cast<size_t>(n));
    return n > 0;
  }

  // Replies until the final one of end of message (accept, continue, reject, tempfail,
  // replycode), modifications included.
  std::vector<Reply> eom() {
    std::vector<Reply> out;
    if (!send(frame('E'))) return out;
    for (;;) {
      Reply r = reply();
      out.push_back(r);
      if (r.code == 0 || std::string_view("acrtyd").find(r.code) != std::string_view::npos)
        return out;
    }
  }

  bool closed_by_server(std::chrono::milliseconds timeout = 5000ms) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    char buf[65536];
    for (;;) {
      ssize_t n = read_some(buf, sizeof buf, deadline);
      if (n == 0) return true;
      if (n < 0) return errno == ECONNRESET;
    }
  }

  // OPTNEG as Postfix 3.7 with milter_protocol = 6 offers it.
  Reply negotiate(uint32_t protocol = 0x1fffff) {
    return command('O', be32(6) + be32(0x1ff) + be32(protocol));
  }
  Reply connect(const std::string& address, const std::string& host = "") {
    send(frame('D',
               "C{daemon_addr}\0"
               "192.0.2.25\0"
               "{daemon_port}\0"
               "25\0"s));
    return command('C', (host.empty() ? "[" + address + "]" : host) + "\0"s + "4" + "\x9c\x40"s +
                            address + "\0"s);
  }

 private:
  ssize_t read_some(char* buf, size_t size, std::chrono::steady_clock::time_point deadline) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      errno = ETIMEDOUT;
      return -1;
    }
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) {
      errno = ETIMEDOUT;
      return -1;
    }
    return ::recv(fd_, buf, size, 0);
  }
  static constexpr uint32_t kNoReplyBits =
      0x80 | 0x1000 | 0x2000 | 0x4000 | 0x8000 | 0x10000 | 0x20000 | 0x40000 | 0x80000;
  int fd_;
  bool ok_ = false;
  std::string pending_;
  uint32_t no_reply_ = 0;
};

bool has_frame(const std::vector<Reply>& rs, char code, const std::string& data) {
  for (const auto& r : rs)
    if (r.code == code && r.data == data) return true;
  return false;
}

const Reply* find_header(const std::vector<Reply>& rs, const std::string& name) {
  for (const auto& r : rs)
    if (r.code == 'h' && r.data.rfind(name + '\0', 0) == 0) return &r;
  return nullptr;
}

class MilterServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    saved_level_ = decision_logger().level();
    decision_logger().set_level(spdlog::level::off);
  }

  void TearDown() override {
    if (server_) {
      server_->stop();
      io_.stop();
      if (thread_.joinable()) thread_.join();
      server_.reset();
    }
    decision_logger().set_level(saved_level_);
  }

  void start(MilterLimits limits = {}, std::string greylist = "off") {
    auto config = std::make_shared<Config>();
    config->greylist.mode = greylist;
    std::vector<std::unique_ptr<Check>> checks;
    checks.push_back(std::make_unique<ByAddressCheck>());
    checks.push_back(std::make_unique<ContentCheck>(seen_));
    start_with(config, std::move(checks), limits);
  }

  // The server on a loopback port with this config and these checks, on the test's store,
  // clock and metrics.
  void start_with(std::shared_ptr<Config> config, std::vector<std::unique_ptr<Check>> checks,
                  MilterLimits limits = {}) {
    Env env;
    env.clock = &clock_;
    env.metrics = &metrics_;
    env.store = store_.get();
    engine_ = std::make_shared<Engine>(config, env, std::move(checks));
    server_ = std::make_unique<MilterServer>(
        io_.get_executor(), [this] { return engine_available_ ? engine_ : nullptr; }, limits,
        metrics_);
    server_->listen(*ListenSpec::parse("127.0.0.1:0"));
    server_->start();
    thread_ = std::thread([this] { io_.run(); });
  }

  double errors(const std::string& reason) {
    return metrics_.value("spamward_protocol_errors_total",
                          {{"server", "milter"}, {"reason", reason}});
  }

  // negotiate, connect, helo, mail, one rcpt per address given, data; all must CONTINUE.
  void envelope(Mta& mta, const std::string& client,
                std::vector<std::string> rcpts = {"<b@example.org>"}) {
    ASSERT_EQ(mta.negotiate().code, 'O');
    ASSERT_EQ(mta.connect(client, "mx.example.net").code, 'c');
    ASSERT_EQ(mta.command('H', "mx.example.net\0"s).code, 'c');
    mta.send(frame('D',
                   "Mi\0"
                   "4F2A1B\0"s));
    ASSERT_EQ(mta.command('M', "<a@example.net>\0SIZE=100\0"s).code, 'c');
    for (const auto& r : rcpts) ASSERT_EQ(mta.command('R', r + "\0"s).code, 'c');
    ASSERT_EQ(mta.command('T').code, 'c');
  }

  FakeClock clock_;
  Metrics metrics_;
  std::unique_ptr<Store> store_ = make_memory_store(clock_);
  std::shared_ptr<Seen> seen_ = std::make_shared<Seen>();
  std::shared_ptr<Engine> engine_;
  std::atomic<bool> engine_available_{true};
  boost::asio::io_context io_{1};
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_{
      io_.get_executor()};
  std::unique_ptr<MilterServer> server_;
  std::thread thread_;
  spdlog::level::level_enum saved_level_ = spdlog::level::info;
};

TEST_F(MilterServerTest, NegotiationAsksForMacrosSkipAndLeadingSpace) {
  start();
  Mta mta(server_->port());
  ASSERT_TRUE(mta.connected());
  Reply r = mta.negotiate();
  ASSERT_EQ(r.code, 'O');
  ASSERT_GE(r.data.size(), 12u);
  EXPECT_EQ(r.data.substr(0, 4), be32(6));
  EXPECT_EQ(r.data.substr(4, 4), be32(0x111)) << "ADDHDRS | CHGHDRS | SETSYMLIST";
  // SKIP | HDR_LEADSPC, and no reply to CONNECT, HELO, UNKNOWN, headers and end of headers.
  EXPECT_EQ(r.data.substr(8, 4), be32(0x100400 | 0x1000 | 0x2000 | 0x20000 | 0x80 | 0x40000));
  EXPECT_NE(r.data.find("{daemon_addr}"), std::string::npos);
  EXPECT_EQ(server_->open_connections(), 1u);
  EXPECT_EQ(metrics_.value("spamward_open_connections", {{"server", "milter"}}), 1.0);
}

// With the NR_* bits agreed, spamward sends nothing for CONNECT, HELO, headers and end of
// headers (the MTA does not read it: a stray reply would be taken as the next command's), and
// still answers MAIL, RCPT, DATA, body chunks and end of message. Without them, it answers all.
TEST_F(MilterServerTest, NoReplyToCommandsTheMtaAgreedNotToWaitFor) {
  start();
  Mta mta(server_->port());
  ASSERT_EQ(mta.negotiate().code, 'O');
  ASSERT_EQ(mta.no_reply(), 0x1000u | 0x2000 | 0x20000 | 0x80 | 0x40000);
  mta.connect("192.0.2.1", "mx.example.net");
  mta.command('H', "mx.example.net\0"s);
  EXPECT_FALSE(mta.anything_within(300ms)) << "no reply to CONNECT or HELO";
  EXPECT_EQ(mta.command('M', "<alice@example.net>\0"s).code, 'c');
  EXPECT_EQ(mta.command('R', "<bob@example.org>\0"s).code, 'c');
  mta.command('L', "Subject\0 hello\0"s);
  mta.command('N');
  EXPECT_FALSE(mta.anything_within(300ms)) << "no reply to headers or end of headers";
  EXPECT_EQ(mta.command('B', "body\r\n"s).code, 'c');
  auto rs = mta.eom();
  ASSERT_FALSE(rs.empty());
  EXPECT_EQ(rs.back().code, 'a');

  // An MTA that offers no NR_* bits gets a reply to everything.
  Mta old(server_->port());
  ASSERT_EQ(old.negotiate(0x100400).code, 'O');  // SKIP | HDR_LEADSPC
  EXPECT_EQ(old.no_reply(), 0u);
  EXPECT_EQ(old.connect("192.0.2.2").code, 'c');
  EXPECT_EQ(old.command('H', "mx.example.net\0"s).code, 'c');
}

TEST_F(MilterServerTest, WholeMessageScoredWithContentAndForgedHeadersReplaced) {
  start();
  Mta mta(server_->port());
  envelope(mta, "192.0.2.3", {"<b@example.org>", "<c@example.org>"});
  // Values as Postfix sends them with HDR_LEADSPC: the leading space kept, folds as "\n\t".
  EXPECT_EQ(mta.command('L', "X-Spam-Flag\0 NO\0"s).code, 'c');
  EXPECT_EQ(mta.command('L', "Subject\0 hello\n\tworld\0"s).code, 'c');
  EXPECT_EQ(mta.command('L', "x-spam-flag\0 NO\0"s).code, 'c');
  EXPECT_EQ(mta.command('L', "X-Spamward-Symbols\0 NONE(0.00)\0"s).code, 'c');
  EXPECT_EQ(mta.command('N').code, 'c');
  EXPECT_EQ(mta.command('B', "line one\r\nline two\r\n").code, 'c');
  auto rs = mta.eom();
  ASSERT_FALSE(rs.empty());
  EXPECT_EQ(rs.back().code, 'a');
  // Deleted by index per name, highest first, before the additions.
  EXPECT_TRUE(has_frame(rs, 'm', be32(2) + "X-Spam-Flag\0\0"s));
  EXPECT_TRUE(has_frame(rs, 'm', be32(1) + "X-Spam-Flag\0\0"s));
  EXPECT_TRUE(has_frame(rs, 'm', be32(1) + "X-Spamward-Symbols\0\0"s));
  EXPECT_TRUE(has_frame(rs, 'h', "X-Spam-Flag\0 YES\0"s)) << "tag: 7 + 0.5 + 0.25";
  EXPECT_TRUE(has_frame(rs, 'h', "X-Spam-Score\0 7.75\0"s));
  const Reply* symbols = find_header(rs, "X-Spamward-Symbols");
  ASSERT_TRUE(symbols);
  EXPECT_NE(symbols->data.find("TEST_DNSBL(7.00)"), std::string::npos);
  EXPECT_NE(symbols->data.find("TEST_SUBJECT(0.50)"), std::string::npos) << symbols->data;
  size_t first_delete = rs.size(), first_add = rs.size();
  for (size_t i = 0; i < rs.size(); ++i) {
    if (rs[i].code == 'm' && first_delete == rs.size()) first_delete = i;
    if (rs[i].code == 'h' && first_add == rs.size()) first_add = i;
  }
  EXPECT_LT(first_delete, first_add);

  // The message reached the content check: the folded Subject unfolded, the body, and the
  // envelope and macro facts.
  {
    std::lock_guard lock(seen_->mu);
    EXPECT_TRUE(seen_->had_message);
    EXPECT_EQ(seen_->subject, "hello\tworld") << "unfolded: CRLF removed, the tab kept";
    EXPECT_EQ(seen_->body_size, 20u);
    const Transaction& tx = seen_->tx;
    EXPECT_EQ(tx.stage, Stage::eom);
    EXPECT_EQ(tx.helo, "mx.example.net");
    EXPECT_EQ(tx.sender, "a@example.net");
    EXPECT_EQ(tx.recipients, (std::vector<std::string>{"b@example.org", "c@example.org"}));
    EXPECT_EQ(tx.queue_id, "4F2A1B");
    EXPECT_EQ(tx.id, "4F2A1B");
    EXPECT_EQ(tx.client_name, "mx.example.net");
    ASSERT_TRUE(tx.client_address);
    EXPECT_EQ(tx.client_address->to_string(), "192.0.2.3");
    ASSERT_TRUE(tx.server_address);
    EXPECT_EQ(tx.server_address->to_string(), "192.0.2.25");
    EXPECT_EQ(tx.server_port, 25);
    EXPECT_EQ(tx.size, 17 + 24 + 17 + 32 + 2 + 20) << "header lines, blank line and body";
  }

  // A second message on the same connection: a fresh transaction.
  mta.send(frame('A'));
  mta.send(frame('D',
                 "Mi\0"
                 "5B3C2D\0"s));
  EXPECT_EQ(mta.command('M', "<>\0"s).code, 'c');
  EXPECT_EQ(mta.command('R', "<d@example.org>\0"s).code, 'c');
  EXPECT_EQ(mta.command('T').code, 'c');
  EXPECT_EQ(mta.command('N').code, 'c');
  rs = mta.eom();
  ASSERT_FALSE(rs.empty());
  EXPECT_EQ(rs.back().code, 'a');
  for (const auto& r : rs) EXPECT_NE(r.code, 'm') << "no forged headers in this one";
  EXPECT_TRUE(has_frame(rs, 'h', "X-Spam-Score\0 7.25\0"s)) << "no subject, empty body";
  std::lock_guard lock(seen_->mu);
  EXPECT_EQ(seen_->tx.sender, "") << "a bounce";
  EXPECT_EQ(seen_->tx.recipients, std::vector<std::string>{"d@example.org"});
  EXPECT_EQ(seen_->tx.queue_id, "5B3C2D");
}

TEST_F(MilterServerTest, RefusalsDecidedAtConnectAreAnsweredAtMail) {
  start();
  for (auto [client, code] :
       {std::pair{"192.0.2.2", "550 5.7.1 "}, std::pair{"192.0.2.4", "554 5.7.1 "}}) {
    Mta mta(server_->port());
    ASSERT_EQ(mta.negotiate().code, 'O');
    EXPECT_EQ(mta.connect(client).code, 'c') << "MTAs replace a connect-stage text with theirs";
    EXPECT_EQ(mta.command('H', "mx.example.net\0"s).code, 'c');
    Reply r = mta.command('M', "<a@example.net>\0"s);
    ASSERT_EQ(r.code, 'y') << client;
    EXPECT_EQ(r.data.rfind(code, 0), 0u) << r.data;
    EXPECT_EQ(r.data.back(), '\0');
    // The MTA ends the transaction; a new MAIL is refused again.
    mta.send(frame('A'));
    EXPECT_EQ(mta.command('M', "<b@example.net>\0"s).code, 'y');
  }
}

TEST_F(MilterServerTest, GreylistingDefersTheWholeMessageOnceAtData) {
  start({}, "always");
  Mta mta(server_->port());
  ASSERT_EQ(mta.negotiate().code, 'O');
  ASSERT_EQ(mta.connect("192.0.2.1", "mx.example.net").code, 'c');
  ASSERT_EQ(mta.command('H', "mx.example.net\0"s).code, 'c');
  ASSERT_EQ(mta.command('M', "<a@example.net>\0"s).code, 'c');
  EXPECT_EQ(mta.command('R', "<b@example.org>\0"s).code, 'c') << "never deferred at RCPT";
  EXPECT_EQ(mta.command('R', "<c@example.org>\0"s).code, 'c');
  Reply data = mta.command('T');
  ASSERT_EQ(data.code, 'y');
  EXPECT_EQ(data.data.rfind("451 4.7.1 ", 0), 0u) << data.data;

  // Retried after min_delay: accepted, with the greylist symbol showing it passed.
  clock_.advance(std::chrono::minutes(6));
  mta.send(frame('A'));
  ASSERT_EQ(mta.command('M', "<a@example.net>\0"s).code, 'c');
  EXPECT_EQ(mta.command('R', "<b@example.org>\0"s).code, 'c');
  EXPECT_EQ(mta.command('R', "<c@example.org>\0"s).code, 'c');
  EXPECT_EQ(mta.command('T').code, 'c');
  EXPECT_EQ(mta.command('N').code, 'c');
  auto rs = mta.eom();
  ASSERT_FALSE(rs.empty());
  EXPECT_EQ(rs.back().code, 'a');
  const Reply* symbols = find_header(rs, "X-Spamward-Symbols");
  ASSERT_TRUE(symbols);
  EXPECT_NE(symbols->data.find("GREYLIST_PASSED"), std::string::npos) << symbols->data;
}

TEST_F(MilterServerTest, SkipPastMaxMessageBytesAndScoresWhatItSaw) {
  MilterLimits limits;
  limits.max_message_bytes = 1000;
  start(limits);
  Mta mta(server_->port());
  envelope(mta, "192.0.2.1");
  EXPECT_EQ(mta.command('L', "Subject\0 big\0"s).code, 'c');
  EXPECT_EQ(mta.command('N').code, 'c');
  EXPECT_EQ(mta.command('B', std::string(600, 'a')).code, 'c');
  EXPECT_EQ(mta.command('B', std::string(600, 'b')).code, 's') << "past the limit: SKIP";
  auto rs = mta.eom();
  ASSERT_FALSE(rs.empty());
  EXPECT_EQ(rs.back().code, 'a') << "never refused for its size";
  EXPECT_TRUE(has_frame(rs, 'h', "X-Spam-Score\0 0.75\0"s));
  EXPECT_EQ(metrics_.value("spamward_milter_truncated_total"), 1.0);
  {
    std::lock_guard lock(seen_->mu);
    EXPECT_EQ(seen_->body_size, 1000u - 14 - 2) << "headers and body share the limit";
  }

  // Without SMFIP_SKIP offered: CONTINUE, the rest not stored.
  Mta old(server_->port());
  ASSERT_EQ(old.negotiate(0x7f).code, 'O');
  ASSERT_EQ(old.connect("192.0.2.1").code, 'c');
  ASSERT_EQ(old.command('M', "<a@example.net>\0"s).code, 'c');
  ASSERT_EQ(old.command('R', "<b@example.org>\0"s).code, 'c');
  ASSERT_EQ(old.command('N').code, 'c');
  EXPECT_EQ(old.command('B', std::string(2000, 'c')).code, 'c');
  EXPECT_EQ(old.command('B', std::string(2000, 'd')).code, 'c');
  rs = old.eom();
  ASSERT_FALSE(rs.empty());
  EXPECT_EQ(rs.back().code, 'a');
  EXPECT_TRUE(has_frame(rs, 'h',
                        "X-Spam-Score\0"
                        "0.25\0"s))
      << "no leading space negotiated";
  EXPECT_TRUE(has_frame(rs, 'h',
                        "X-Spamward-Symbols\0"
                        "TEST_BODY(0.25)\0"s));
  std::lock_guard lock(seen_->mu);
  EXPECT_EQ(seen_->body_size, 998u) << "the first max_message_bytes bytes";
  EXPECT_EQ(seen_->tx.size, 4002) << "everything seen";
}

TEST_F(MilterServerTest, LargeBodyChunkAcceptedOversizedFrameClosesOnlyThatConnection) {
  start();
  Mta good(server_->port());
  envelope(good, "192.0.2.1");
  ASSERT_EQ(good.command('N').code, 'c');
  EXPECT_EQ(good.command('B', std::string(65535, 'x')).code, 'c');
  EXPECT_EQ(good.command('B', std::string(70000, 'y')).code, 'c') << "over 64 KiB is fine";

  Mta bad(server_->port());
  ASSERT_EQ(bad.negotiate().code, 'O');
  ASSERT_TRUE(bad.send(be32((1u << 20) + 2) + "B"));
  EXPECT_TRUE(bad.closed_by_server());
  EXPECT_EQ(errors("frame_too_large"), 1.0);

  // The other connection goes on.
  auto rs = good.eom();
  ASSERT_FALSE(rs.empty());
  EXPECT_EQ(rs.back().code, 'a');
}

TEST_F(MilterServerTest, ProtocolErrorsCloseTheConnection) {
  start();
  {
    Mta mta(server_->port());
    ASSERT_TRUE(mta.send(frame('C',
                               "host\0"
                               "4"s)));
    EXPECT_TRUE(mta.closed_by_server()) << "a command before negotiation";
  }
  {
    Mta mta(server_->port());
    ASSERT_EQ(mta.negotiate().code, 'O');
    ASSERT_TRUE(mta.send(frame('C', "no-nul")));
    EXPECT_TRUE(mta.closed_by_server());
  }
  {
    Mta mta(server_->port());
    ASSERT_EQ(mta.negotiate().code, 'O');
    ASSERT_TRUE(mta.send(frame('Z')));
    EXPECT_TRUE(mta.closed_by_server());
  }
  {
    Mta mta(server_->port());
    ASSERT_TRUE(mta.send(frame('O', be32(1) + be32(0) + be32(0))));
    EXPECT_TRUE(mta.closed_by_server());
  }
  EXPECT_EQ(errors("unexpected_command"), 1.0);
  EXPECT_EQ(errors("malformed_command"), 1.0);
  EXPECT_EQ(errors("unknown_command"), 1.0);
  EXPECT_EQ(errors("bad_negotiation"), 1.0);
}

TEST_F(MilterServerTest, QuitNcStartsANewSessionOnTheSameConnection) {
  start();
  Mta mta(server_->port());
  ASSERT_EQ(mta.negotiate().code, 'O');
  ASSERT_EQ(mta.connect("192.0.2.2").code, 'c');
  ASSERT_EQ(mta.command('M', "<a@example.net>\0"s).code, 'y') << "the first session's client";
  ASSERT_TRUE(mta.send(frame('K')));  // QUIT_NC: no reply
  EXPECT_EQ(mta.connect("192.0.2.1").code, 'c') << "the new session has its own client";
  EXPECT_EQ(mta.command('H', "mx.example.net\0"s).code, 'c');
  EXPECT_EQ(mta.command('U', "XYZZY\0"s).code, 'c') << "an unknown SMTP command";
  EXPECT_EQ(mta.command('M', "<a@example.net>\0"s).code, 'c');
  ASSERT_TRUE(mta.send(frame('Q')));
  EXPECT_TRUE(mta.closed_by_server());
}

TEST_F(MilterServerTest, FailsOpenWhenTheEngineThrowsOrIsMissing) {
  start();
  Mta mta(server_->port());
  envelope(mta, "192.0.2.6");  // the check throws: the engine fails it open
  ASSERT_EQ(mta.command('L', "X-Spam-Flag\0 YES\0"s).code, 'c');
  ASSERT_EQ(mta.command('N').code, 'c');
  engine_available_ = false;
  auto rs = mta.eom();
  ASSERT_FALSE(rs.empty());
  EXPECT_EQ(rs.back().code, 'a');
  EXPECT_TRUE(has_frame(rs, 'm', be32(1) + "X-Spam-Flag\0\0"s)) << "still removed";
  EXPECT_FALSE(find_header(rs, "X-Spam-Score")) << "no engine, no verdict";
}

// BATV signing (issue 7): with [batv] keys, spamward asks for SMFIF_CHGFROM and replaces the
// envelope sender of an accepted message from an authenticated or trusted client with its
// tagged form, whatever the score; nothing for other clients, bounces or tagged senders.
TEST_F(MilterServerTest, BatvSignsTheSenderOfAuthenticatedAndTrustedClients) {
  auto config = std::make_shared<Config>();
  config->greylist.mode = "off";
  config->batv.keys = {"milter-batv-test-key-01"};
  config->network.trusted.clear();
  config->network.trusted.push_back(*Prefix::parse("192.0.2.9/32"));
  std::vector<std::unique_ptr<Check>> checks;
  checks.push_back(std::make_unique<ByAddressCheck>());
  start_with(config, std::move(checks));
  const std::string tagged =
      batv_sign("alice@example.org", config->batv.keys, clock_.now(), config->batv.max_age);
  ASSERT_TRUE(batv_is_tagged(tagged));

  // One message; returns the end-of-message replies.
  auto message = [&](const std::string& client, const std::string& sender,
                     const std::string& user) {
    Mta mta(server_->port());
    Reply o = mta.negotiate();
    EXPECT_EQ(o.code, 'O');
    EXPECT_EQ(o.data.substr(4, 4), be32(0x151)) << "ADDHDRS | CHGHDRS | CHGFROM | SETSYMLIST";
    mta.connect(client, "client.example.org");
    mta.command('H', "client.example.org\0"s);
    if (!user.empty()) mta.send(frame('D', "M{auth_authen}\0"s + user + "\0"s));
    EXPECT_EQ(mta.command('M', "<" + sender + ">\0"s).code, 'c');
    EXPECT_EQ(mta.command('R', "<bob@example.net>\0"s).code, 'c');
    EXPECT_EQ(mta.command('T').code, 'c');
    mta.command('N');
    return mta.eom();
  };
  auto changed_to = [](const std::vector<Reply>& rs) {
    std::string out;
    for (const auto& r : rs)
      if (r.code == 'e') out += r.data;
    return out;
  };

  // Authenticated: signed; the score (a tag: 7 points) does not matter.
  auto rs = message("192.0.2.3", "alice@example.org", "alice");
  ASSERT_FALSE(rs.empty());
  EXPECT_EQ(rs.back().code, 'a');
  EXPECT_EQ(changed_to(rs), "<" + tagged + ">\0"s);
  EXPECT_TRUE(has_frame(rs, 'h', "X-Spam-Flag\0 YES\0"s));
  // Trusted: signed.
  EXPECT_EQ(changed_to(message("192.0.2.9", "alice@example.org", "")), "<" + tagged + ">\0"s);
  // Neither: the sender is left alone.
  rs = message("192.0.2.1", "alice@example.org", "");
  EXPECT_EQ(rs.back().code, 'a');
  EXPECT_EQ(changed_to(rs), "");
  // A bounce, or a sender already tagged: nothing.
  EXPECT_EQ(changed_to(message("192.0.2.9", "", "alice")), "");
  EXPECT_EQ(changed_to(message("192.0.2.9", tagged, "alice")), "");
}

TEST(MilterBatv, SignedSenderRules) {
  Config config;
  config.network.trusted.clear();
  config.network.trusted.push_back(*Prefix::parse("10.0.0.0/8"));
  Transaction tx;
  tx.id = "T";
  tx.sender = "alice@example.org";
  tx.client_address = IpAddress::parse("10.1.2.3");
  FakeClock clock;
  EXPECT_FALSE(batv_signed_sender(config, tx, clock.now())) << "no keys";
  config.batv.keys = {"milter-batv-test-key-01"};
  auto signed_sender = batv_signed_sender(config, tx, clock.now());
  ASSERT_TRUE(signed_sender);
  EXPECT_EQ(batv_verify(*signed_sender, config.batv.keys, clock.now(), config.batv.max_age).status,
            BatvStatus::valid);
  tx.client_address = IpAddress::parse("192.0.2.1");
  EXPECT_FALSE(batv_signed_sender(config, tx, clock.now())) << "neither trusted nor authenticated";
  tx.sasl_username = "alice";
  EXPECT_TRUE(batv_signed_sender(config, tx, clock.now()));
  tx.sender = "not-an-address";
  EXPECT_FALSE(batv_signed_sender(config, tx, clock.now())) << "cannot sign: left alone";
  tx.sender = "";
  EXPECT_FALSE(batv_signed_sender(config, tx, clock.now()));
}

// At end of message: the symbols of the SPF and DKIM checks, as they spell their details.
class AuthSymbolsCheck final : public Check {
 public:
  std::string_view name() const override { return "test_auth"; }
  Stage stage() const override { return Stage::eom; }
  Family family() const override { return Family::auth; }
  std::optional<std::vector<Symbol>> run_now(const Transaction&) override {
    return std::vector<Symbol>{{"SPF_PASS", 0.0, Family::auth, "mfrom example.net: pass", false},
                               {"DKIM_VALID", 0.0, Family::auth, "example.net", false}};
  }
  boost::asio::awaitable<std::vector<Symbol>> run(const Transaction& tx) override {
    co_return *run_now(tx);
  }
};

// [headers] authentication_results (RFC 8601): an accepted message gets our
// Authentication-Results; incoming ones carrying our authserv-id (any case) are deleted by
// index first, others stay; a trusted client gets nothing added or deleted; off by default.
TEST_F(MilterServerTest, AuthenticationResultsAddedAndOursRemoved) {
  auto config = std::make_shared<Config>();
  config->greylist.mode = "off";
  config->headers.authentication_results = true;
  config->headers.authserv_id = "mx.example.org";
  config->network.trusted.clear();
  config->network.trusted.push_back(*Prefix::parse("192.0.2.9/32"));
  std::vector<std::unique_ptr<Check>> checks;
  checks.push_back(std::make_unique<ByAddressCheck>());
  checks.push_back(std::make_unique<AuthSymbolsCheck>());
  start_with(config, std::move(checks));

  auto message = [&](const std::string& client) {
    Mta mta(server_->port());
    envelope(mta, client);
    mta.command('L', "Authentication-Results\0 mx.example.org; spf=pass smtp.mailfrom=x\0"s);
    mta.command('L', "Authentication-Results\0 other.example; dkim=pass header.d=x\0"s);
    mta.command('L', "Subject\0 hi\0"s);
    mta.command('L', "authentication-results\0 MX.Example.Org;\n\tdmarc=pass\0"s);
    mta.command('N');
    return mta.eom();
  };
  auto count = [](const std::vector<Reply>& rs, char code) {
    size_t n = 0;
    for (const auto& r : rs)
      if (r.code == code && r.data.find("uthentication-Results") != std::string::npos) ++n;
    return n;
  };

  auto rs = message("192.0.2.1");
  ASSERT_FALSE(rs.empty());
  EXPECT_EQ(rs.back().code, 'a');
  EXPECT_TRUE(has_frame(rs, 'm', be32(3) + "Authentication-Results\0\0"s));
  EXPECT_TRUE(has_frame(rs, 'm', be32(1) + "Authentication-Results\0\0"s));
  EXPECT_EQ(count(rs, 'm'), 2u) << "other.example (index 2) stays";
  EXPECT_TRUE(has_frame(rs, 'h',
                        "Authentication-Results\0 mx.example.org; spf=pass "
                        "smtp.mailfrom=example.net;\n\tdkim=pass header.d=example.net\0"s));
  EXPECT_EQ(count(rs, 'h'), 1u);
  size_t last_delete = 0, add = 0;
  for (size_t i = 0; i < rs.size(); ++i) {
    if (rs[i].code == 'm' && rs[i].data.find("Authentication-Results") != std::string::npos)
      last_delete = i;
    if (rs[i].code == 'h' && rs[i].data.starts_with("Authentication-Results")) add = i;
  }
  EXPECT_LT(last_delete, add) << "deleted before ours is added";

  // A trusted client: never checked, so no Authentication-Results edits at all.
  rs = message("192.0.2.9");
  ASSERT_FALSE(rs.empty());
  EXPECT_EQ(rs.back().code, 'a');
  EXPECT_EQ(count(rs, 'h'), 0u);
  EXPECT_EQ(count(rs, 'm'), 0u);

  // Off (the default): incoming ones stay and none is added.
  auto off = std::make_shared<Config>(*config);
  off->headers.authentication_results = false;
  std::vector<std::unique_ptr<Check>> off_checks;
  off_checks.push_back(std::make_unique<AuthSymbolsCheck>());
  engine_ = std::make_shared<Engine>(off, engine_->env(), std::move(off_checks));
  rs = message("192.0.2.1");
  ASSERT_FALSE(rs.empty());
  EXPECT_EQ(rs.back().code, 'a');
  EXPECT_TRUE(find_header(rs, "X-Spam-Score"));
  EXPECT_EQ(count(rs, 'h'), 0u);
  EXPECT_EQ(count(rs, 'm'), 0u);
}

TEST(MilterAuthservId, ConfiguredThenOurNamesThenHostName) {
  EXPECT_EQ(effective_authserv_id("mx.example.org", {"a.example"}), "mx.example.org");
  EXPECT_EQ(effective_authserv_id("", {"a.example", "b.example"}), "a.example");
  char host[256] = {};
  ASSERT_EQ(::gethostname(host, sizeof host - 1), 0);
  EXPECT_EQ(effective_authserv_id("", {}), host[0] ? std::string(host) : "localhost");
  EXPECT_EQ(authserv_id_of(" (c (nested)) \"mx.example.org\"; none"), "mx.example.org");
  EXPECT_EQ(authserv_id_of("mx.example.org 1; none"), "mx.example.org");
  EXPECT_EQ(authserv_id_of("   "), "");
}

}  // namespace
}  // namespace spamward
