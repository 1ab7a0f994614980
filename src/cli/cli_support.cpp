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

std::unique_ptr<Store> open_store(const StoreConfig& config, const Clock& clock, StoreUser user) {
  // One-shot commands have nothing to gather: each write commits at once.
  const bool command = user == StoreUser::command;
  if (config.backend == "redis") {
    RedisOptions options;
    options.url = config.url;
    if (command) options.batch_interval = Duration(0);
    options.require_connection = command;
    return open_redis_store(options, clock);
  }
  if (config.backend != "lmdb") {
    throw StoreError("unknown store backend \"" + config.backend + "\"");
  }
  LmdbOptions options;
  options.path = config.path;
  if (command) options.batch_interval = Duration(0);
  return open_lmdb_store(options, clock);
}

std::unique_ptr<Store> open_configured_store(const Config& config, const Clock& clock) {
  return open_store(config.store, clock, StoreUser::command);
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
