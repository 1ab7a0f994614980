#include "core/ip_address.h"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>

namespace spamward {

IpAddress IpAddress::v4(uint32_t host_order) {
  IpAddress a;
  a.family_ = Family::v4;
  a.bytes_[0] = static_cast<uint8_t>(host_order >> 24);
  a.bytes_[1] = static_cast<uint8_t>(host_order >> 16);
  a.bytes_[2] = static_cast<uint8_t>(host_order >> 8);
  a.bytes_[3] = static_cast<uint8_t>(host_order);
  return a;
}

IpAddress IpAddress::v6(const std::array<uint8_t, 16>& bytes) {
  static constexpr std::array<uint8_t, 12> kMapped{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  IpAddress a;
  if (std::equal(kMapped.begin(), kMapped.end(), bytes.begin())) {
    a.family_ = Family::v4;
    std::copy(bytes.begin() + 12, bytes.end(), a.bytes_.begin());
    return a;
  }
  a.family_ = Family::v6;
  a.bytes_ = bytes;
  return a;
}

std::optional<IpAddress> IpAddress::parse(std::string_view text) {
  if (text.size() >= 2 && text.front() == '[' && text.back() == ']') {
    text = text.substr(1, text.size() - 2);
  }
  // Postfix writes IPv6 in some places as "IPv6:addr".
  if (text.size() > 5 && (text.substr(0, 5) == "IPv6:" || text.substr(0, 5) == "IPV6:")) {
    text = text.substr(5);
  }
  if (text.empty() || text.size() > 45) return std::nullopt;
  char buf[64];
  std::copy(text.begin(), text.end(), buf);
  buf[text.size()] = '\0';
  if (text.find(':') == std::string_view::npos) {
    in_addr a4{};
    if (inet_pton(AF_INET, buf, &a4) != 1) return std::nullopt;
    return v4(ntohl(a4.s_addr));
  }
  std::array<uint8_t, 16> b{};
  if (inet_pton(AF_INET6, buf, b.data()) != 1) return std::nullopt;
  return v6(b);
}

uint32_t IpAddress::v4_host_order() const {
  return (uint32_t{bytes_[0]} << 24) | (uint32_t{bytes_[1]} << 16) | (uint32_t{bytes_[2]} << 8) |
         uint32_t{bytes_[3]};
}

bool IpAddress::is_loopback() const {
  if (is_v4()) return bytes_[0] == 127;
  static constexpr std::array<uint8_t, 16> kLoop{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  return bytes_ == kLoop;
}

std::string IpAddress::to_string() const {
  char buf[INET6_ADDRSTRLEN];
  if (is_v4()) {
    inet_ntop(AF_INET, bytes_.data(), buf, sizeof buf);
  } else {
    inet_ntop(AF_INET6, bytes_.data(), buf, sizeof buf);
  }
  return buf;
}

Prefix::Prefix(const IpAddress& address, int length) {
  length_ = std::clamp(length, 0, address.bits());
  auto bytes = address.bytes();
  int width = address.bits() / 8;
  for (int i = 0; i < 16; ++i) {
    int keep = std::clamp(length_ - i * 8, 0, 8);
    if (i >= width) {
      bytes[i] = 0;
    } else {
      bytes[i] &= static_cast<uint8_t>(keep == 0 ? 0 : (0xff << (8 - keep)) & 0xff);
    }
  }
  address_ = address;  // same family; only host bits change
  address_.bytes_ = bytes;
}

std::optional<Prefix> Prefix::parse(std::string_view text) {
  auto slash = text.find('/');
  std::string_view addr = text.substr(0, slash);
  auto a = IpAddress::parse(addr);
  if (!a) return std::nullopt;
  if (slash == std::string_view::npos) return Prefix(*a, a->bits());
  std::string_view len_text = text.substr(slash + 1);
  int len = -1;
  auto [ptr, ec] = std::from_chars(len_text.data(), len_text.data() + len_text.size(), len);
  if (ec != std::errc() || ptr != len_text.data() + len_text.size() || len_text.empty()) {
    return std::nullopt;
  }
  // A v4-mapped address written with a v6 length (::ffff:10.0.0.0/104) maps to v4/len-96.
  bool mapped = addr.find(':') != std::string_view::npos && a->is_v4();
  if (mapped) {
    if (len < 96 || len > 128) return std::nullopt;
    len -= 96;
  }
  if (len < 0 || len > a->bits()) return std::nullopt;
  return Prefix(*a, len);
}

bool Prefix::contains(const IpAddress& a) const {
  if (a.family() != address_.family()) return false;
  return Prefix(a, length_).address_ == address_;
}

std::string Prefix::to_string() const {
  if (is_host()) return address_.to_string();
  return address_.to_string() + "/" + std::to_string(length_);
}

}  // namespace spamward
