#include "engine/transaction.h"

#include <algorithm>

namespace spamward {

std::string_view to_string(Stage s) {
  switch (s) {
    case Stage::connect:
      return "connect";
    case Stage::helo:
      return "helo";
    case Stage::mail:
      return "mail";
    case Stage::rcpt:
      return "rcpt";
    case Stage::data:
      return "data";
    case Stage::eom:
      return "eom";
  }
  return "?";
}

std::string domain_of(std::string_view address) {
  auto at = address.rfind('@');
  if (at == std::string_view::npos) return "";
  return to_lower(address.substr(at + 1));
}

}  // namespace spamward
