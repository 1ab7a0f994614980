#include "server/trap_server.h"

#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <cstring>

#include <spdlog/spdlog.h>

#include "server/stream_server.h"

namespace spamward {

namespace asio = boost::asio;

namespace {

constexpr auto kCommandTimeout = std::chrono::seconds(10);
constexpr size_t kMaxCommand = 512;
constexpr std::string_view kConnections = "spamward_trap_connections_total";

// The client's address from a connected generic socket; nullopt for unix sockets.
std::optional<IpAddress> peer_address(const StreamConnection::Socket& socket) {
  boost::system::error_code ec;
  auto endpoint = socket.remote_endpoint(ec);
  if (ec) return std::nullopt;
  const sockaddr* sa = endpoint.data();
  if (sa->sa_family == AF_INET) {
    sockaddr_in in{};
    std::memcpy(&in, sa, sizeof in);
    return IpAddress::v4(ntohl(in.sin_addr.s_addr));
  }
  if (sa->sa_family == AF_INET6) {
    sockaddr_in6 in6{};
    std::memcpy(&in6, sa, sizeof in6);
    std::array<uint8_t, 16> bytes{};
    std::memcpy(bytes.data(), &in6.sin6_addr, 16);
    return IpAddress::v6(bytes);
  }
  return std::nullopt;
}

}  // namespace

namespace detail {

struct TrapConnection final : StreamConnection {
  using StreamConnection::StreamConnection;
  bool idle() const override { return false; }
  TimePoint deadline() const override { return accepted + kCommandTimeout; }
  void expire(StreamServer& server) override {
    server.close_with(*this, "timeout", "no command within 10s", /*quiet=*/true);
  }
  TimePoint accepted = std::chrono::steady_clock::now();
  std::array<char, kMaxCommand> buffer{};
};

struct TrapServerState final : StreamServer {
  TrapServerState(asio::any_io_executor e, Reputation* r, TrapOptions o, Metrics& m)
      : StreamServer(std::move(e), "trap", m, o.max_connections, kCommandTimeout),
        reputation(r),
        options(std::move(o)),
        hits(m.counter(kConnections, {})) {}

  Reputation* reputation;
  TrapOptions options;
  Metrics::CounterHandle hits;

 protected:
  std::shared_ptr<StreamConnection> make_connection(
      StreamConnection::Socket socket, std::shared_ptr<const StreamListener> listener) override {
    return std::make_shared<TrapConnection>(std::move(socket), std::move(listener));
  }
  asio::awaitable<void> serve(std::shared_ptr<StreamConnection> c) override;
};

asio::awaitable<void> TrapServerState::serve(std::shared_ptr<StreamConnection> base) {
  auto c = std::static_pointer_cast<TrapConnection>(std::move(base));
  const auto token = asio::as_tuple(asio::use_awaitable);
  auto client = peer_address(c->socket);
  bool trusted = false;
  if (client) {
    for (const auto& p : options.trusted) trusted = trusted || p.contains(*client);
  }
  if (!client || trusted) {
    std::string refusal = "421 4.3.2 " + options.hostname + " not accepting mail here\r\n";
    auto out = asio::buffer(refusal);
    auto written = co_await asio::async_write(c->socket, out, token);
    (void)written;
    c->close();
    co_return;
  }
  hits.inc();
  std::string where = c->listener ? c->listener->name : "?";
  std::string ban_text;
  if (reputation && options.record_offences) {
    try {
      Ban ban = reputation->record_offence(*client, OffenceKind::trap,
                                           "connected to trap address " + where);
      ban_text = "; banned for " + ban_length_text(ban);
    } catch (const std::exception& e) {
      ban_text = std::string("; cannot record the offence: ") + e.what();
    }
  }
  spdlog::info("trap: {} connected to trap address {}{}", client->to_string(), where, ban_text);

  std::string greeting = "220 " + options.hostname + " ESMTP\r\n";
  auto greeting_buffer = asio::buffer(greeting);
  auto [gec, gn] = co_await asio::async_write(c->socket, greeting_buffer, token);
  (void)gn;
  if (gec || c->closed) co_return;
  // The first command line (or whatever arrives first): its content does not matter.
  size_t have = 0;
  while (!c->closed && have < c->buffer.size()) {
    auto buf = asio::buffer(c->buffer.data() + have, c->buffer.size() - have);
    auto [ec, n] = co_await c->socket.async_read_some(buf, token);
    if (ec || c->closed) co_return;
    have += n;
    if (std::memchr(c->buffer.data(), '\n', have)) break;
  }
  std::string closing =
      "421 4.7.0 " + options.hostname + " Service not available, closing transmission channel\r\n";
  auto closing_buffer = asio::buffer(closing);
  auto closed = co_await asio::async_write(c->socket, closing_buffer, token);
  (void)closed;
  c->close();
}

}  // namespace detail

TrapServer::TrapServer(asio::any_io_executor ex, Reputation* reputation, TrapOptions options,
                       Metrics& metrics)
    : state_(std::make_shared<detail::TrapServerState>(std::move(ex), reputation,
                                                       std::move(options), metrics)) {
  metrics.describe(kConnections, Metrics::Type::counter,
                   "Connections to [trap] listen addresses from untrusted clients (each an "
                   "offence).");
}

TrapServer::~TrapServer() {
  state_->shutdown_now();
}

void TrapServer::listen(const ListenSpec& spec) {
  state_->listen(spec);
}

uint16_t TrapServer::port() const {
  return state_->port();
}

void TrapServer::start() {
  state_->start();
}

void TrapServer::stop() {
  state_->stop();
}

size_t TrapServer::open_connections() const {
  return state_->open_connections();
}

}  // namespace spamward
