// `spamward batv sign ADDRESS [-c FILE]` (DESIGN §3.2): prints the BATV-tagged form of an
// address, signed with the first of [batv] keys as the milter would sign it now
// (auth/batv.h). For tests and for admins who check their Postfix set-up by hand.
// Exit 0 with the tagged address on stdout; 2 with one line on stderr for a bad config, no
// [batv] keys, or an ADDRESS that is not local@domain. An address that is already tagged is
// printed as it is.
#include <iostream>

#include "auth/batv.h"
#include "cli/cli_support.h"
#include "cli/commands.h"
#include "core/strings.h"

namespace spamward::cli {
namespace {

// local@domain: both parts non-empty, one '@' splitting them (the last), at most 512 bytes,
// and only printable ASCII without spaces, brackets or commas.
bool is_address(std::string_view a) {
  if (a.empty() || a.size() > kBatvMaxAddress) return false;
  for (char c : a) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f || c == '<' || c == '>' || c == ',') return false;
  }
  size_t at = a.rfind('@');
  return at != std::string_view::npos && at > 0 && at + 1 < a.size() &&
         a.substr(at + 1).find('@') == std::string_view::npos;
}

}  // namespace

int cmd_batv_sign(const std::string& config_path, const std::string& address) {
  std::optional<Config> config = load_config_reporting(config_path);
  if (!config) return 2;
  if (config->batv.keys.empty()) {
    std::cerr << "spamward: batv sign: no [batv] keys in " << config_path << "\n";
    return 2;
  }
  if (!is_address(address)) {
    std::cerr << "spamward: batv sign: not an address (local@domain): " << printable(address, 80)
              << "\n";
    return 2;
  }
  SystemClock clock;
  std::cout << batv_sign(address, config->batv.keys, clock.now(), config->batv.max_age) << "\n";
  return 0;
}

}  // namespace spamward::cli
