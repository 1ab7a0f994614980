// SpamdServer in-process on loopback TCP (port 0), with a real Engine running the GTUBE check
// and a test check keyed on the Subject. Clients are blocking sockets that send a whole request,
// half-close like spamc, and read to EOF with a timeout, so a hung server fails a test instead
// of hanging it.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "checks/gtube_check.h"
#include "core/clock.h"
#include "core/log.h"
#include "server/spamd_server.h"

namespace spamward {
namespace {

using namespace std::chrono_literals;

// Subject "tag me" gives 7 points (tag), "reject me" 20 points in two families (reject), "throw"
// makes the check throw (the engine fails it open: nothing added).
class SubjectCheck final : public Check {
 public:
  std::string_view name() const override { return "test_subject"; }
  Stage stage() const override { return Stage::eom; }
  Family family() const override { return Family::content; }
  boost::asio::awaitable<std::vector<Symbol>> run(const Transaction& tx) override {
    co_return symbols(tx);
  }
  std::optional<std::vector<Symbol>> run_now(const Transaction& tx) override { return symbols(tx); }

 private:
  static std::vector<Symbol> symbols(const Transaction& tx) {
    std::vector<Symbol> out;
    const HeaderField* subject = tx.message ? tx.message->header("Subject") : nullptr;
    if (!subject) return out;
    if (subject->value == "tag me") out.push_back({"TEST_CONTENT", 7.0, Family::content, ""});
    if (subject->value == "reject me") {
      out.push_back({"TEST_CONTENT", 10.0, Family::content, ""});
      out.push_back({"TEST_RFC", 10.0, Family::rfc, ""});
    }
    if (subject->value == "throw") throw std::runtime_error("test check failure");
    if (tx.client_address) out.push_back({"TEST_HAS_CLIENT", 50.0, Family::rfc, ""});
    return out;
  }
};

class FakeLearner final : public SpamdLearner {
 public:
  boost::asio::awaitable<bool> learn(std::shared_ptr<const Message> message, bool spam) override {
    ++learned;
    last_spam = spam;
    const HeaderField* subject = message->header("Subject");
    last_subject = subject ? subject->value : "";
    co_return true;
  }
  boost::asio::awaitable<bool> forget(std::shared_ptr<const Message>) override {
    ++forgotten;
    co_return false;
  }
  std::atomic<int> learned{0}, forgotten{0};
  std::atomic<bool> last_spam{false};
  std::string last_subject;
};

// Connects, sends `data`, half-closes (as spamc does) and reads until EOF: the whole answer.
// "<timeout>" when the server neither answers nor closes in time.
std::string exchange(uint16_t port, std::string_view data, bool half_close = true,
                     std::chrono::milliseconds timeout = 5000ms) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return "<connect failed>";
  }
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) break;
    data.remove_prefix(static_cast<size_t>(n));
  }
  if (half_close) ::shutdown(fd, SHUT_WR);
  std::string out;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    pollfd p{fd, POLLIN, 0};
    if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) {
      out = "<timeout>" + out;
      break;
    }
    char buf[65536];
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

std::string request(std::string_view command, std::string_view message,
                    std::string_view extra = "") {
  return std::string(command) + " SPAMC/1.5\r\nContent-length: " + std::to_string(message.size()) +
         "\r\nUser: tester\r\n" + std::string(extra) + "\r\n" + std::string(message);
}

std::string message(std::string_view subject, std::string_view body = "hello\r\n") {
  return "From: alice@example.net\r\nTo: bob@example.org\r\nSubject: " + std::string(subject) +
         "\r\nX-Spam-Flag: YES\r\n\r\n" + std::string(body);
}

template <typename Pred>
bool eventually(Pred pred, std::chrono::milliseconds timeout = 5000ms) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return pred();
}

class SpamdServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    saved_level_ = decision_logger().level();
    decision_logger().set_level(spdlog::level::off);
    make_engine(false);
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

  void make_engine(bool allow_tell) {
    auto config = std::make_shared<Config>();
    config->greylist.mode = "off";
    config->spamd.allow_tell = allow_tell;
    Env env;
    env.clock = &clock_;
    env.metrics = &metrics_;
    std::vector<std::unique_ptr<Check>> checks;
    checks.push_back(make_gtube_check());
    checks.push_back(std::make_unique<SubjectCheck>());
    auto engine = std::make_shared<Engine>(config, env, std::move(checks));
    std::lock_guard lock(engine_mu_);
    engine_ = std::move(engine);
  }

  void start(SpamdLimits limits = {}, bool with_learner = false) {
    LearnerSource learner;
    if (with_learner) learner = [this] { return learner_; };
    server_ = std::make_unique<SpamdServer>(
        io_.get_executor(), [this] { return source(); }, limits, metrics_, learner);
    server_->listen(*ListenSpec::parse("127.0.0.1:0"));
    server_->start();
    thread_ = std::thread([this] { io_.run(); });
  }

  std::shared_ptr<Engine> source() {
    std::lock_guard lock(engine_mu_);
    return engine_available_ ? engine_ : nullptr;
  }
  double errors(const std::string& reason) {
    return metrics_.value("spamward_protocol_errors_total",
                          {{"server", "spamd"}, {"reason", reason}});
  }
  double requests(const std::string& command) {
    return metrics_.value("spamward_spamd_requests_total", {{"command", command}});
  }
  uint16_t port() const { return server_->port(); }

  FakeClock clock_;
  Metrics metrics_;
  std::mutex engine_mu_;  // a "reload" swaps the engine while the server thread reads it
  std::shared_ptr<Engine> engine_;
  std::atomic<bool> engine_available_{true};
  std::shared_ptr<FakeLearner> learner_ = std::make_shared<FakeLearner>();
  boost::asio::io_context io_{1};
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_{
      io_.get_executor()};
  std::unique_ptr<SpamdServer> server_;
  std::thread thread_;
  spdlog::level::level_enum saved_level_ = spdlog::level::info;
};

TEST_F(SpamdServerTest, AnswersEachCommandAndClosesTheConnection) {
  start();
  EXPECT_EQ(exchange(port(), "PING SPAMC/1.5\r\n\r\n"), "SPAMD/1.5 0 PONG\r\n");
  EXPECT_EQ(exchange(port(), "PING SPAMC/1.2\r\n", /*half_close=*/false), "SPAMD/1.5 0 PONG\r\n");
  EXPECT_EQ(exchange(port(), request("CHECK", message("hello"))),
            "SPAMD/1.1 0 EX_OK\r\nSpam: False ; 0.0 / 6.0\r\n\r\n");
  EXPECT_EQ(exchange(port(), request("CHECK", message("tag me"))),
            "SPAMD/1.1 0 EX_OK\r\nSpam: True ; 7.0 / 6.0\r\n\r\n");
  EXPECT_EQ(exchange(port(), request("CHECK", message("reject me"))),
            "SPAMD/1.1 0 EX_OK\r\nSpam: True ; 20.0 / 6.0\r\n\r\n");
  std::string gtube = message("test", std::string(kGtube) + "\r\n");
  EXPECT_EQ(exchange(port(), request("CHECK", gtube)),
            "SPAMD/1.1 0 EX_OK\r\nSpam: True ; 1000.0 / 6.0\r\n\r\n");
  EXPECT_EQ(exchange(port(), request("SYMBOLS", gtube)),
            "SPAMD/1.1 0 EX_OK\r\nContent-length: 5\r\nSpam: True ; 1000.0 / 6.0\r\n\r\nGTUBE");
  std::string processed = exchange(port(), request("PROCESS", message("tag me")));
  EXPECT_TRUE(processed.starts_with("SPAMD/1.1 0 EX_OK\r\nContent-length: ")) << processed;
  EXPECT_NE(processed.find("\r\n\r\nFrom: alice@example.net\r\n"), std::string::npos) << processed;
  EXPECT_NE(processed.find("X-Spam-Flag: YES\r\nX-Spam-Score: 7.00\r\n"), std::string::npos);
  EXPECT_EQ(processed.find("X-Spam-Flag"), processed.rfind("X-Spam-Flag")) << "forged one removed";
  EXPECT_TRUE(processed.ends_with("\r\n\r\nhello\r\n"));
  // SKIP: nothing is answered.
  EXPECT_EQ(exchange(port(), "SKIP SPAMC/1.5\r\n"), "");
  EXPECT_EQ(requests("CHECK"), 4.0);
  EXPECT_EQ(requests("PING"), 2.0);
  EXPECT_EQ(requests("SKIP"), 1.0);
  EXPECT_TRUE(eventually([&] { return server_->open_connections() == 0; }));
  EXPECT_EQ(metrics_.value("spamward_open_connections", {{"server", "spamd"}}), 0.0);
}

TEST_F(SpamdServerTest, NoClientFactsReachTheEngine) {
  start();
  // TEST_HAS_CLIENT would add 50 points if the transaction carried a client address.
  EXPECT_EQ(exchange(port(), request("CHECK", message("hello"))),
            "SPAMD/1.1 0 EX_OK\r\nSpam: False ; 0.0 / 6.0\r\n\r\n");
}

TEST_F(SpamdServerTest, FailsOpen) {
  start();
  // A check that throws adds nothing (the engine fails it open).
  EXPECT_EQ(exchange(port(), request("CHECK", message("throw"))),
            "SPAMD/1.1 0 EX_OK\r\nSpam: False ; 0.0 / 6.0\r\n\r\n");
  // No engine at all: not spam, and PROCESS still removes forged headers but adds nothing.
  engine_available_ = false;
  std::string gtube = message("test", std::string(kGtube) + "\r\n");
  EXPECT_EQ(exchange(port(), request("CHECK", gtube)),
            "SPAMD/1.1 0 EX_OK\r\nSpam: False ; 0.0 / 6.0\r\n\r\n");
  std::string processed = exchange(port(), request("PROCESS", message("x")));
  EXPECT_EQ(processed.find("X-Spam-Flag"), std::string::npos) << processed;
  EXPECT_EQ(processed.find("X-Spam-Score"), std::string::npos) << processed;
}

TEST_F(SpamdServerTest, BadInputGetsOneErrorLineAndIsCounted) {
  start();
  EXPECT_EQ(exchange(port(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
            "SPAMD/1.0 76 Bad header line: (unknown command 'GET')\r\n");
  EXPECT_EQ(errors("unknown_command"), 1.0);
  EXPECT_EQ(exchange(port(), "CHECK SPAMC/1.5\r\nContent-length: 100\r\n\r\nshort"),
            "SPAMD/1.0 76 Bad header line: (Content-Length mismatch: Expected 100 bytes, got 5 "
            "bytes)\r\n");
  EXPECT_EQ(errors("content_length_mismatch"), 1.0);
  EXPECT_EQ(exchange(port(), request("CHECK", "x", "Compress: zlib\r\n"))
                .rfind("SPAMD/1.0 76 Bad header line: (compression not supported", 0),
            0u);
  std::string binary("\x00\xff\xfe garbage\r\n", 13);
  EXPECT_EQ(exchange(port(), binary).rfind("SPAMD/1.0 76 ", 0), 0u);
  EXPECT_EQ(errors("nul_byte"), 1.0);
  // The server is still answering.
  EXPECT_EQ(exchange(port(), "PING SPAMC/1.5\r\n\r\n"), "SPAMD/1.5 0 PONG\r\n");
  // A port probe (connect, close) is not an error.
  EXPECT_EQ(exchange(port(), ""), "");
  EXPECT_EQ(errors("eof_in_headers"), 0.0);
}

TEST_F(SpamdServerTest, LargeMessagesAreScoredOnTheirFirstBytes) {
  SpamdLimits limits;
  limits.max_message_bytes = 300;
  limits.max_content_length = 5000;
  start(limits);
  std::string big = message("x", std::string(kGtube) + "\r\n" + std::string(1000, 'a') + "\r\n");
  ASSERT_GT(big.size(), 1000u);
  EXPECT_EQ(exchange(port(), request("CHECK", big)),
            "SPAMD/1.1 0 EX_OK\r\nSpam: True ; 1000.0 / 6.0\r\n\r\n");
  std::string processed = exchange(port(), request("PROCESS", big));
  EXPECT_EQ(processed.rfind("SPAMD/1.0 65 ", 0), 0u) << processed;
  EXPECT_EQ(processed.find("aaaa"), std::string::npos) << "never part of a message";
  std::string headers = exchange(port(), request("HEADERS", big));
  EXPECT_TRUE(headers.starts_with("SPAMD/1.1 0 EX_OK\r\n")) << headers;
  EXPECT_TRUE(headers.ends_with("tests=GTUBE\r\n\r\n")) << headers;
  // A declared length over max_content_length is refused at once.
  std::string huge = "CHECK SPAMC/1.5\r\nContent-length: 5001\r\n\r\n" + std::string(100, 'b');
  EXPECT_EQ(exchange(port(), huge)
                .rfind("SPAMD/1.0 76 Bad header line: (Content-length 5001 is "
                       "over the limit of 5000 bytes)",
                       0),
            0u);
  EXPECT_EQ(errors("content_length_too_big"), 1.0);
}

TEST_F(SpamdServerTest, TellIsRefusedUnlessAllowed) {
  start({}, /*with_learner=*/true);
  std::string learn = request("TELL", message("learn me"), "Message-class: spam\r\nSet: local\r\n");
  EXPECT_EQ(exchange(port(), learn),
            "SPAMD/1.0 69 Service Unavailable: TELL commands are not enabled ([spamd] "
            "allow_tell = false)\r\n");
  EXPECT_EQ(learner_->learned, 0);
  make_engine(/*allow_tell=*/true);  // a reload that turns it on
  EXPECT_EQ(exchange(port(), learn), "SPAMD/1.1 0 EX_OK\r\nDidSet: local\r\n\r\n");
  EXPECT_EQ(learner_->learned, 1);
  EXPECT_TRUE(learner_->last_spam);
  EXPECT_EQ(learner_->last_subject, "learn me");
  EXPECT_EQ(exchange(port(), request("TELL", message("x"), "Remove: local\r\n")),
            "SPAMD/1.1 0 EX_OK\r\n\r\n");  // not learned before: nothing removed
  EXPECT_EQ(learner_->forgotten, 1);
  EXPECT_EQ(exchange(port(), request("TELL", message("x"), "Set: local\r\nRemove: local\r\n"))
                .rfind("SPAMD/1.0 76 ", 0),
            0u);
  EXPECT_EQ(requests("TELL"), 4.0);
}

TEST_F(SpamdServerTest, TellWithoutALearnerSaysSo) {
  make_engine(/*allow_tell=*/true);
  start();
  EXPECT_EQ(exchange(port(), request("TELL", message("x"), "Message-class: ham\r\nSet: local\r\n")),
            "SPAMD/1.0 69 Service Unavailable: learning is not available in this build (no Bayes "
            "learner)\r\n");
}

TEST_F(SpamdServerTest, SlowAndSilentClientsAreClosed) {
  SpamdLimits limits;
  limits.first_byte_timeout = 200ms;
  limits.request_timeout = 400ms;
  start(limits);
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(exchange(port(), "", /*half_close=*/false), "");
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s);
  EXPECT_TRUE(eventually([&] { return errors("first_byte_timeout") == 1.0; }));
  t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(exchange(port(), "CHECK SPAMC/1.5\r\nContent-length: 100\r\n\r\nhalf", false), "");
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s);
  EXPECT_TRUE(eventually([&] { return errors("request_timeout") == 1.0; }));
  EXPECT_EQ(exchange(port(), "PING SPAMC/1.5\r\n\r\n"), "SPAMD/1.5 0 PONG\r\n");
}

TEST_F(SpamdServerTest, OverMaxConnectionsNewOnesAreClosed) {
  SpamdLimits limits;
  limits.max_connections = 1;
  start(limits);
  int idle = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port());
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(idle, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_TRUE(eventually([&] { return server_->open_connections() == 1; }));
  EXPECT_EQ(exchange(port(), "PING SPAMC/1.5\r\n\r\n"), "");
  EXPECT_EQ(errors("max_connections"), 1.0);
  ::close(idle);
  ASSERT_TRUE(eventually([&] { return server_->open_connections() == 0; }));
  EXPECT_EQ(exchange(port(), "PING SPAMC/1.5\r\n\r\n"), "SPAMD/1.5 0 PONG\r\n");
}

// [headers] authentication_results: PROCESS and HEADERS carry our Authentication-Results
// (authserv-id from [network] our_names when authserv_id is ""), the incoming one with our id
// is removed, one with another id stays; CHECK is unchanged; off by default.
TEST_F(SpamdServerTest, ProcessAddsAuthenticationResultsWhenEnabled) {
  start();
  const std::string forged =
      "Authentication-Results: Mail.Example.Org; dkim=pass header.d=forged.example\r\n"
      "Authentication-Results: other.example; spf=pass smtp.mailfrom=a.example\r\n" +
      message("hello");
  std::string off = exchange(port(), request("PROCESS", forged));
  EXPECT_NE(off.find("header.d=forged.example"), std::string::npos) << off;
  EXPECT_EQ(off.find("Authentication-Results: mail.example.org"), std::string::npos) << off;

  auto config = std::make_shared<Config>();
  config->greylist.mode = "off";
  config->headers.authentication_results = true;
  config->network.our_names = {"mail.example.org", "192.0.2.25"};
  Env env;
  env.clock = &clock_;
  env.metrics = &metrics_;
  std::vector<std::unique_ptr<Check>> checks;
  checks.push_back(std::make_unique<SubjectCheck>());
  {
    auto engine = std::make_shared<Engine>(config, env, std::move(checks));
    std::lock_guard lock(engine_mu_);
    engine_ = std::move(engine);
  }
  std::string processed = exchange(port(), request("PROCESS", forged));
  EXPECT_TRUE(processed.starts_with("SPAMD/1.1 0 EX_OK\r\nContent-length: ")) << processed;
  EXPECT_EQ(processed.find("forged.example"), std::string::npos) << processed;
  EXPECT_NE(processed.find("Authentication-Results: other.example; spf=pass"), std::string::npos)
      << processed;
  const std::string ours = "Authentication-Results: mail.example.org; none\r\n";
  size_t at = processed.find(ours);
  ASSERT_NE(at, std::string::npos) << processed;
  EXPECT_EQ(processed.find(ours, at + 1), std::string::npos) << "exactly one";
  EXPECT_LT(at, processed.find("\r\n\r\nhello")) << "in the header block";
  std::string headers = exchange(port(), request("HEADERS", forged));
  EXPECT_NE(headers.find(ours), std::string::npos) << headers;
  EXPECT_EQ(exchange(port(), request("CHECK", forged)),
            "SPAMD/1.1 0 EX_OK\r\nSpam: False ; 0.0 / 6.0\r\n\r\n");
}

}  // namespace
}  // namespace spamward
