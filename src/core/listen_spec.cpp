#include "core/listen_spec.h"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <charconv>

namespace spamward {

std::optional<ListenSpec> ListenSpec::parse(std::string_view text, std::string* error) {
  auto fail = [&](const char* why) -> std::optional<ListenSpec> {
    if (error) *error = why;
    return std::nullopt;
  };
  ListenSpec spec;
  if (text.substr(0, 5) == "unix:") {
    spec.is_unix = true;
    spec.path = std::string(text.substr(5));
    if (spec.path.empty()) return fail("unix socket path is empty");
    if (spec.path.size() >= 108) return fail("unix socket path is longer than 107 bytes");
    return spec;
  }
  auto colon = text.rfind(':');
  if (colon == std::string_view::npos) return fail("expected HOST:PORT or unix:/path");
  std::string_view host = text.substr(0, colon);
  std::string_view port = text.substr(colon + 1);
  if (!host.empty() && host.front() == '[') {
    if (host.back() != ']') return fail("unbalanced [ in IPv6 address");
  } else if (host.find(':') != std::string_view::npos) {
    return fail("write an IPv6 address in brackets, e.g. [::1]:10040");
  }
  auto addr = IpAddress::parse(host);
  if (!addr) return fail("HOST is not an IP address");
  unsigned value = 0;
  auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc() || ptr != port.data() + port.size() || value > 65535) {
    return fail("PORT is not a number from 0 to 65535");
  }
  spec.address = *addr;
  spec.port = static_cast<uint16_t>(value);
  return spec;
}

boost::asio::generic::stream_protocol::endpoint ListenSpec::endpoint() const {
  if (is_unix) return boost::asio::local::stream_protocol::endpoint(path);
  auto addr = boost::asio::ip::make_address(address.to_string());
  return boost::asio::ip::tcp::endpoint(addr, port);
}

std::string ListenSpec::to_string() const {
  if (is_unix) return "unix:" + path;
  if (address.is_v6()) return "[" + address.to_string() + "]:" + std::to_string(port);
  return address.to_string() + ":" + std::to_string(port);
}

}  // namespace spamward
