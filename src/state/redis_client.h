// A small synchronous Redis client for the store: Boost.Asio TCP, replies parsed by hiredis's
// reader (state/redis_reply.h).
//
// Contract:
// - RedisUrl::parse accepts redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]; HOST is a name, an
//   IPv4 address or [IPv6]; USER and PASSWORD may be percent-encoded. Anything else throws
//   StoreError naming what is wrong (never echoing the password).
// - Every call has a deadline: connecting (resolve, connect, AUTH, SELECT) within
//   connect_timeout, and each pipeline (all its commands sent, all replies read) within
//   io_timeout. A stalled or vanished server makes the call throw StoreError; it never hangs.
// - execute() pipelines: N commands go out in one write, N replies come back in order. Error
//   replies (-ERR ...) are returned as replies, for the caller to judge; failures of the
//   connection itself (I/O, timeout, malformed or oversized replies) throw StoreError and
//   close the connection, whose stream is then out of step.
// - RedisClient is thread-safe: it lends each call a connection from a small pool (opening
//   one when none is idle, up to max_connections; further callers wait). After a connection
//   failure, calls fail at once for retry_after (so a dead Redis costs the event loop nothing
//   but an exception), then the next call reconnects.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "core/duration.h"
#include "state/redis_reply.h"

namespace spamward {

struct RedisUrl {
  std::string host;  // without brackets for IPv6
  uint16_t port = 6379;
  int64_t db = 0;
  std::string user;  // empty: the default user
  std::string password;

  // Throws StoreError.
  static RedisUrl parse(std::string_view url);
  // redis://HOST:PORT/DB, for messages: never the password.
  std::string display() const;
};

struct RedisClientOptions {
  Duration connect_timeout = std::chrono::seconds(1);
  Duration io_timeout = std::chrono::seconds(1);
  Duration retry_after = std::chrono::seconds(1);
  size_t max_connections = 8;
  RespLimits limits;
  // Log the first failure and the recovery (the daemon); a one-shot command reports the
  // error itself in one line.
  bool log_transitions = true;
};

using RedisCommand = std::vector<std::string>;

// One connection; not thread-safe (RedisClient lends it to one caller at a time).
class RedisConnection {
 public:
  RedisConnection(RedisUrl url, RedisClientOptions options);
  ~RedisConnection();
  RedisConnection(const RedisConnection&) = delete;
  RedisConnection& operator=(const RedisConnection&) = delete;

  bool is_open() const;
  // Resolves, connects, sends AUTH and SELECT. Throws StoreError.
  void connect();
  // Sends every command, returns one reply per command. Throws StoreError (then closed).
  std::vector<RedisReply> execute(const std::vector<RedisCommand>& commands);
  void close();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

class RedisClient {
 public:
  RedisClient(RedisUrl url, RedisClientOptions options);
  ~RedisClient();

  const RedisUrl& url() const { return url_; }
  // Runs a pipeline on a pooled connection. Throws StoreError.
  std::vector<RedisReply> execute(const std::vector<RedisCommand>& commands);
  RedisReply command(RedisCommand command);

 private:
  std::unique_ptr<RedisConnection> acquire();
  void release(std::unique_ptr<RedisConnection> connection);
  [[noreturn]] void failed(const std::string& what);

  RedisUrl url_;
  RedisClientOptions options_;
  std::mutex mu_;
  std::condition_variable idle_cv_;
  std::vector<std::unique_ptr<RedisConnection>> idle_;
  size_t lent_ = 0;
  std::chrono::steady_clock::time_point retry_at_{};  // calls fail fast before this
  std::string last_failure_;
};

}  // namespace spamward
