// `spamward config check` and the -c FILE resolution every command shares (DESIGN §3.2).
#include <filesystem>
#include <iostream>

#include "checks/recipients_check.h"
#include "cli/commands.h"
#include "core/config.h"
#include "engine/greylist_gate.h"

namespace spamward::cli {

namespace {
constexpr const char* kSystemConfig = "/etc/spamward/spamward.toml";
constexpr const char* kSourceTreeConfig = "config/spamward.toml";
}  // namespace

std::string resolve_config_path(const std::string& given) {
  if (!given.empty()) return given;
  std::error_code ec;
  // exists() with an error_code never throws; an unreadable /etc/spamward counts as absent,
  // and the source-tree fallback then names itself in any error that follows.
  if (std::filesystem::exists(kSystemConfig, ec)) return kSystemConfig;
  return kSourceTreeConfig;
}

int cmd_config_check(const std::string& config_path) {
  try {
    Config config = load_config(config_path);
    load_greylist_compat(config);  // the compatibility list is part of the configuration
    load_recipient_list(config);   // and so is the list of valid recipients
  } catch (const ConfigError& e) {
    std::cerr << "spamward: config error: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "spamward: internal error while checking " << config_path << ": " << e.what()
              << "\n";
    return 1;
  }
  std::cout << config_path << ": ok\n";
  return 0;
}

}  // namespace spamward::cli
