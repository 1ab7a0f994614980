// ListenSpec: a [listen] value, "HOST:PORT", "[V6]:PORT" or "unix:/path", parsed into an
// endpoint every server binds the same way. HOST must be a literal address (no DNS at
// start-up). Port 0 asks the kernel for a free port (tests).
#pragma once

#include <boost/asio/generic/stream_protocol.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "core/ip_address.h"

namespace spamward {

struct ListenSpec {
  bool is_unix = false;
  std::string path;   // unix
  IpAddress address;  // tcp
  uint16_t port = 0;  // tcp

  // nullopt with `error` set when the text is not a valid spec.
  static std::optional<ListenSpec> parse(std::string_view text, std::string* error = nullptr);
  boost::asio::generic::stream_protocol::endpoint endpoint() const;
  std::string to_string() const;
};

}  // namespace spamward
