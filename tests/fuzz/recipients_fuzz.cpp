// libFuzzer target for recipient validation (issue 7): the recipient list parser
// (state/recipient_list.h) with lookups against what it parsed, and the address-guessing
// tracker (state/address_guessing.h) reading whatever bytes its store table holds.
//
// Input: byte 0 picks the part (mod 3).
// - 2: the rest is a bounce body; message_ids_in_body() (state/sent_messages.h) must return
//   at most 8 distinct IDs, each normalised (starting with '<', ending with '>').
// - 0: the rest is split at the first NUL into a list text and a recipient; the list is
//   parsed (errors are fine, crashes are not) and, when it parsed, the recipient and a few
//   variations of it are classified. Properties: postmaster@ at any listed domain is valid;
//   a typo_of answer is only given for unknown recipients and names a domain of the list.
// - 1: records [slot u8] [length u8] [bytes] put garbage under the "guess" table keys of a
//   few clients, networks and a domain; then note_unknown, note_valid and flagged are driven
//   for those clients. Nothing may throw (the memory store never fails), and after
//   `threshold` distinct unknown recipients from one fresh client, it is guessing.
#include <spdlog/spdlog.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "state/address_guessing.h"
#include "state/recipient_list.h"
#include "state/reputation.h"
#include "state/sent_messages.h"
#include "state/store.h"

namespace {

using namespace spamward;

void check(bool ok) {
  if (!ok) __builtin_trap();
}

void fuzz_list(std::string_view in) {
  size_t nul = in.find('\0');
  std::string_view text = in.substr(0, nul);
  std::string recipient(nul == std::string_view::npos ? "" : in.substr(nul + 1));
  RecipientSet set;
  try {
    set = RecipientSet::parse(text);
  } catch (const RecipientListError& e) {
    check(e.line() >= 1);
    return;
  }
  for (const std::string& r : {recipient, recipient + "@example.org", "x" + recipient,
                               std::string("postmaster@") + recipient}) {
    RecipientLookup lookup = set.classify(r);
    if (!lookup.typo_of.empty()) {
      check(lookup.status == RecipientStatus::unknown);
      size_t at = lookup.typo_of.rfind('@');
      check(at != std::string::npos && set.is_our_domain(lookup.typo_of.substr(at + 1)));
    }
  }
  size_t at = recipient.rfind('@');
  if (at != std::string::npos && set.is_our_domain(recipient.substr(at + 1)))
    check(set.classify("postmaster" + recipient.substr(at)).status == RecipientStatus::valid);
}

void fuzz_guessing(std::string_view in) {
  FakeClock clock;
  auto store = make_memory_store(clock);
  Reputation reputation(*store, clock, ReputationConfig{}, std::chrono::milliseconds(0));
  AddressGuessing guessing(*store, clock, AddressGuessingOptions{}, &reputation);
  static const char* const kKeys[] = {"a|192.0.2.1",       "a|192.0.2.2",   "n|192.0.2.0/24",
                                      "d|example.org",     "a|2001:db8::1", "n|2001:db8::/64",
                                      "n|198.51.100.0/24", "a|198.51.100.7"};
  size_t pos = 0;
  while (pos + 2 <= in.size()) {
    uint8_t slot = static_cast<uint8_t>(in[pos]);
    size_t length = static_cast<uint8_t>(in[pos + 1]);
    pos += 2;
    std::string_view value = in.substr(pos, length);
    pos += value.size();
    store->put("guess", kKeys[slot % 8], value);
  }
  auto a1 = *IpAddress::parse("192.0.2.1");
  auto a2 = *IpAddress::parse("2001:db8::1");
  guessing.note_unknown(a1, "ceo@example.org");
  guessing.note_valid(a2);
  guessing.note_unknown(a2, "info@example.org");
  (void)guessing.flagged(a1);
  // A client nobody wrote garbage for behaves by the rules.
  auto fresh = *IpAddress::parse("203.0.113.5");
  GuessVerdict v;
  for (const char* r : {"a@other.example", "b@other.example", "c@other.example"})
    v = guessing.note_unknown(fresh, r);
  check(v.guessing);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static bool quiet = [] {
    spdlog::set_level(spdlog::level::off);
    return true;
  }();
  (void)quiet;
  if (size == 0) return 0;
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] % 3 == 0) {
    fuzz_list(in);
  } else if (data[0] % 3 == 1) {
    fuzz_guessing(in);
  } else {
    auto ids = message_ids_in_body(in);
    check(ids.size() <= 8);
    for (const auto& id : ids) check(id.size() >= 3 && id.front() == '<' && id.back() == '>');
  }
  return 0;
}
