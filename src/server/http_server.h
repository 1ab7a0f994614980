// HttpServer: the HTTP/1.1 endpoint (DESIGN §3.5 HTTP): GET /healthz, GET /metrics, and the
// routes later components register (JSON API under /api/v1/, dashboard). Boost.Beast stays
// inside http_server.cpp; this header is cheap to include.
//
// Contract:
// - Built-in routes: GET /healthz -> 200 "ok"; GET /metrics -> 200, the Prometheus text of
//   `metrics` (Content-Type "text/plain; version=0.0.4; charset=utf-8"). HEAD is answered
//   wherever GET is, without a body.
// - Routing is by exact path (the query string is ignored for matching) and method: unknown
//   path -> 404; known path, other method -> 405 with an Allow header.
// - Any method but GET and HEAD changes state, so before its handler runs: no admin token
//   configured -> 403; no or wrong "Authorization: Bearer <token>" -> 401. (Except routes
//   registered as read_only, which change nothing whatever their method.) The token
//   comparison takes time independent of where the tokens differ.
// - Limits (set_limits): request header size, body size, time to read one request (also the
//   keep-alive idle time), concurrent connections. Malformed or over-limit input gets an
//   answer (400, 413, 431; 503 past max_connections), a log line and a
//   spamward_protocol_errors_total{server="http",reason} count, and only that connection is
//   closed. A request not received in time closes the connection without an answer (logged
//   and counted when part of it had arrived; an idle keep-alive connection just ends).
//   A handler that throws gives 500.
// - Metrics: spamward_open_connections{server="http"} (gauge),
//   spamward_http_requests_total{code} (counter).
//
// Threading: every member must be called from the executor's thread (or a strand the executor
// is). stop() may also be called from another thread when the executor runs on one thread:
// it dispatches to the executor. Call listen(), route(), set_admin_token() and set_limits()
// before start().
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "core/listen_spec.h"

namespace spamward {

class Metrics;

class HttpServer {
 public:
  struct Limits {
    size_t max_header_bytes = 8 * 1024;   // request line + header fields
    size_t max_body_bytes = 1024 * 1024;  // request body
    // Time allowed to receive one whole request, and to wait for the next on a keep-alive
    // connection; also the time allowed to send one response.
    std::chrono::milliseconds read_timeout = std::chrono::seconds(30);
    size_t max_connections = 2000;  // more are answered 503 and closed at once
  };

  HttpServer(boost::asio::any_io_executor ex, Metrics& metrics);
  ~HttpServer();  // stops the server; connections in flight are closed
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and listens. TCP or unix socket (a stale socket file at the path is replaced; any
  // other file there is an error). Throws std::runtime_error("cannot listen on SPEC: reason").
  void listen(const ListenSpec& spec);
  uint16_t port() const;  // the bound TCP port (useful after port 0); 0 for a unix socket
  void start();           // starts accepting (on the executor); listen() first
  void stop();            // stops accepting and closes every connection; idempotent

  // Extension point for the later JSON API and dashboard: handlers by method + exact path.
  // Header names in Request::headers are lower-case; repeated fields are joined with ", ".
  struct Request {
    std::string method, target, body;
    std::map<std::string, std::string> headers;
  };
  struct Response {
    int status = 200;
    std::string content_type = "text/plain; charset=utf-8";
    std::string body;
  };
  using Handler = std::function<boost::asio::awaitable<Response>(const Request&)>;
  // Registers (or replaces) the handler for `method` (upper case, e.g. "POST") on `path`.
  // `read_only`: the handler changes no state although its method is not GET (POST
  // /api/v1/check sends a message to score), so it needs no admin token.
  void route(std::string method, std::string path, Handler handler, bool read_only = false);
  // Empty: state-changing requests (anything but GET/HEAD) are refused with 403.
  void set_admin_token(std::string token);
  void set_limits(const Limits& limits);

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;  // shared with the coroutines, which may outlive *this briefly
};

}  // namespace spamward
