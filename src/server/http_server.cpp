// The only translation unit that includes Boost.Beast (it is heavy to compile).
#include "server/http_server.h"
#include "core/strings.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <spdlog/spdlog.h>
#include <atomic>
#include <boost/asio/basic_socket_acceptor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cerrno>
#include <cstring>
#include <exception>
#include <set>
#include <optional>
#include <stdexcept>
#include <string_view>
#include <utility>

#include "core/metrics.h"
#include "server/stream_server.h"

namespace spamward {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

namespace {

using Protocol = net::generic::stream_protocol;
using Acceptor = net::basic_socket_acceptor<Protocol>;
using Stream = beast::basic_stream<Protocol, net::any_io_executor, beast::unlimited_rate_policy>;
using BeastRequest = http::request<http::string_body>;
using BeastResponse = http::response<http::string_body>;

// After an answer that ends a connection, read and discard what the client still sends for
// at most this long / this much, so closing does not reset the connection (a reset can
// destroy the answer before the client reads it).
constexpr auto kLingerTime = std::chrono::seconds(1);
constexpr size_t kLingerBytes = 64 * 1024;

const Labels kServerLabel = {{"server", "http"}};

std::string_view reason_text(int status) {
  switch (status) {
    case 200:
      return "ok";
    case 400:
      return "bad request";
    case 401:
      return "authorization required";
    case 403:
      return "forbidden";
    case 404:
      return "not found";
    case 405:
      return "method not allowed";
    case 413:
      return "request body too large";
    case 431:
      return "request header too large";
    case 500:
      return "internal error";
    case 503:
      return "too many connections";
  }
  return "";
}

HttpServer::Response plain(int status, std::string body) {
  HttpServer::Response r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

HttpServer::Response error_response(int status) {
  return plain(status, std::string(reason_text(status)) + "\n");
}

// Compares in time that depends only on the expected token's length, not on where the
// given one differs (a timing side channel would let a client guess the token bytewise).
bool constant_time_equal(std::string_view given, std::string_view expected) {
  volatile unsigned char diff = given.size() == expected.size() ? 0 : 1;
  for (size_t i = 0; i < expected.size(); ++i) {
    unsigned char g = i < given.size() ? static_cast<unsigned char>(given[i]) : 0;
    diff = diff | (g ^ static_cast<unsigned char>(expected[i]));
  }
  return diff == 0;
}

std::string peer_text(const Protocol::socket& socket) {
  boost::system::error_code ec;
  auto ep = socket.remote_endpoint(ec);
  if (ec) return "?";
  char text[INET6_ADDRSTRLEN] = {};
  const auto* sa = static_cast<const sockaddr*>(ep.data());
  if (sa->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    if (inet_ntop(AF_INET, &in->sin_addr, text, sizeof text)) return text;
  } else if (sa->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    if (inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof text)) return text;
  } else if (sa->sa_family == AF_UNIX) {
    return "unix";
  }
  return "?";
}

auto log_exceptions(const char* what) {
  return [what](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      spdlog::error("http: {}: {}", what, ex.what());
    } catch (...) {
      spdlog::error("http: {}: unknown exception", what);
    }
  };
}

net::awaitable<HttpServer::Response> healthz_handler(const HttpServer::Request&) {
  co_return plain(200, "ok\n");
}

net::awaitable<HttpServer::Response> metrics_handler(Metrics* metrics, const HttpServer::Request&) {
  HttpServer::Response r;
  r.content_type = "text/plain; version=0.0.4; charset=utf-8";
  r.body = metrics->render();
  co_return r;
}

}  // namespace

struct HttpServer::Impl : std::enable_shared_from_this<Impl> {
  Impl(net::any_io_executor executor, Metrics& m) : ex(std::move(executor)), metrics(m) {}

  net::any_io_executor ex;
  Metrics& metrics;
  std::optional<Acceptor> acceptor;
  std::string unix_path;  // the socket file we created, removed on stop
  std::map<std::string, std::map<std::string, Handler>> routes;  // path -> method -> handler
  std::set<std::string> read_only_routes;                          // "METHOD path"
  std::string admin_token;
  Limits limits;
  std::atomic<bool> stopped{false};
  uint64_t next_connection = 0;
  std::map<uint64_t, Stream*> connections;  // open sessions, so stop() can close them

  // Registers a session for its lifetime and keeps the open-connections gauge.
  struct ConnectionGuard {
    ConnectionGuard(Impl& i, Stream& s) : impl(i), id(i.next_connection++) {
      impl.connections.emplace(id, &s);
      impl.metrics.add("spamward_open_connections", kServerLabel, 1);
    }
    ~ConnectionGuard() {
      impl.connections.erase(id);
      impl.metrics.add("spamward_open_connections", kServerLabel, -1);
    }
    ConnectionGuard(const ConnectionGuard&) = delete;
    ConnectionGuard& operator=(const ConnectionGuard&) = delete;
    Impl& impl;
    uint64_t id;
  };

  void protocol_error(std::string_view reason) {
    metrics.inc("spamward_protocol_errors_total",
                {{"server", "http"}, {"reason", std::string(reason)}});
  }

  void do_stop() {
    boost::system::error_code ec;
    if (acceptor) acceptor->close(ec);
    for (auto& [id, stream] : connections) stream->close();
    if (!unix_path.empty()) {
      ::unlink(unix_path.c_str());
      unix_path.clear();
    }
  }

  // Over max_connections: a best-effort 503 without blocking the loop (a fresh socket's
  // send buffer is empty, so a short answer fits), then close.
  void refuse_busy(Protocol::socket& socket) {
    static constexpr std::string_view kBusy =
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Length: 21\r\nConnection: close\r\n\r\ntoo many connections\n";
    boost::system::error_code ec;
    socket.non_blocking(true, ec);
    socket.write_some(net::buffer(kBusy.data(), kBusy.size()), ec);
    socket.shutdown(net::socket_base::shutdown_both, ec);
    socket.close(ec);
    metrics.inc("spamward_http_requests_total", {{"code", "503"}});
    protocol_error("max_connections");
  }

  Response authorize(const BeastRequest& req) const {
    if (admin_token.empty()) {
      return plain(403, "forbidden: no admin token is configured ([http] admin_token_file)\n");
    }
    auto header = req[http::field::authorization];
    std::string_view value(header.data(), header.size());
    constexpr std::string_view kBearer = "Bearer ";
    bool ok = value.size() > kBearer.size() &&
              beast::iequals(value.substr(0, kBearer.size()), kBearer) &&
              constant_time_equal(value.substr(kBearer.size()), admin_token);
    return ok ? Response{} : error_response(401);
  }

  static Request to_request(const BeastRequest& req) {
    Request r;
    r.method = std::string(req.method_string());
    r.target = std::string(req.target());
    r.body = req.body();
    for (const auto& field : req) {
      std::string name =
          to_lower(std::string_view(field.name_string().data(), field.name_string().size()));
      std::string value(field.value());
      auto [it, inserted] = r.headers.emplace(name, value);
      if (!inserted) it->second += ", " + value;
    }
    return r;
  }

  // Routes one parsed request. Fills `allow` for a 405.
  static net::awaitable<Response> handle(std::shared_ptr<Impl> self, const BeastRequest& req,
                                         std::string& allow) {
    std::string_view target(req.target().data(), req.target().size());
    std::string path(target.substr(0, target.find('?')));
    auto route = self->routes.find(path);
    if (route == self->routes.end()) co_return error_response(404);

    std::string method(req.method_string());
    const auto& methods = route->second;
    auto handler_it = methods.find(method);
    if (handler_it == methods.end() && method == "HEAD") handler_it = methods.find("GET");
    if (handler_it == methods.end()) {
      for (const auto& [m, h] : methods) {
        if (!allow.empty()) allow += ", ";
        allow += m;
        if (m == "GET" && !methods.count("HEAD")) allow += ", HEAD";
      }
      co_return error_response(405);
    }
    if (method != "GET" && method != "HEAD" && !self->read_only_routes.count(method + " " + path)) {
      Response denied = self->authorize(req);
      if (denied.status != 200) co_return denied;
    }

    // Copies: the handler and request live in this frame while the handler runs, even if
    // route() replaced the handler meanwhile.
    Handler handler = handler_it->second;
    Request request = to_request(req);
    Response response;
    try {
      auto op = handler(request);
      response = co_await std::move(op);
    } catch (const std::exception& e) {
      spdlog::error("http: {} {}: handler failed: {}", method, path, e.what());
      response = error_response(500);
    }
    if (response.status < 100 || response.status > 599) {
      spdlog::error("http: {} {}: handler returned status {}", method, path, response.status);
      response = error_response(500);
    }
    co_return response;
  }

  static BeastResponse build(const Response& r, unsigned version, bool keep_alive, bool head,
                             const std::string& allow) {
    BeastResponse res;
    res.result(static_cast<unsigned>(r.status));
    res.version(version);
    res.set(http::field::content_type, r.content_type);
    res.set(http::field::cache_control, "no-store");
    res.set("X-Content-Type-Options", "nosniff");
    if (r.status == 405 && !allow.empty()) res.set(http::field::allow, allow);
    if (r.status == 401) res.set(http::field::www_authenticate, "Bearer realm=\"spamward\"");
    res.keep_alive(keep_alive);
    if (head) {
      // HEAD: the headers GET would send, no body.
      res.content_length(r.body.size());
    } else {
      res.body() = r.body;
      res.prepare_payload();
    }
    return res;
  }

  // Ends a connection politely: stop sending, then swallow what the client still sends for
  // a short while, so the kernel does not answer unread data with a reset.
  static net::awaitable<void> linger_close(Stream& stream) {
    boost::system::error_code ec;
    stream.socket().shutdown(net::socket_base::shutdown_send, ec);
    stream.expires_after(kLingerTime);
    char scratch[4096];
    size_t total = 0;
    while (!ec && total < kLingerBytes) {
      auto token = net::redirect_error(net::use_awaitable, ec);
      size_t n = co_await stream.async_read_some(net::buffer(scratch), token);
      total += n;
    }
    stream.close();
  }

  static net::awaitable<void> write(std::shared_ptr<Impl> self, Stream& stream, BeastResponse& res,
                                    boost::system::error_code& ec) {
    self->metrics.inc("spamward_http_requests_total", {{"code", std::to_string(res.result_int())}});
    stream.expires_after(self->limits.read_timeout);
    auto token = net::redirect_error(net::use_awaitable, ec);
    co_await http::async_write(stream, res, token);
  }

  // A read failed: decide whether it was a normal end, and answer over-limit or malformed
  // input before closing. Returns after the connection is closed.
  static net::awaitable<void> read_failed(std::shared_ptr<Impl> self, Stream& stream,
                                          const std::string& peer, boost::system::error_code ec,
                                          bool got_some) {
    if (ec == http::error::end_of_stream || ec == net::error::operation_aborted ||
        (ec == net::error::eof && !got_some)) {
      stream.close();
      co_return;
    }
    if (ec == beast::error::timeout) {
      if (got_some) {
        spdlog::info("http: {}: request not received within {} ms, closing", peer,
                     self->limits.read_timeout.count());
        self->protocol_error("request_timeout");
      }
      stream.close();
      co_return;
    }
    int status = 0;
    std::string_view reason;
    if (ec == http::error::header_limit || ec == http::error::buffer_overflow) {
      status = 431, reason = "header_too_large";
    } else if (ec == http::error::body_limit) {
      status = 413, reason = "body_too_large";
    } else if (ec.category() == http::make_error_code(http::error::bad_method).category()) {
      // Any other parse error, including a connection closed mid-request (partial_message).
      status = 400, reason = "malformed";
    }
    if (status == 0) {  // a socket error (reset, ...): nothing to answer
      stream.close();
      co_return;
    }
    // Never echo the input: it may hold terminal escapes or forged log text.
    spdlog::warn("http: {}: {} ({}), closing the connection", peer, reason, ec.message());
    self->protocol_error(reason);
    BeastResponse res = build(error_response(status), 11, false, false, {});
    boost::system::error_code wec;
    co_await write(self, stream, res, wec);
    if (!wec) co_await linger_close(stream);
    stream.close();
  }

  static net::awaitable<void> session(std::shared_ptr<Impl> self, Protocol::socket socket) {
    Stream stream(std::move(socket));
    const std::string peer = peer_text(stream.socket());
    ConnectionGuard guard(*self, stream);
    // Never larger than one request may be; the parser enforces the finer limits.
    beast::flat_buffer buffer(self->limits.max_header_bytes + self->limits.max_body_bytes + 4096);
    while (!self->stopped) {
      http::request_parser<http::string_body> parser;
      parser.header_limit(static_cast<std::uint32_t>(self->limits.max_header_bytes));
      parser.body_limit(static_cast<std::uint64_t>(self->limits.max_body_bytes));
      stream.expires_after(self->limits.read_timeout);
      boost::system::error_code ec;
      auto token = net::redirect_error(net::use_awaitable, ec);
      co_await http::async_read_header(stream, buffer, parser, token);
      if (!ec && beast::iequals(parser.get()[http::field::expect], "100-continue")) {
        http::response<http::empty_body> cont{http::status::continue_, parser.get().version()};
        auto cont_token = net::redirect_error(net::use_awaitable, ec);
        co_await http::async_write(stream, cont, cont_token);
      }
      if (!ec) {
        auto body_token = net::redirect_error(net::use_awaitable, ec);
        co_await http::async_read(stream, buffer, parser, body_token);
      }
      if (ec) {
        bool got_some = parser.got_some();
        co_await read_failed(self, stream, peer, ec, got_some);
        co_return;
      }

      BeastRequest req = parser.release();
      std::string allow;
      auto handled = handle(self, req, allow);
      Response response = co_await std::move(handled);
      bool keep_alive = req.keep_alive() && !self->stopped;
      bool head = req.method() == http::verb::head;
      BeastResponse res = build(response, req.version(), keep_alive, head, allow);
      co_await write(self, stream, res, ec);
      if (ec) break;
      if (!keep_alive) {
        co_await linger_close(stream);
        co_return;
      }
    }
    stream.close();
  }

  static net::awaitable<void> accept_loop(std::shared_ptr<Impl> self) {
    while (!self->stopped) {
      boost::system::error_code ec;
      Protocol::socket socket(self->ex);
      auto token = net::redirect_error(net::use_awaitable, ec);
      co_await self->acceptor->async_accept(socket, token);
      if (self->stopped || ec == net::error::operation_aborted) break;
      if (ec) {
        // E.g. EMFILE: keep serving the connections we have, retry shortly.
        spdlog::warn("http: accept failed: {}", ec.message());
        net::steady_timer pause(self->ex, std::chrono::milliseconds(100));
        auto wait_token = net::redirect_error(net::use_awaitable, ec);
        co_await pause.async_wait(wait_token);
        continue;
      }
      if (self->connections.size() >= self->limits.max_connections) {
        spdlog::warn("http: {}: refused, {} connections open", peer_text(socket),
                     self->connections.size());
        self->refuse_busy(socket);
        continue;
      }
      net::co_spawn(self->ex, session(self, std::move(socket)), log_exceptions("session"));
    }
  }
};

HttpServer::HttpServer(net::any_io_executor ex, Metrics& metrics)
    : impl_(std::make_shared<Impl>(std::move(ex), metrics)) {
  metrics.describe("spamward_open_connections", Metrics::Type::gauge,
                   "Open client connections, by server");
  metrics.describe("spamward_http_requests_total", Metrics::Type::counter,
                   "HTTP responses sent, by status code");
  metrics.describe("spamward_protocol_errors_total", Metrics::Type::counter,
                   "Malformed or over-limit protocol input, by server and reason");
  metrics.add("spamward_open_connections", kServerLabel, 0);  // show 0 before any connection

  Handler healthz = [](const Request& r) { return healthz_handler(r); };
  Metrics* m = &metrics;
  Handler metrics_route = [m](const Request& r) { return metrics_handler(m, r); };
  impl_->routes["/healthz"]["GET"] = std::move(healthz);
  impl_->routes["/metrics"]["GET"] = std::move(metrics_route);
}

HttpServer::~HttpServer() {
  if (!impl_->stopped) stop();
}

void HttpServer::listen(const ListenSpec& spec) {
  StreamListener listener(impl_->ex);
  open_stream_listener(listener, spec);  // throws "cannot listen on SPEC: REASON"
  impl_->acceptor.emplace(std::move(listener.acceptor));
  if (spec.is_unix) impl_->unix_path = spec.path;
}

uint16_t HttpServer::port() const {
  if (!impl_->acceptor) return 0;
  boost::system::error_code ec;
  auto ep = impl_->acceptor->local_endpoint(ec);
  if (ec) return 0;
  const auto* sa = static_cast<const sockaddr*>(ep.data());
  if (sa->sa_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(sa)->sin_port);
  if (sa->sa_family == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6*>(sa)->sin6_port);
  return 0;
}

void HttpServer::start() {
  if (!impl_->acceptor) throw std::logic_error("HttpServer::start() before listen()");
  net::co_spawn(impl_->ex, Impl::accept_loop(impl_), log_exceptions("accept loop"));
}

void HttpServer::stop() {
  impl_->stopped = true;
  auto self = impl_;
  net::dispatch(impl_->ex, [self] { self->do_stop(); });
}

void HttpServer::route(std::string method, std::string path, Handler handler, bool read_only) {
  std::string key = method + " " + path;
  if (read_only) {
    impl_->read_only_routes.insert(key);
  } else {
    impl_->read_only_routes.erase(key);
  }
  impl_->routes[std::move(path)][std::move(method)] = std::move(handler);
}

void HttpServer::set_admin_token(std::string token) {
  impl_->admin_token = std::move(token);
}

void HttpServer::set_limits(const Limits& limits) {
  impl_->limits = limits;
}

}  // namespace spamward
