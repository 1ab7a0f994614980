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

// Who opens the store: the daemon gathers writes into batches and starts even when Redis is
// down (its store-backed checks fail open, DESIGN §1); a one-shot command commits each write
// at once and fails at once when the store cannot be reached.
enum class StoreUser { daemon, command };

// The one place that turns [store] into a Store (LMDB or Redis). Throws StoreError.
std::unique_ptr<Store> open_store(const StoreConfig& config, const Clock& clock, StoreUser user);

// Opens the store named by [store] for a one-shot command (writes are committed at once, not
// gathered). The store may be in use by a running daemon: LMDB serialises the writers, Redis
// runs each batch as one transaction.
// Throws StoreError.
std::unique_ptr<Store> open_configured_store(const Config& config, const Clock& clock);

// The same, but null after printing "spamward: COMMAND: cannot open the store: WHY" (the
// caller exits 1).
std::unique_ptr<Store> open_store_reporting(const Config& config, const Clock& clock,
                                            std::string_view command);

}  // namespace spamward::cli
