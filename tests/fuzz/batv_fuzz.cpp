// libFuzzer target for batv_verify (auth/batv.h): a recipient address from the network.
//
// Input: the first byte picks the clock (a day of a 1000-day cycle) and how many keys there
// are; the rest is the address (any bytes). Besides the sanitizers, it checks the contract:
// - never throws;
// - malformed, exactly when over 512 bytes or prvs=-prefixed without the shape; untagged and
//   malformed give the input back as the address;
// - a tagged status agrees with batv_is_tagged, and the address is the input without
//   its 16-byte "prvs=KDDDSSSSSS=" prefix;
// - what batv_sign makes of a plain address verifies as valid and strips back to it.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "auth/batv.h"

namespace {

void check(bool ok) {
  if (!ok) __builtin_trap();
}

bool has_prvs_prefix(std::string_view s) {
  if (s.size() < 5) return false;
  for (size_t i = 0; i < 5; ++i) {
    char c = s[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != "prvs="[i]) return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace spamward;
  if (size == 0) return 0;
  const uint8_t control = data[0];
  std::string_view address(reinterpret_cast<const char*>(data + 1), size - 1);
  const std::vector<std::string> all_keys = {"fuzz-batv-key-number-2", "fuzz-batv-key-number-1",
                                             "fuzz-batv-key-number-0"};
  const std::vector<std::string> keys(all_keys.begin(), all_keys.begin() + 1 + control % 3);
  const TimePoint now = from_unix_ms((int64_t{19000} + control * 4) * 86'400'000);
  const Duration max_age = std::chrono::hours(24 * (1 + control % 10));

  BatvResult r;
  try {
    r = batv_verify(address, keys, now, max_age);
  } catch (...) {
    check(false);
  }
  const bool tagged = batv_is_tagged(address);
  if (address.size() > kBatvMaxAddress) {
    check(r.status == BatvStatus::malformed && !tagged);
  } else if (!has_prvs_prefix(address)) {
    check(r.status == BatvStatus::untagged && !tagged);
  } else {
    check(tagged == (r.status != BatvStatus::malformed));
  }
  if (r.status == BatvStatus::untagged || r.status == BatvStatus::malformed) {
    check(r.address == address);
  } else {
    check(address.size() > 16 && r.address == address.substr(16));
  }

  // Round trip: whatever plain address the input holds signs and verifies.
  if (r.status == BatvStatus::untagged && !address.empty()) {
    std::string signed_address = batv_sign(address, keys, now, max_age);
    if (signed_address != address) {
      check(batv_is_tagged(signed_address));
      BatvResult back = batv_verify(signed_address, keys, now, max_age);
      check(back.status == BatvStatus::valid && back.address == address);
    }
  }
  return 0;
}
