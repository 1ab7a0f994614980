#include "cli/cli_support.h"

#include <iostream>

namespace spamward::cli {

std::optional<Config> load_config_reporting(const std::string& config_path) {
  try {
    return load_config(config_path);
  } catch (const ConfigError& e) {
    std::cerr << "spamward: config error: " << e.what() << "\n";
    return std::nullopt;
  }
}

std::unique_ptr<Store> open_configured_store(const Config& config, const Clock& clock) {
  if (config.store.backend != "lmdb") {
    throw StoreError("the \"" + config.store.backend +
                     "\" store backend is not available in this build of spamward");
  }
  LmdbOptions options;
  options.path = config.store.path;
  options.batch_interval = Duration(0);  // one-shot commands: nothing to gather
  return open_lmdb_store(options, clock);
}

std::unique_ptr<Store> open_store_reporting(const Config& config, const Clock& clock,
                                            std::string_view command) {
  try {
    return open_configured_store(config, clock);
  } catch (const StoreError& e) {
    std::cerr << "spamward: " << command << ": cannot open the store: " << e.what() << "\n";
    return nullptr;
  }
}

}  // namespace spamward::cli
