// libFuzzer target for normalize_sender (mail/address.h), the sender part of greylist keys.
//
// Input: an envelope sender as the MTA hands it over (any bytes). Besides the sanitizers, it
// checks the properties the header promises:
// - never throws; never empty; an empty sender (with or without brackets) gives "<>";
// - no upper-case ASCII in the result, and upper-casing the input changes nothing;
// - one pair of angle brackets around the sender changes nothing;
// - the result is never much longer than the input (nothing is added but '@' or "<>"), and
//   has no more '@' than the input.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "mail/address.h"

namespace {

void check(bool ok) {
  if (!ok) __builtin_trap();
}

std::string normalize(std::string_view sender) {
  try {
    return spamward::normalize_sender(sender);
  } catch (...) {
    check(false);  // documented as never throwing
  }
  return {};
}

std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  }
  return out;
}

size_t count(std::string_view s, char c) {
  size_t n = 0;
  for (char x : s) n += x == c;
  return n;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view sender(reinterpret_cast<const char*>(data), size);
  const std::string out = normalize(sender);

  check(!out.empty());
  if (sender.empty() || sender == "<>") check(out == "<>");
  check(out.size() <= sender.size() + 2);
  check(count(out, '@') <= count(sender, '@') + 1);
  for (char c : out) check(!(c >= 'A' && c <= 'Z'));

  check(normalize(upper(sender)) == out);
  const bool bracketed = sender.size() >= 2 && sender.front() == '<' && sender.back() == '>';
  if (!bracketed) check(normalize("<" + std::string(sender) + ">") == out);
  return 0;
}
