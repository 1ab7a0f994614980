// IpAddress and Prefix: value types for client addresses and networks.
//
// Contract:
// - An IpAddress is IPv4 or IPv6. Parsing folds v4-mapped IPv6 (::ffff:a.b.c.d) to IPv4, so
//   one client has one spelling everywhere (lists, greylist keys, reputation).
// - A Prefix is an address with its host bits cleared and a length (0..32 or 0..128).
//   Parsing accepts "a.b.c.d", "a.b.c.d/n", "v6", "v6/n", and "[v6]" forms; a bare address
//   is a host prefix. Host bits set in the input are cleared (Postfix does the same).
// - to_string() gives the canonical text (RFC 5952 for IPv6) that round-trips through parse.
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace spamward {

class IpAddress {
 public:
  enum class Family : uint8_t { v4, v6 };

  IpAddress() = default;  // 0.0.0.0
  static IpAddress v4(uint32_t host_order);
  static IpAddress v6(const std::array<uint8_t, 16>& bytes);  // folds v4-mapped to v4
  static std::optional<IpAddress> parse(std::string_view text);

  Family family() const { return family_; }
  bool is_v4() const { return family_ == Family::v4; }
  bool is_v6() const { return family_ == Family::v6; }
  int bits() const { return is_v4() ? 32 : 128; }
  // Network-order bytes; only the first 4 are meaningful for IPv4.
  const std::array<uint8_t, 16>& bytes() const { return bytes_; }
  uint32_t v4_host_order() const;
  bool is_loopback() const;

  std::string to_string() const;
  auto operator<=>(const IpAddress&) const = default;

 private:
  friend class Prefix;
  Family family_ = Family::v4;
  std::array<uint8_t, 16> bytes_{};
};

class Prefix {
 public:
  Prefix() = default;
  // Clears host bits; length is clamped to the family's width.
  Prefix(const IpAddress& address, int length);
  static std::optional<Prefix> parse(std::string_view text);

  const IpAddress& address() const { return address_; }
  int length() const { return length_; }
  bool contains(const IpAddress& a) const;
  bool is_host() const { return length_ == address_.bits(); }

  std::string to_string() const;  // "a.b.c.d/n"; a host prefix prints as the bare address
  auto operator<=>(const Prefix&) const = default;

 private:
  IpAddress address_;
  int length_ = 0;
};

}  // namespace spamward
