#include "dns/dnsbl.h"

#include <algorithm>

namespace spamward {
namespace {

std::string_view bare_zone(std::string_view zone) {
  if (!zone.empty() && zone.back() == '.') zone.remove_suffix(1);
  return zone;
}

}  // namespace

std::string dnsbl_query_name_v6(const std::array<uint8_t, 16>& bytes, std::string_view zone) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(64 + zone.size());
  for (int i = 15; i >= 0; --i) {
    out += kHex[bytes[static_cast<size_t>(i)] & 0x0f];
    out += '.';
    out += kHex[bytes[static_cast<size_t>(i)] >> 4];
    out += '.';
  }
  out += bare_zone(zone);
  return out;
}

std::string dnsbl_query_name(const IpAddress& address, std::string_view zone) {
  if (address.is_v6()) return dnsbl_query_name_v6(address.bytes(), zone);
  const auto& b = address.bytes();
  std::string out;
  for (int i = 3; i >= 0; --i) {
    out += std::to_string(b[static_cast<size_t>(i)]);
    out += '.';
  }
  out += bare_zone(zone);
  return out;
}

DnsblAnswer classify_dnsbl_answer(const ListConfig& list, const std::vector<std::string>& records) {
  static const Prefix kLoopback = *Prefix::parse("127.0.0.0/8");
  DnsblAnswer out;
  for (const std::string& record : records) {
    auto addr = IpAddress::parse(record);
    if (!addr || !addr->is_v4() || !kLoopback.contains(*addr)) {
      out.not_127.push_back(record);
      continue;
    }
    bool blocked = std::any_of(list.blocked_codes.begin(), list.blocked_codes.end(),
                               [&](const Prefix& p) { return p.contains(*addr); });
    if (blocked) {
      out.blocked.push_back(addr->to_string());
      continue;
    }
    std::string code = addr->to_string();
    auto it = list.codes.find(code);
    double score = it != list.codes.end() ? it->second : list.weight;
    out.score = out.listed ? std::max(out.score, score) : score;
    out.listed = true;
    out.codes.push_back(std::move(code));
  }
  return out;
}

}  // namespace spamward
