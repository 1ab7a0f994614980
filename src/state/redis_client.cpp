#include "state/redis_client.h"

#include <spdlog/spdlog.h>

#include <array>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <charconv>
#include <utility>

#include "state/store.h"

namespace spamward {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using SteadyClock = std::chrono::steady_clock;

namespace {

[[noreturn]] void bad_url(std::string_view why) {
  throw StoreError("bad redis url: " + std::string(why) +
                   " (expected redis://[[USER]:PASSWORD@]HOST[:PORT][/DB])");
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string percent_decode(std::string_view s, std::string_view what) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out.push_back(s[i]);
      continue;
    }
    int hi = i + 2 < s.size() ? hex_digit(s[i + 1]) : -1;
    int lo = hi >= 0 ? hex_digit(s[i + 2]) : -1;
    if (lo < 0) bad_url("a bad %-escape in the " + std::string(what));
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return out;
}

template <class Int>
bool parse_number(std::string_view s, Int& out) {
  if (s.empty() || s.size() > 10 || s.find_first_not_of("0123456789") != std::string_view::npos) {
    return false;
  }
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && end == s.data() + s.size();
}

int64_t ms(Duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

}  // namespace

RedisUrl RedisUrl::parse(std::string_view url) {
  constexpr std::string_view kScheme = "redis://";
  if (!url.starts_with(kScheme)) bad_url("it must start with redis://");
  std::string_view rest = url.substr(kScheme.size());
  if (rest.find_first_of("?#") != std::string_view::npos) bad_url("no ?query or #fragment");
  RedisUrl out;
  size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  if (slash != std::string_view::npos) {
    std::string_view db = rest.substr(slash + 1);
    if (!db.empty() && (!parse_number(db, out.db) || out.db > 0x7fffffff)) {
      bad_url("the database must be a number");
    }
  }
  // The password may hold '@' unescaped; the host never does.
  size_t at = authority.rfind('@');
  if (at != std::string_view::npos) {
    std::string_view userinfo = authority.substr(0, at);
    authority = authority.substr(at + 1);
    size_t colon = userinfo.find(':');
    if (colon == std::string_view::npos) bad_url("the part before '@' must be [USER]:PASSWORD");
    out.user = percent_decode(userinfo.substr(0, colon), "user");
    out.password = percent_decode(userinfo.substr(colon + 1), "password");
    if (out.password.empty()) bad_url("the password after ':' is empty");
  }
  std::string_view port;
  if (authority.starts_with('[')) {
    size_t close = authority.find(']');
    if (close == std::string_view::npos) bad_url("'[' without ']' around an IPv6 address");
    out.host = std::string(authority.substr(1, close - 1));
    boost::system::error_code ec;
    asio::ip::make_address_v6(out.host, ec);
    if (ec) bad_url("'" + out.host + "' is not an IPv6 address");
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') bad_url("only :PORT may follow ']'");
      port = after.substr(1);
      if (port.empty()) bad_url("an empty port");
    }
  } else {
    size_t colon = authority.find(':');
    out.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) {
      port = authority.substr(colon + 1);
      if (port.find(':') != std::string_view::npos) {
        bad_url("an IPv6 address must be in brackets, e.g. redis://[::1]:6379");
      }
      if (port.empty()) bad_url("an empty port");
    }
  }
  if (out.host.empty()) bad_url("no host");
  if (!port.empty()) {
    uint32_t p = 0;
    if (!parse_number(port, p) || p == 0 || p > 65535) bad_url("the port must be 1..65535");
    out.port = static_cast<uint16_t>(p);
  }
  return out;
}

std::string RedisUrl::display() const {
  bool v6 = host.find(':') != std::string::npos;
  return "redis://" + (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port) + "/" +
         std::to_string(db);
}

// ---- RedisConnection ----

struct RedisConnection::Impl {
  RedisUrl url;
  RedisClientOptions options;
  asio::io_context io{1};
  tcp::socket socket{io};
  std::unique_ptr<RespReader> reader;
  std::array<char, 64 * 1024> buf{};

  // Runs one handler. The io_context stops whenever it runs out of work (e.g. after the last
  // read completed), and a new operation does not restart it: restart before each run.
  size_t run_one(SteadyClock::time_point deadline) {
    if (io.stopped()) io.restart();
    return io.run_one_until(deadline);
  }

  [[noreturn]] void fail(const std::string& what) {
    close();
    throw StoreError("redis at " + url.display() + ": " + what);
  }

  // Closes the socket and runs the aborted handlers to completion: they refer to the frames
  // of the calls below, which must not return before them. Closing makes them ready at once,
  // so poll() runs them all; it never waits for a name lookup that timed out (its handler
  // owns its state and may finish whenever).
  void close() {
    boost::system::error_code ignored;
    socket.close(ignored);
    io.restart();
    io.poll();
    reader.reset();
  }

  std::vector<tcp::endpoint> resolve(SteadyClock::time_point deadline) {
    boost::system::error_code ec;
    auto address = asio::ip::make_address(url.host, ec);
    if (!ec) return {tcp::endpoint(address, url.port)};
    // A name: getaddrinfo runs on Asio's resolver thread. Its handler owns what it touches,
    // so a timed-out lookup can finish later without anyone waiting for it.
    struct Lookup {
      explicit Lookup(asio::io_context& io) : resolver(io) {}
      tcp::resolver resolver;
      bool done = false;
      boost::system::error_code ec;
      std::vector<tcp::endpoint> endpoints;
    };
    auto lookup = std::make_shared<Lookup>(io);
    lookup->resolver.async_resolve(
        url.host, std::to_string(url.port),
        [lookup](const boost::system::error_code& e, const tcp::resolver::results_type& r) {
          lookup->ec = e;
          for (const auto& entry : r) lookup->endpoints.push_back(entry.endpoint());
          lookup->done = true;
        });
    while (!lookup->done) {
      if (run_one(deadline) == 0 && !lookup->done) {
        lookup->resolver.cancel();
        throw StoreError("redis at " + url.display() + ": resolving " + url.host +
                         " timed out after " + std::to_string(ms(options.connect_timeout)) + " ms");
      }
    }
    if (lookup->ec || lookup->endpoints.empty()) {
      throw StoreError("redis at " + url.display() + ": cannot resolve " + url.host + ": " +
                       (lookup->ec ? lookup->ec.message() : "no address"));
    }
    return lookup->endpoints;
  }

  void connect() {
    auto deadline = SteadyClock::now() + options.connect_timeout;
    auto endpoints = resolve(deadline);
    bool done = false;
    boost::system::error_code ec;
    asio::async_connect(socket, endpoints,
                        [&](const boost::system::error_code& e, const tcp::endpoint&) {
                          ec = e;
                          done = true;
                        });
    while (!done) {
      if (run_one(deadline) == 0 && !done) {
        fail("connecting timed out after " + std::to_string(ms(options.connect_timeout)) + " ms");
      }
    }
    if (ec) fail("cannot connect: " + ec.message());
    socket.set_option(tcp::no_delay(true), ec);
    socket.set_option(asio::socket_base::keep_alive(true), ec);
    reader = std::make_unique<RespReader>(options.limits);
    std::vector<RedisCommand> hello;
    if (!url.password.empty()) {
      hello.push_back(url.user.empty() ? RedisCommand{"AUTH", url.password}
                                       : RedisCommand{"AUTH", url.user, url.password});
    }
    if (url.db != 0) hello.push_back({"SELECT", std::to_string(url.db)});
    if (hello.empty()) return;
    auto replies = exchange(hello, deadline);
    for (size_t i = 0; i < replies.size(); ++i) {
      // The command itself is not echoed: AUTH's arguments are secret.
      if (replies[i].is_error()) fail(hello[i][0] + " refused: " + replies[i].str);
    }
  }

  // Writes every command and reads as many replies, both at once, until the deadline.
  std::vector<RedisReply> exchange(const std::vector<RedisCommand>& commands,
                                   SteadyClock::time_point deadline) {
    if (!socket.is_open() || !reader) fail("not connected");
    std::string out;
    for (const auto& c : commands) append_command(out, c);
    std::vector<RedisReply> replies;
    replies.reserve(commands.size());
    bool write_done = false, read_pending = false, read_done = false;
    boost::system::error_code write_ec, read_ec;
    size_t read_n = 0;
    asio::async_write(socket, asio::buffer(out), [&](const boost::system::error_code& e, size_t) {
      write_ec = e;
      write_done = true;
    });
    try {
      while (!write_done || replies.size() < commands.size()) {
        if (!read_pending && replies.size() < commands.size()) {
          read_pending = true;
          socket.async_read_some(asio::buffer(buf),
                                 [&](const boost::system::error_code& e, size_t n) {
                                   read_ec = e;
                                   read_n = n;
                                   read_pending = false;
                                   read_done = true;
                                 });
        }
        if (run_one(deadline) == 0) {  // the deadline passed
          fail("no reply within " + std::to_string(ms(options.io_timeout)) + " ms");
        }
        if (write_done && write_ec) fail("cannot send: " + write_ec.message());
        if (!read_done) continue;
        read_done = false;
        if (read_ec == asio::error::eof) fail("the server closed the connection");
        if (read_ec) fail("cannot read: " + read_ec.message());
        reader->feed(std::string_view(buf.data(), read_n));
        while (auto reply = reader->next()) {
          if (replies.size() == commands.size()) fail("a reply nobody asked for");
          replies.push_back(std::move(*reply));
        }
      }
    } catch (const StoreError& e) {
      // From fail() (already closed) or from the reader (limits, protocol): the stream is out
      // of step either way.
      if (socket.is_open() || reader) {
        close();
        throw StoreError("redis at " + url.display() + ": " + e.what());
      }
      throw;
    }
    return replies;
  }
};

RedisConnection::RedisConnection(RedisUrl url, RedisClientOptions options)
    : impl_(std::make_unique<Impl>()) {
  impl_->url = std::move(url);
  impl_->options = options;
}

RedisConnection::~RedisConnection() {
  impl_->close();
}

bool RedisConnection::is_open() const {
  return impl_->socket.is_open() && impl_->reader;
}

void RedisConnection::connect() {
  impl_->close();
  impl_->connect();
}

std::vector<RedisReply> RedisConnection::execute(const std::vector<RedisCommand>& commands) {
  return impl_->exchange(commands, SteadyClock::now() + impl_->options.io_timeout);
}

void RedisConnection::close() {
  impl_->close();
}

// ---- RedisClient ----

RedisClient::RedisClient(RedisUrl url, RedisClientOptions options)
    : url_(std::move(url)), options_(options) {
  options_.max_connections = std::max<size_t>(1, options_.max_connections);
}

RedisClient::~RedisClient() = default;

std::unique_ptr<RedisConnection> RedisClient::acquire() {
  std::unique_lock lock(mu_);
  auto fast_fail = [&] {
    auto now = SteadyClock::now();
    if (now >= retry_at_) return;
    throw StoreError(last_failure_ + " (retrying in " +
                     std::to_string(ms(std::chrono::duration_cast<Duration>(retry_at_ - now))) +
                     " ms)");
  };
  fast_fail();
  idle_cv_.wait(lock, [&] {
    return !idle_.empty() || lent_ < options_.max_connections || SteadyClock::now() < retry_at_;
  });
  fast_fail();
  ++lent_;
  if (!idle_.empty()) {
    auto c = std::move(idle_.back());
    idle_.pop_back();
    return c;
  }
  return std::make_unique<RedisConnection>(url_, options_);
}

void RedisClient::release(std::unique_ptr<RedisConnection> connection) {
  {
    std::lock_guard lock(mu_);
    --lent_;
    if (connection) idle_.push_back(std::move(connection));
  }
  idle_cv_.notify_all();
}

void RedisClient::failed(const std::string& what) {
  std::vector<std::unique_ptr<RedisConnection>> stale;
  bool first;
  {
    std::lock_guard lock(mu_);
    first = last_failure_.empty();
    last_failure_ = what;
    retry_at_ = SteadyClock::now() + options_.retry_after;
    stale.swap(idle_);  // connections to a failing server: reconnect them lazily
  }
  idle_cv_.notify_all();
  if (first && options_.log_transitions) {
    spdlog::warn("{}; store calls fail for {} ms, then reconnect", what, ms(options_.retry_after));
  }
  throw StoreError(what);
}

std::vector<RedisReply> RedisClient::execute(const std::vector<RedisCommand>& commands) {
  auto connection = acquire();
  std::string failure;
  try {
    if (!connection->is_open()) connection->connect();
    auto replies = connection->execute(commands);
    {
      std::lock_guard lock(mu_);
      if (!last_failure_.empty()) {
        if (options_.log_transitions) spdlog::info("redis at {}: working again", url_.display());
        last_failure_.clear();
      }
    }
    release(std::move(connection));
    return replies;
  } catch (const StoreError& e) {
    failure = e.what();
  }
  release(nullptr);
  failed(failure);
}

RedisReply RedisClient::command(RedisCommand command) {
  std::vector<RedisCommand> one;
  one.push_back(std::move(command));
  return std::move(execute(one).front());
}

}  // namespace spamward
