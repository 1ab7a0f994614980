#include "auth/batv.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <cstdint>

namespace spamward {
namespace {

constexpr std::string_view kPrefix = "prvs=";
constexpr size_t kTagSize = 10;  // KDDDSSSSSS
constexpr int64_t kMsPerDay = 86'400'000;

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
bool is_hex(char c) {
  return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
char lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

bool starts_with_prefix(std::string_view address) {
  if (address.size() < kPrefix.size()) return false;
  for (size_t i = 0; i < kPrefix.size(); ++i) {
    if (lower(address[i]) != kPrefix[i]) return false;
  }
  return true;
}

// local@domain with both parts non-empty; the last '@' splits.
bool is_plain_address(std::string_view address) {
  size_t at = address.rfind('@');
  return at != std::string_view::npos && at > 0 && at + 1 < address.size();
}

// Days since the epoch (floor), as Exim's time(NULL)/86400.
int64_t day_number(TimePoint now) {
  int64_t ms = to_unix_ms(now);
  int64_t days = ms / kMsPerDay;
  if (ms % kMsPerDay < 0) --days;
  return days;
}

int64_t age_days(Duration max_age) {
  int64_t days = max_age.count() / kMsPerDay;
  return std::clamp<int64_t>(days, 1, 999);
}

int day_stamp(int64_t days) {
  int64_t m = days % 1000;
  return static_cast<int>(m < 0 ? m + 1000 : m);
}

// The first 3 bytes of HMAC-SHA1(key, K DDD address), lower-case hex. Empty on failure.
std::string prvs_hash(std::string_view key, char key_number, std::string_view day,
                      std::string_view address) {
  std::string source;
  source.reserve(1 + day.size() + address.size());
  source.push_back(key_number);
  source.append(day);
  source.append(address);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_size = 0;
  if (HMAC(EVP_sha1(), key.data(), static_cast<int>(key.size()),
           reinterpret_cast<const unsigned char*>(source.data()), source.size(), mac,
           &mac_size) == nullptr ||
      mac_size < 3) {
    return {};
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (int i = 0; i < 3; ++i) {
    out.push_back(kHex[mac[i] >> 4]);
    out.push_back(kHex[mac[i] & 0x0f]);
  }
  return out;
}

}  // namespace

std::string_view to_string(BatvStatus s) {
  switch (s) {
    case BatvStatus::untagged:
      return "untagged";
    case BatvStatus::valid:
      return "valid";
    case BatvStatus::expired:
      return "expired";
    case BatvStatus::bad_signature:
      return "bad_signature";
    case BatvStatus::malformed:
      return "malformed";
  }
  return "unknown";
}

bool batv_is_tagged(std::string_view address) {
  if (address.size() > kBatvMaxAddress || !starts_with_prefix(address)) return false;
  std::string_view rest = address.substr(kPrefix.size());
  if (rest.size() < kTagSize + 1) return false;
  for (size_t i = 0; i < 4; ++i) {
    if (!is_digit(rest[i])) return false;
  }
  for (size_t i = 4; i < kTagSize; ++i) {
    if (!is_hex(rest[i])) return false;
  }
  if (rest[kTagSize] != '=') return false;
  return is_plain_address(rest.substr(kTagSize + 1));
}

std::string batv_sign(std::string_view address, const std::vector<std::string>& keys, TimePoint now,
                      Duration max_age) {
  if (address.empty() || keys.empty() ||
      address.size() + kPrefix.size() + kTagSize + 1 > kBatvMaxAddress ||
      starts_with_prefix(address) || !is_plain_address(address)) {
    return std::string(address);
  }
  const char key_number = static_cast<char>('0' + (keys.size() - 1) % 10);
  char day[4];
  int stamp = day_stamp(day_number(now) + age_days(max_age));
  day[0] = static_cast<char>('0' + stamp / 100);
  day[1] = static_cast<char>('0' + stamp / 10 % 10);
  day[2] = static_cast<char>('0' + stamp % 10);
  day[3] = '\0';
  std::string hash = prvs_hash(keys[0], key_number, std::string_view(day, 3), address);
  if (hash.empty()) return std::string(address);
  std::string out;
  out.reserve(kPrefix.size() + kTagSize + 1 + address.size());
  out.append(kPrefix);
  out.push_back(key_number);
  out.append(day, 3);
  out.append(hash);
  out.push_back('=');
  out.append(address);
  return out;
}

BatvResult batv_verify(std::string_view address, const std::vector<std::string>& keys,
                       TimePoint now, Duration max_age) {
  BatvResult result;
  result.address = std::string(address);
  if (address.size() > kBatvMaxAddress) {
    result.status = BatvStatus::malformed;
    return result;
  }
  if (!starts_with_prefix(address)) return result;  // untagged
  if (!batv_is_tagged(address)) {
    result.status = BatvStatus::malformed;
    return result;
  }
  std::string_view tag = address.substr(kPrefix.size(), kTagSize);
  std::string_view bare = address.substr(kPrefix.size() + kTagSize + 1);
  result.address = std::string(bare);

  std::string want;
  for (char c : tag.substr(4)) want.push_back(lower(c));
  bool signed_by_us = false;
  for (const auto& key : keys) {
    std::string got = prvs_hash(key, tag[0], tag.substr(1, 3), bare);
    if (got.size() == want.size() && CRYPTO_memcmp(got.data(), want.data(), want.size()) == 0) {
      signed_by_us = true;  // no early exit: every key costs the same
    }
  }
  if (!signed_by_us) {
    result.status = BatvStatus::bad_signature;
    return result;
  }
  int tag_day = (tag[1] - '0') * 100 + (tag[2] - '0') * 10 + (tag[3] - '0');
  int ahead = day_stamp(static_cast<int64_t>(tag_day) - day_stamp(day_number(now)));
  result.status = ahead <= age_days(max_age) ? BatvStatus::valid : BatvStatus::expired;
  return result;
}

}  // namespace spamward
