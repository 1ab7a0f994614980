// What the one-shot subcommands share: loading the config with the one-line error, and
// opening the configured store.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "core/clock.h"
#include "core/config.h"
#include "state/store.h"

namespace spamward::cli {

// Loads the config; nullopt after printing "spamward: config error: FILE:LINE: ..." to stderr
// (the caller exits 2).
std::optional<Config> load_config_reporting(const std::string& config_path);

// Opens the store named by [store] for a one-shot command (writes are committed at once, not
// gathered). The store may be in use by a running daemon: LMDB serialises the writers.
// Throws StoreError.
std::unique_ptr<Store> open_configured_store(const Config& config, const Clock& clock);

// The same, but null after printing "spamward: COMMAND: cannot open the store: WHY" (the
// caller exits 1).
std::unique_ptr<Store> open_store_reporting(const Config& config, const Clock& clock,
                                            std::string_view command);

}  // namespace spamward::cli
