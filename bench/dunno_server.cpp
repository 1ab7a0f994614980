// dunno_server: the smallest useful Postfix policy server, for the benchmark's ceiling.
//
// It reads requests (attribute lines up to a blank line) on persistent connections and answers
// every one with `action=DUNNO`, doing no other work. Whatever a real policy server scores
// against policy_load on the same machine, this is the most it could score: the rest is the
// generator, the kernel's loopback and Asio itself. Single-threaded, like spamward's loop.
//
// Usage: dunno_server --listen HOST:PORT   (SIGINT/SIGTERM stop it)

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <string_view>

#include <boost/asio.hpp>

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

// A request larger than this is not something Postfix sends; drop the connection instead of
// buffering without bound.
constexpr size_t kMaxRequestBytes = 64 * 1024;

asio::awaitable<void> serve(tcp::socket socket) {
  static const std::string kReply = "action=DUNNO\n\n";
  constexpr std::string_view kEnd = "\n\n";
  const auto token = asio::as_tuple(asio::use_awaitable);
  const auto out = asio::buffer(kReply);
  std::string buffer;
  for (;;) {
    auto in = asio::dynamic_buffer(buffer, kMaxRequestBytes);
    auto [read_ec, n] = co_await asio::async_read_until(socket, in, kEnd, token);
    if (read_ec) break;  // EOF, reset or oversized request: the connection ends either way
    buffer.erase(0, n);
    auto [write_ec, written] = co_await asio::async_write(socket, out, token);
    (void)written;
    if (write_ec) break;
  }
  boost::system::error_code ec;
  socket.close(ec);
}

asio::awaitable<void> accept_loop(tcp::acceptor& acceptor) {
  auto executor = co_await asio::this_coro::executor;
  const auto token = asio::as_tuple(asio::use_awaitable);
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(token);
    if (ec) {
      if (ec == asio::error::operation_aborted) co_return;
      // EMFILE and the like: keep serving the connections we have.
      std::cerr << "dunno_server: accept: " << ec.message() << "\n";
      continue;
    }
    boost::system::error_code opt_ec;
    socket.set_option(tcp::no_delay(true), opt_ec);
    auto session = serve(std::move(socket));
    asio::co_spawn(executor, std::move(session), asio::detached);
  }
}

[[noreturn]] void usage(int status) {
  (status == 0 ? std::cout : std::cerr) << "usage: dunno_server --listen HOST:PORT\n";
  std::exit(status);
}

}  // namespace

int main(int argc, char** argv) {
  std::string listen;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "-h" || arg == "--help") usage(0);
    if (arg == "--listen" && i + 1 < argc) {
      listen = argv[++i];
    } else if (arg.starts_with("--listen=")) {
      listen = std::string(arg.substr(9));
    } else {
      usage(2);
    }
  }
  auto colon = listen.rfind(':');
  if (colon == std::string::npos || colon == 0) usage(2);
  std::string host = listen.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  boost::system::error_code ec;
  auto address = asio::ip::make_address(host, ec);
  if (ec) {
    std::cerr << "dunno_server: bad listen address '" << host << "'\n";
    return 2;
  }
  int port = std::atoi(listen.c_str() + colon + 1);
  if (port <= 0 || port > 65535) {
    std::cerr << "dunno_server: bad port in '" << listen << "'\n";
    return 2;
  }

  asio::io_context io(1);
  tcp::acceptor acceptor(io);
  const tcp::endpoint endpoint(address, static_cast<unsigned short>(port));
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    std::cerr << "dunno_server: cannot listen on " << listen << ": " << ec.message() << "\n";
    return 1;
  }

  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code&, int) { io.stop(); });
  auto loop = accept_loop(acceptor);
  asio::co_spawn(io, std::move(loop), asio::detached);
  std::cerr << "dunno_server: listening on " << listen << "\n";
  io.run();
  return 0;
}
