// imap_fetch_driver: a small stand-in for `spamward learn-imap`, used by
// tests/integration/test_imap_source.py until that command exists. It runs learn_imap_account
// (bayes/imap_source.h) for one account with the progress kept in an LMDB store
// (StoreImapProgress, table "imap_progress"), and prints, tab-separated:
//
//   MSG <spam|ham> <folder> <uid> <size> <sha256 of the bytes fetched>   per message, in order
//   FOLDER <folder> <new> <uidvalidity> <last_uid> <restarted 0|1>       per folder
//   ERROR <folder> <why>                                                 per refused folder
//   <user> <folder>: <N> new                                             per folder (DESIGN §3.2)
//   total: <N> new
//
// Exit 0 when every folder was learned, 1 on a runtime failure (one line on stderr) or a
// refused folder, 2 on bad usage.
//
//   imap_fetch_driver --url URL --user USER --password-file FILE [--ca-file FILE]
//                     [--spam FOLDER]... [--ham FOLDER]... --state DIR [--max-bytes N]
//                     [--verbose]
//
// Build by hand (until CMake has a target for it), from the source tree, as one line:
//   g++ -std=c++20 -Isrc -DSPDLOG_FMT_EXTERNAL tests/integration/imap_fetch_driver.cpp
//     src/bayes/imap_source.cpp src/state/lmdb_store.cpp src/core/digest.cpp
//     src/core/duration.cpp -lcurl -llmdb -lspdlog -lfmt -lcrypto -pthread -o imap_fetch_driver
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <string>
#include <string_view>

#include "bayes/imap_source.h"
#include "core/clock.h"
#include "core/digest.h"
#include "state/store.h"

using namespace spamward;

namespace {

[[noreturn]] void usage(const std::string& why) {
  std::cerr << "imap_fetch_driver: " << why
            << "\nusage: imap_fetch_driver --url URL --user USER --password-file FILE "
               "[--ca-file FILE] [--spam FOLDER]... [--ham FOLDER]... --state DIR "
               "[--max-bytes N] [--verbose]\n";
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  ImapAccount account;
  ImapOptions options;
  std::string state_dir;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(std::string(arg) + " needs a value");
      return argv[++i];
    };
    if (arg == "--url") {
      account.url = value();
    } else if (arg == "--user") {
      account.user = value();
    } else if (arg == "--password-file") {
      account.password_file = value();
    } else if (arg == "--ca-file") {
      account.ca_file = value();
    } else if (arg == "--spam") {
      account.spam_folders.push_back(value());
    } else if (arg == "--ham") {
      account.ham_folders.push_back(value());
    } else if (arg == "--state") {
      state_dir = value();
    } else if (arg == "--max-bytes") {
      options.max_message_bytes = std::stoul(value());
    } else if (arg == "--verbose") {
      options.verbose = true;
    } else {
      usage("unknown argument " + std::string(arg));
    }
  }
  if (account.url.empty() || account.user.empty() || state_dir.empty())
    usage("--url, --user and --state are required");

  try {
    SystemClock clock;
    LmdbOptions lo;
    lo.path = state_dir;
    lo.map_size = int64_t{1} << 26;
    std::unique_ptr<Store> store = open_lmdb_store(lo, clock);
    StoreImapProgress progress(*store);
    auto sink = [](const std::string& raw, bool is_spam, const std::string& folder, uint32_t uid) {
      std::cout << "MSG\t" << (is_spam ? "spam" : "ham") << "\t" << folder << "\t" << uid << "\t"
                << raw.size() << "\t" << sha256_hex(raw) << "\n";
      return true;
    };
    std::vector<ImapFolderReport> reports;
    try {
      reports = learn_imap_account(account, progress, sink, options);
    } catch (...) {
      store->flush();  // keep the progress made before the failure
      throw;
    }
    store->flush();
    uint64_t total = 0;
    bool refused = false;
    for (const auto& r : reports) {
      if (!r.error.empty()) {
        std::cout << "ERROR\t" << r.folder << "\t" << r.error << "\n";
        refused = true;
        continue;
      }
      std::cout << "FOLDER\t" << r.folder << "\t" << r.fetched << "\t" << r.progress.uidvalidity
                << "\t" << r.progress.last_uid << "\t" << (r.restarted ? 1 : 0) << "\n";
    }
    for (const auto& r : reports) {
      if (!r.error.empty()) continue;
      std::cout << account.user << " " << r.folder << ": " << r.fetched << " new\n";
      total += r.fetched;
    }
    std::cout << "total: " << total << " new\n";
    std::cout.flush();
    return refused ? 1 : 0;
  } catch (const std::exception& e) {
    std::cout.flush();
    std::cerr << "imap_fetch_driver: " << e.what() << "\n";
    return 1;
  }
}
