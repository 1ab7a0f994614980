// PolicyServer in-process on loopback TCP (port 0) and on a unix socket, with a real Engine and
// a test check whose symbols are chosen by the request's client_address. The clients are plain
// blocking sockets with receive timeouts, so a hung server fails a test instead of hanging it.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "core/clock.h"
#include "core/log.h"
#include "server/policy_server.h"

namespace spamward {
namespace {

using namespace std::chrono_literals;

// client_address 192.0.2.N decides what the check emits:
//   1 nothing (accept), 2 two families 10 + 10 (reject), 3 one family 7 (tag),
//   4 a permanent ban, 5 an unknown recipient, 6 the check throws (fails open: accept).
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
      case 5:
        out.push_back({"RCPT_UNKNOWN", 0.0, Family::behaviour, "", false});
        break;
      case 6:
        throw std::runtime_error("test check failure");
      default:
        break;
    }
    co_return out;
  }
};

std::string request(const std::string& client, const std::string& state = "RCPT",
                    const std::string& extra = "") {
  return "request=smtpd_access_policy\nprotocol_state=" + state +
         "\nprotocol_name=ESMTP\nclient_address=" + client +
         "\nclient_name=mail.example.net\nreverse_client_name=mail.example.net\n"
         "helo_name=mail.example.net\nsender=a@example.net\nrecipient=b@example.org\n"
         "instance=1.2.3\nqueue_id=\n" +
         extra + "\n";
}

// A blocking client socket with a receive timeout.
class Client {
 public:
  static Client tcp(uint16_t port) {
    Client c(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    c.ok_ = ::connect(c.fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    return c;
  }
  static Client unix_socket(const std::string& path) {
    Client c(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path.c_str(), sizeof(a.sun_path) - 1);
    c.ok_ = ::connect(c.fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    return c;
  }
  Client(Client&& o) noexcept : fd_(o.fd_), ok_(o.ok_), pending_(std::move(o.pending_)) {
    o.fd_ = -1;
  }
  ~Client() { close(); }
  bool connected() const { return ok_; }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  // False when the peer has closed (EPIPE/ECONNRESET): expected in the over-limit tests.
  bool send(std::string_view data) {
    while (!data.empty()) {
      ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  // One reply (up to and including its empty line); "" on timeout, EOF or error.
  std::string reply(std::chrono::milliseconds timeout = 5000ms) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      auto end = pending_.find("\n\n");
      if (end != std::string::npos) {
        std::string r = pending_.substr(0, end + 2);
        pending_.erase(0, end + 2);
        return r;
      }
      char buf[4096];
      ssize_t n = read_some(buf, sizeof buf, deadline);
      if (n <= 0) return "";
      pending_.append(buf, static_cast<size_t>(n));
    }
  }

  // True when the server closes the connection within `timeout` (bytes before that are
  // discarded).
  bool closed_by_server(std::chrono::milliseconds timeout = 5000ms) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    char buf[65536];
    for (;;) {
      ssize_t n = read_some(buf, sizeof buf, deadline);
      if (n == 0) return true;
      if (n < 0) return errno == ECONNRESET;
    }
  }

 private:
  explicit Client(int fd) : fd_(fd) {}
  ssize_t read_some(char* buf, size_t size, std::chrono::steady_clock::time_point deadline) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      errno = ETIMEDOUT;
      return -1;
    }
    pollfd p{fd_, POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(left.count()));
    if (r <= 0) {
      errno = ETIMEDOUT;
      return -1;
    }
    return ::recv(fd_, buf, size, 0);
  }
  int fd_;
  bool ok_ = false;
  std::string pending_;
};

template <typename Pred>
bool eventually(Pred pred, std::chrono::milliseconds timeout = 5000ms) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return pred();
}

class PolicyServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto config = std::make_shared<Config>();
    config->greylist.mode = "off";
    Env env;
    env.clock = &clock_;
    env.metrics = &metrics_;
    std::vector<std::unique_ptr<Check>> checks;
    checks.push_back(std::make_unique<ByAddressCheck>());
    engine_ = std::make_shared<Engine>(config, env, std::move(checks));
    // One decision line per request would drown the test output (1,000-connection test).
    saved_level_ = decision_logger().level();
    decision_logger().set_level(spdlog::level::off);
    dir_ = std::filesystem::temp_directory_path() /
           ("spamward-policy-test-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }

  void TearDown() override {
    if (server_) {
      server_->stop();
      io_.stop();
      if (thread_.joinable()) thread_.join();
      server_.reset();
    }
    decision_logger().set_level(saved_level_);
    std::filesystem::remove_all(dir_);
  }

  // Starts a server on 127.0.0.1:0 (or `spec`) with its loop on a background thread.
  void start(PolicyLimits limits = {}, const std::string& spec = "127.0.0.1:0") {
    server_ = std::make_unique<PolicyServer>(
        io_.get_executor(), [this] { return source(); }, limits, metrics_);
    auto parsed = ListenSpec::parse(spec);
    ASSERT_TRUE(parsed.has_value()) << spec;
    server_->listen(*parsed);
    server_->start();
    thread_ = std::thread([this] { io_.run(); });
  }

  std::shared_ptr<Engine> source() { return engine_available_ ? engine_ : nullptr; }

  double errors(const std::string& reason) {
    return metrics_.value("spamward_protocol_errors_total",
                          {{"server", "policy"}, {"reason", reason}});
  }
  double open_gauge() {
    return metrics_.value("spamward_open_connections", {{"server", "policy"}});
  }

  FakeClock clock_;
  Metrics metrics_;
  std::shared_ptr<Engine> engine_;
  std::atomic<bool> engine_available_{true};
  boost::asio::io_context io_{1};
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_{
      io_.get_executor()};
  std::unique_ptr<PolicyServer> server_;
  std::thread thread_;
  std::filesystem::path dir_;
  spdlog::level::level_enum saved_level_ = spdlog::level::info;
};

TEST_F(PolicyServerTest, SeveralRequestsOnOneConnection) {
  start();
  ASSERT_NE(server_->port(), 0);
  auto c = Client::tcp(server_->port());
  ASSERT_TRUE(c.connected());
  ASSERT_TRUE(c.send(request("192.0.2.1")));
  EXPECT_EQ(c.reply(), "action=DUNNO\n\n");
  ASSERT_TRUE(c.send(request("192.0.2.2")));
  EXPECT_EQ(c.reply(), "action=REJECT 5.7.1 Message refused as spam (TEST_DNSBL, TEST_RFC)\n\n");
  ASSERT_TRUE(c.send(request("192.0.2.3")));
  EXPECT_EQ(c.reply(), "action=DUNNO\n\n") << "tag at RCPT";
  ASSERT_TRUE(c.send(request("192.0.2.3", "DATA")));
  EXPECT_EQ(c.reply(), "action=PREPEND X-Spam-Flag: YES\n\n") << "tag at DATA";
  ASSERT_TRUE(c.send(request("192.0.2.4")));
  EXPECT_EQ(c.reply().rfind("action=554 5.7.1 ", 0), 0u) << "permanent ban";
  ASSERT_TRUE(c.send(request("192.0.2.5")));
  EXPECT_EQ(c.reply().rfind("action=550 5.1.1 ", 0), 0u) << "unknown recipient";
  ASSERT_TRUE(c.send(request("192.0.2.6")));
  EXPECT_EQ(c.reply(), "action=DUNNO\n\n") << "a failing check fails open";
  // CRLF and pipelining: two requests in one write, answered in order.
  std::string crlf;
  for (char ch : request("192.0.2.2") + request("192.0.2.1")) {
    if (ch == '\n') crlf += '\r';
    crlf += ch;
  }
  ASSERT_TRUE(c.send(crlf));
  EXPECT_EQ(c.reply().rfind("action=REJECT", 0), 0u);
  EXPECT_EQ(c.reply(), "action=DUNNO\n\n");
  EXPECT_EQ(server_->open_connections(), 1u);
  EXPECT_EQ(open_gauge(), 1.0);
}

TEST_F(PolicyServerTest, UnixSocket) {
  std::string path = (dir_ / "policy.sock").string();
  // A stale socket file from an earlier run (bound, never unlinked) is replaced.
  {
    int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path.c_str(), sizeof(a.sun_path) - 1);
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    ::close(fd);
  }
  start({}, "unix:" + path);
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0660u);
  EXPECT_EQ(server_->port(), 0) << "no TCP listener";

  auto c = Client::unix_socket(path);
  ASSERT_TRUE(c.connected());
  ASSERT_TRUE(c.send(request("192.0.2.1") + request("192.0.2.2")));
  EXPECT_EQ(c.reply(), "action=DUNNO\n\n");
  EXPECT_EQ(c.reply().rfind("action=REJECT 5.7.1 ", 0), 0u);

  // A live socket is not stolen by a second server.
  PolicyServer other(
      io_.get_executor(), [this] { return source(); }, {}, metrics_);
  try {
    other.listen(*ListenSpec::parse("unix:" + path));
    FAIL() << "listening on a live socket must fail";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()).rfind("cannot listen on unix:" + path + ": ", 0), 0u)
        << e.what();
  }
}

TEST_F(PolicyServerTest, ListenErrorsNameTheSpec) {
  std::string file = (dir_ / "regular").string();
  std::ofstream(file) << "not a socket";
  PolicyServer s(
      io_.get_executor(), [this] { return source(); }, {}, metrics_);
  try {
    s.listen(*ListenSpec::parse("unix:" + file));
    FAIL() << "a regular file must not be removed";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot listen on unix:" + file), std::string::npos);
  }
  EXPECT_TRUE(std::filesystem::exists(file));

  start();
  PolicyServer dup(
      io_.get_executor(), [this] { return source(); }, {}, metrics_);
  std::string spec = "127.0.0.1:" + std::to_string(server_->port());
  try {
    dup.listen(*ListenSpec::parse(spec));
    FAIL() << "port in use";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()).rfind("cannot listen on " + spec + ": ", 0), 0u) << e.what();
  }
}

TEST_F(PolicyServerTest, BinaryGarbageClosesOnlyThatConnection) {
  start();
  auto good = Client::tcp(server_->port());
  ASSERT_TRUE(good.send(request("192.0.2.1")));
  EXPECT_EQ(good.reply(), "action=DUNNO\n\n");

  auto bad = Client::tcp(server_->port());
  std::string junk;
  uint32_t x = 7;
  for (int i = 0; i < 3000; ++i) {
    x = x * 1664525u + 1013904223u;
    junk += static_cast<char>(x >> 24);
  }
  bad.send(junk);
  EXPECT_TRUE(bad.closed_by_server());

  ASSERT_TRUE(good.send(request("192.0.2.2")));
  EXPECT_EQ(good.reply().rfind("action=REJECT", 0), 0u);
  double total = 0;
  for (auto r : {"nul_byte", "missing_equals", "empty_name", "line_too_long", "empty_request"}) {
    total += errors(r);
  }
  EXPECT_EQ(total, 1.0);
  EXPECT_TRUE(eventually([&] { return server_->open_connections() == 1; }));
}

TEST_F(PolicyServerTest, OneMebibyteLineIsRefused) {
  start();
  auto c = Client::tcp(server_->port());
  c.send(std::string(1 << 20, 'a'));  // may fail part-way: the server closes early
  EXPECT_TRUE(c.closed_by_server());
  EXPECT_TRUE(eventually([&] { return errors("line_too_long") == 1.0; }));
}

TEST_F(PolicyServerTest, TenThousandAttributesAreRefused) {
  start();
  auto c = Client::tcp(server_->port());
  std::string req = "request=smtpd_access_policy\n";
  for (int i = 0; i < 10000; ++i) req += "attr" + std::to_string(i) + "=x\n";
  c.send(req + "\n");
  EXPECT_TRUE(c.closed_by_server());
  EXPECT_TRUE(eventually([&] { return errors("too_many_attributes") == 1.0; }));
}

TEST_F(PolicyServerTest, RequestTooBigAndBadRequestType) {
  PolicyLimits limits;
  limits.max_request_bytes = 1000;
  start(limits);
  auto big = Client::tcp(server_->port());
  std::string req;
  for (int i = 0; i < 40; ++i)
    req += "attr" + std::to_string(i) + "=" + std::string(30, 'v') + "\n";
  big.send(req + "\n");
  EXPECT_TRUE(big.closed_by_server());
  EXPECT_TRUE(eventually([&] { return errors("request_too_big") == 1.0; }));

  auto other = Client::tcp(server_->port());
  other.send("request=something_else\n\n");
  EXPECT_TRUE(other.closed_by_server());
  EXPECT_TRUE(eventually([&] { return errors("bad_request") == 1.0; }));
}

TEST_F(PolicyServerTest, HalfARequestThenClose) {
  start();
  {
    auto c = Client::tcp(server_->port());
    std::string r = request("192.0.2.1");
    ASSERT_TRUE(c.send(r.substr(0, r.size() / 2)));
    ASSERT_TRUE(eventually([&] { return server_->open_connections() == 1; }));
  }
  EXPECT_TRUE(eventually([&] { return server_->open_connections() == 0; }));
  EXPECT_TRUE(eventually([&] { return errors("truncated_request") == 1.0; }));
  EXPECT_TRUE(eventually([&] { return open_gauge() == 0.0; }));
  auto next = Client::tcp(server_->port());
  ASSERT_TRUE(next.send(request("192.0.2.1")));
  EXPECT_EQ(next.reply(), "action=DUNNO\n\n");
}

TEST_F(PolicyServerTest, SlowlorisIsCutAtRequestTimeout) {
  PolicyLimits limits;
  limits.request_timeout = 300ms;
  start(limits);
  auto slow = Client::tcp(server_->port());
  auto fast = Client::tcp(server_->port());
  std::string r = request("192.0.2.1");
  auto began = std::chrono::steady_clock::now();
  bool closed = false;
  // One byte every 20 ms: each byte is progress, yet the whole request never completes in time.
  for (size_t i = 0; i < r.size() - 1; ++i) {
    if (!slow.send(r.substr(i, 1))) {
      closed = true;
      break;
    }
    // Another connection is served meanwhile.
    if (i == 5) {
      ASSERT_TRUE(fast.send(request("192.0.2.2")));
      EXPECT_EQ(fast.reply().rfind("action=REJECT", 0), 0u);
    }
    std::this_thread::sleep_for(20ms);
    if (std::chrono::steady_clock::now() - began > 2s) break;
  }
  EXPECT_TRUE(closed || slow.closed_by_server(2000ms));
  auto took = std::chrono::steady_clock::now() - began;
  EXPECT_GE(took, 280ms);
  EXPECT_LT(took, 1500ms);
  EXPECT_EQ(errors("request_timeout"), 1.0);
}

TEST_F(PolicyServerTest, IdleConnectionIsClosed) {
  PolicyLimits limits;
  limits.idle_timeout = 200ms;
  start(limits);
  auto c = Client::tcp(server_->port());
  ASSERT_TRUE(c.send(request("192.0.2.1")));
  EXPECT_EQ(c.reply(), "action=DUNNO\n\n");
  auto began = std::chrono::steady_clock::now();
  EXPECT_TRUE(c.closed_by_server(3000ms));
  auto took = std::chrono::steady_clock::now() - began;
  EXPECT_GE(took, 150ms);
  EXPECT_LT(took, 1500ms);
  EXPECT_EQ(errors("idle_timeout"), 1.0);
  EXPECT_EQ(errors("request_timeout"), 0.0);
}

TEST_F(PolicyServerTest, ThousandConcurrentConnectionsAllAnswered) {
  rlimit rl{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &rl), 0);
  if (rl.rlim_cur < 2300) {
    rl.rlim_cur = std::min<rlim_t>(rl.rlim_max, 4096);
    ::setrlimit(RLIMIT_NOFILE, &rl);
    ::getrlimit(RLIMIT_NOFILE, &rl);
  }
  if (rl.rlim_cur < 2100) GTEST_SKIP() << "RLIMIT_NOFILE hard limit too low: " << rl.rlim_max;
  start();
  constexpr int kClients = 1000;
  std::vector<Client> clients;
  clients.reserve(kClients);
  for (int i = 0; i < kClients; ++i) {
    clients.push_back(Client::tcp(server_->port()));
    ASSERT_TRUE(clients.back().connected()) << i;
  }
  for (int i = 0; i < kClients; ++i) {
    ASSERT_TRUE(clients[i].send(request(i % 2 ? "192.0.2.2" : "192.0.2.1")));
  }
  int answered = 0;
  for (int i = 0; i < kClients; ++i) {
    std::string r = clients[i].reply(10000ms);
    bool right = i % 2 ? r.rfind("action=REJECT 5.7.1", 0) == 0 : r == "action=DUNNO\n\n";
    answered += right ? 1 : 0;
  }
  EXPECT_EQ(answered, kClients);
  EXPECT_EQ(server_->open_connections(), static_cast<size_t>(kClients));
  EXPECT_EQ(open_gauge(), kClients);
}

TEST_F(PolicyServerTest, MaxConnectionsEnforced) {
  PolicyLimits limits;
  limits.max_connections = 3;
  start(limits);
  std::vector<Client> clients;
  for (int i = 0; i < 3; ++i) {
    clients.push_back(Client::tcp(server_->port()));
    ASSERT_TRUE(clients.back().send(request("192.0.2.1")));
    ASSERT_EQ(clients.back().reply(), "action=DUNNO\n\n");
  }
  for (int i = 0; i < 3; ++i) {
    auto extra = Client::tcp(server_->port());
    extra.send(request("192.0.2.1"));
    EXPECT_TRUE(extra.closed_by_server()) << i;
  }
  EXPECT_EQ(errors("max_connections"), 3.0);
  // The admitted ones are unaffected.
  ASSERT_TRUE(clients[0].send(request("192.0.2.2")));
  EXPECT_EQ(clients[0].reply().rfind("action=REJECT", 0), 0u);
  // A slot freed is a slot available.
  clients.pop_back();
  ASSERT_TRUE(eventually([&] { return server_->open_connections() == 2; }));
  auto again = Client::tcp(server_->port());
  ASSERT_TRUE(again.send(request("192.0.2.1")));
  EXPECT_EQ(again.reply(), "action=DUNNO\n\n");
}

TEST_F(PolicyServerTest, NoEngineFailsOpen) {
  engine_available_ = false;
  start();
  auto c = Client::tcp(server_->port());
  ASSERT_TRUE(c.send(request("192.0.2.2")));
  EXPECT_EQ(c.reply(), "action=DUNNO\n\n");
  engine_available_ = true;
  ASSERT_TRUE(c.send(request("192.0.2.2")));
  EXPECT_EQ(c.reply().rfind("action=REJECT", 0), 0u) << "the source is asked per request";
}

TEST_F(PolicyServerTest, StopClosesIdleConnectionsAndStopsAccepting) {
  start();
  auto c = Client::tcp(server_->port());
  ASSERT_TRUE(c.send(request("192.0.2.1")));
  EXPECT_EQ(c.reply(), "action=DUNNO\n\n");
  uint16_t port = server_->port();
  server_->stop();
  EXPECT_TRUE(c.closed_by_server());
  EXPECT_TRUE(eventually([&] { return server_->open_connections() == 0; }));
  auto late = Client::tcp(port);
  EXPECT_FALSE(late.connected() && !late.closed_by_server(1000ms));
}

}  // namespace
}  // namespace spamward
