#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>

#include "core/listen_spec.h"
#include "core/metrics.h"
#include "server/http_server.h"

using namespace spamward;
namespace net = boost::asio;

namespace {

// A raw client on POSIX sockets: receive timeouts (SO_RCVTIMEO) make a server bug fail the
// test instead of hanging it.
class Client {
 public:
  explicit Client(uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    init(reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  }
  explicit Client(const std::string& unix_path) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, unix_path.c_str(), sizeof addr.sun_path - 1);
    init(reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  }
  ~Client() { ::close(fd_); }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  void send(const std::string& data) {
    size_t off = 0;
    while (off < data.size()) {
      ssize_t n = ::send(fd_, data.data() + off, data.size() - off, MSG_NOSIGNAL);
      if (n <= 0) throw std::runtime_error("send failed");
      off += static_cast<size_t>(n);
    }
  }

  // Everything until the server closes (or the timeout, which fails the calling test).
  std::string read_until_close() {
    std::string out = std::exchange(pending_, "");  // what read_response() already received
    char buf[4096];
    for (;;) {
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n == 0) {
        closed_ = true;
        break;
      }
      if (n < 0) break;  // timeout or reset
      out.append(buf, static_cast<size_t>(n));
    }
    return out;
  }
  bool closed() const { return closed_; }

  // One response on a keep-alive connection: headers, then Content-Length bytes of body
  // (none when `head`).
  std::string read_response(bool head = false) {
    while (pending_.find("\r\n\r\n") == std::string::npos) {
      if (!fill()) return std::exchange(pending_, "");
    }
    size_t header_end = pending_.find("\r\n\r\n") + 4;
    size_t length = 0;
    auto pos = pending_.find("Content-Length: ");
    if (pos != std::string::npos && pos < header_end)
      length = std::stoul(pending_.substr(pos + 16));
    if (head) length = 0;
    while (pending_.size() < header_end + length) {
      if (!fill()) break;
    }
    std::string response = pending_.substr(0, header_end + length);
    pending_.erase(0, header_end + length);
    return response;
  }

  std::string roundtrip(const std::string& request, bool head = false) {
    send(request);
    return read_response(head);
  }

 private:
  void init(sockaddr* addr, socklen_t len) {
    timeval tv{5, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (::connect(fd_, addr, len) != 0) throw std::runtime_error("connect failed");
  }
  bool fill() {
    char buf[4096];
    ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n <= 0) {
      closed_ = n == 0;
      return false;
    }
    pending_.append(buf, static_cast<size_t>(n));
    return true;
  }
  int fd_ = -1;
  bool closed_ = false;
  std::string pending_;
};

std::string get(const std::string& path, const std::string& extra_headers = "") {
  return "GET " + path + " HTTP/1.1\r\nHost: localhost\r\n" + extra_headers + "\r\n";
}

std::string body_of(const std::string& response) {
  auto pos = response.find("\r\n\r\n");
  return pos == std::string::npos ? "" : response.substr(pos + 4);
}

net::awaitable<HttpServer::Response> echo_handler(const HttpServer::Request& r) {
  HttpServer::Response res;
  res.body = "got " + r.method + " " + r.target + " [" + r.body +
             "] x-test=" + (r.headers.count("x-test") ? r.headers.at("x-test") : "");
  co_return res;
}

net::awaitable<HttpServer::Response> throwing_handler(const HttpServer::Request&) {
  throw std::runtime_error("boom");
  co_return HttpServer::Response{};
}

class HttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override { server_ = std::make_unique<HttpServer>(io_.get_executor(), metrics_); }

  void Start(const std::string& spec = "127.0.0.1:0") {
    server_->listen(*ListenSpec::parse(spec));
    server_->start();
    thread_ = std::thread([this] { io_.run(); });
  }

  void TearDown() override {
    if (thread_.joinable()) {
      server_->stop();
      thread_.join();
    }
    server_.reset();
  }

  uint16_t port() const { return server_->port(); }

  // Waits (up to 3 s) for a metric the server updates on its own thread.
  double await_value(const std::string& name, const Labels& labels, double want) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
    while (metrics_.value(name, labels) != want && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return metrics_.value(name, labels);
  }

  net::io_context io_;
  Metrics metrics_;
  std::unique_ptr<HttpServer> server_;
  std::thread thread_;
};

}  // namespace

TEST_F(HttpServerTest, Healthz) {
  Start();
  ASSERT_NE(port(), 0);
  Client c(port());
  std::string res = c.roundtrip(get("/healthz"));
  EXPECT_EQ(res.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << res;
  EXPECT_EQ(body_of(res), "ok\n");
  EXPECT_EQ(await_value("spamward_http_requests_total", {{"code", "200"}}, 1), 1);
}

TEST_F(HttpServerTest, HeadHasLengthButNoBody) {
  Start();
  Client c(port());
  std::string res = c.roundtrip("HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n", true);
  EXPECT_EQ(res.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << res;
  EXPECT_NE(res.find("Content-Length: 3\r\n"), std::string::npos) << res;
  EXPECT_EQ(body_of(res), "");
  // The connection is still in sync: a body would have been read as the next response.
  std::string next = c.roundtrip(get("/healthz"));
  EXPECT_EQ(next.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << next;
}

TEST_F(HttpServerTest, MetricsRendersCountersAndConnections) {
  metrics_.inc("spamward_test_hits_total", {{"kind", "unit"}}, 3);
  Start();
  Client c(port());
  std::string res = c.roundtrip(get("/metrics"));
  EXPECT_EQ(res.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << res;
  EXPECT_NE(res.find("Content-Type: text/plain; version=0.0.4"), std::string::npos) << res;
  std::string body = body_of(res);
  EXPECT_NE(body.find("spamward_test_hits_total{kind=\"unit\"} 3\n"), std::string::npos) << body;
  // This very connection is open while the page renders.
  EXPECT_NE(body.find("spamward_open_connections{server=\"http\"} 1\n"), std::string::npos) << body;
  EXPECT_NE(body.find("# TYPE spamward_http_requests_total counter"), std::string::npos) << body;
}

TEST_F(HttpServerTest, OpenConnectionsGaugeFollowsClients) {
  Start();
  {
    Client a(port());
    Client b(port());
    a.roundtrip(get("/healthz"));
    b.roundtrip(get("/healthz"));
    EXPECT_EQ(await_value("spamward_open_connections", {{"server", "http"}}, 2), 2);
  }
  EXPECT_EQ(await_value("spamward_open_connections", {{"server", "http"}}, 0), 0);
}

TEST_F(HttpServerTest, UnknownPathIs404AndWrongMethodIs405) {
  Start();
  Client c(port());
  std::string missing = c.roundtrip(get("/nope"));
  EXPECT_EQ(missing.rfind("HTTP/1.1 404 ", 0), 0u) << missing;
  std::string wrong = c.roundtrip("DELETE /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(wrong.rfind("HTTP/1.1 405 ", 0), 0u) << wrong;
  EXPECT_NE(wrong.find("Allow: GET, HEAD\r\n"), std::string::npos) << wrong;
  // The query string does not take part in matching.
  std::string query = c.roundtrip(get("/healthz?verbose=1"));
  EXPECT_EQ(query.rfind("HTTP/1.1 200 ", 0), 0u) << query;
}

TEST_F(HttpServerTest, StateChangingRouteIsRefusedWithoutAdminToken) {
  server_->route("POST", "/test", echo_handler);
  Start();
  Client c(port());
  std::string res = c.roundtrip(
      "POST /test HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \r\nContent-Length: 2\r\n\r\nhi");
  EXPECT_EQ(res.rfind("HTTP/1.1 403 ", 0), 0u) << res;
  EXPECT_EQ(res.find("got POST"), std::string::npos);
}

TEST_F(HttpServerTest, StateChangingRouteNeedsTheRightBearerToken) {
  server_->route("POST", "/test", echo_handler);
  server_->route("GET", "/test", echo_handler);
  server_->set_admin_token("s3cret-token");
  Start();
  Client c(port());
  auto post = [](const std::string& auth) {
    return "POST /test?a=1 HTTP/1.1\r\nHost: x\r\nX-Test: yes\r\n" + auth +
           "Content-Length: 5\r\n\r\nhello";
  };
  std::string none = c.roundtrip(post(""));
  EXPECT_EQ(none.rfind("HTTP/1.1 401 ", 0), 0u) << none;
  EXPECT_NE(none.find("WWW-Authenticate: Bearer"), std::string::npos) << none;
  std::string wrong = c.roundtrip(post("Authorization: Bearer s3cret-tokeX\r\n"));
  EXPECT_EQ(wrong.rfind("HTTP/1.1 401 ", 0), 0u) << wrong;
  std::string prefix = c.roundtrip(post("Authorization: Bearer s3cret\r\n"));
  EXPECT_EQ(prefix.rfind("HTTP/1.1 401 ", 0), 0u) << prefix;
  std::string basic = c.roundtrip(post("Authorization: Basic s3cret-token\r\n"));
  EXPECT_EQ(basic.rfind("HTTP/1.1 401 ", 0), 0u) << basic;
  std::string right = c.roundtrip(post("Authorization: Bearer s3cret-token\r\n"));
  EXPECT_EQ(right.rfind("HTTP/1.1 200 ", 0), 0u) << right;
  EXPECT_EQ(body_of(right), "got POST /test?a=1 [hello] x-test=yes");
  // Reading needs no token.
  std::string read = c.roundtrip(get("/test"));
  EXPECT_EQ(body_of(read), "got GET /test [] x-test=");
}

TEST_F(HttpServerTest, HandlerExceptionGives500AndKeepsServing) {
  server_->route("GET", "/throw", throwing_handler);
  Start();
  Client c(port());
  std::string res = c.roundtrip(get("/throw"));
  EXPECT_EQ(res.rfind("HTTP/1.1 500 ", 0), 0u) << res;
  std::string next = c.roundtrip(get("/healthz"));
  EXPECT_EQ(next.rfind("HTTP/1.1 200 ", 0), 0u) << next;
}

TEST_F(HttpServerTest, GarbageClosesOnlyThatConnection) {
  Start();
  Client good(port());
  ASSERT_EQ(good.roundtrip(get("/healthz")).rfind("HTTP/1.1 200 ", 0), 0u);

  Client bad(port());
  bad.send(std::string("\x16\x03\x01\x02\x00garbage\r\n\r\n", 16));
  std::string res = bad.read_until_close();
  EXPECT_TRUE(bad.closed());
  EXPECT_EQ(res.rfind("HTTP/1.1 400 ", 0), 0u) << res;
  EXPECT_EQ(await_value("spamward_protocol_errors_total",
                        {{"server", "http"}, {"reason", "malformed"}}, 1),
            1);

  std::string again = good.roundtrip(get("/healthz"));
  EXPECT_EQ(again.rfind("HTTP/1.1 200 ", 0), 0u) << again;
}

TEST_F(HttpServerTest, OversizedHeaderIs431AndClosed) {
  Start();
  Client c(port());
  c.send(get("/healthz", "X-Big: " + std::string(10 * 1024, 'a') + "\r\n"));
  std::string res = c.read_until_close();
  EXPECT_TRUE(c.closed());
  EXPECT_EQ(res.rfind("HTTP/1.1 431 ", 0), 0u) << res.substr(0, 200);
  EXPECT_EQ(await_value("spamward_protocol_errors_total",
                        {{"server", "http"}, {"reason", "header_too_large"}}, 1),
            1);
}

TEST_F(HttpServerTest, OversizedBodyIs413) {
  server_->route("POST", "/test", echo_handler);
  server_->set_admin_token("t");
  Start();
  Client c(port());
  // Refused from the declared length: the client need not send the 2 MiB.
  c.send(
      "POST /test HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\nContent-Length: "
      "2097152\r\n\r\n");
  std::string res = c.read_until_close();
  EXPECT_EQ(res.rfind("HTTP/1.1 413 ", 0), 0u) << res;
}

TEST_F(HttpServerTest, SlowRequestTimesOut) {
  HttpServer::Limits limits;
  limits.read_timeout = std::chrono::milliseconds(300);
  server_->set_limits(limits);
  Start();
  Client c(port());
  c.send("GET /healthz HTT");
  auto start = std::chrono::steady_clock::now();
  std::string res = c.read_until_close();
  auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_TRUE(c.closed());
  EXPECT_EQ(res, "");
  EXPECT_LT(elapsed, std::chrono::seconds(3));
  EXPECT_EQ(await_value("spamward_protocol_errors_total",
                        {{"server", "http"}, {"reason", "request_timeout"}}, 1),
            1);
}

TEST_F(HttpServerTest, ConnectionsOverTheLimitGet503) {
  HttpServer::Limits limits;
  limits.max_connections = 1;
  server_->set_limits(limits);
  Start();
  Client first(port());
  ASSERT_EQ(first.roundtrip(get("/healthz")).rfind("HTTP/1.1 200 ", 0), 0u);
  Client second(port());
  std::string res = second.read_until_close();
  EXPECT_EQ(res.rfind("HTTP/1.1 503 ", 0), 0u) << res;
  std::string still = first.roundtrip(get("/healthz"));
  EXPECT_EQ(still.rfind("HTTP/1.1 200 ", 0), 0u) << still;
}

TEST_F(HttpServerTest, KeepAlivePipeliningAndConnectionClose) {
  Start();
  Client c(port());
  c.send(get("/healthz") + get("/nope") + get("/healthz", "Connection: close\r\n"));
  EXPECT_EQ(c.read_response().rfind("HTTP/1.1 200 ", 0), 0u);
  EXPECT_EQ(c.read_response().rfind("HTTP/1.1 404 ", 0), 0u);
  std::string last = c.read_until_close();
  EXPECT_TRUE(c.closed());
  EXPECT_EQ(last.rfind("HTTP/1.1 200 ", 0), 0u) << last;
}

TEST_F(HttpServerTest, ListenErrorNamesTheSpec) {
  Start();
  HttpServer other(io_.get_executor(), metrics_);
  std::string spec = "127.0.0.1:" + std::to_string(port());
  try {
    other.listen(*ListenSpec::parse(spec));
    FAIL() << "expected std::runtime_error";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()).rfind("cannot listen on " + spec + ": ", 0), 0u) << e.what();
  }
}

TEST_F(HttpServerTest, ServesOnAUnixSocket) {
  std::string path = "/tmp/spamward-http-test-" + std::to_string(::getpid()) + ".sock";
  Start("unix:" + path);
  EXPECT_EQ(port(), 0);
  Client c(path);
  std::string res = c.roundtrip(get("/healthz"));
  EXPECT_EQ(res.rfind("HTTP/1.1 200 ", 0), 0u) << res;
  server_->stop();
  thread_.join();
  EXPECT_NE(::access(path.c_str(), F_OK), 0);  // removed on stop
}
