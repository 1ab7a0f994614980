// `spamward learn-imap`: teaches the Bayes classifier from the IMAP folders of every [[imap]]
// account (bayes/imap_source.h does the IMAP part; docs/learning-imap.md). Prints one line
// per folder, "USER FOLDER: N new", then "total: N new". A folder or account that cannot be
// read is reported on stderr in one line and the others go on. Exit 0 when everything was
// read, 1 when something was not (or the store failed), 2 for a bad config or no [[imap]].
#include <iostream>

#include "bayes/bayes.h"
#include "bayes/imap_source.h"
#include "cli/cli_support.h"
#include "cli/commands.h"
#include "mail/message.h"

namespace spamward::cli {

int cmd_learn_imap(const std::string& config_path) {
  auto config = load_config_reporting(config_path);
  if (!config) return 2;
  if (config->imap.empty()) {
    std::cerr << "spamward: learn-imap: " << config_path << " has no [[imap]] account\n";
    return 2;
  }
  SystemClock clock;
  std::unique_ptr<Store> store = open_store_reporting(*config, clock, "learn-imap");
  if (!store) return 1;
  BayesOptions bayes_opts = bayes_options(config->bayes);
  bayes_opts.online_steps = false;  // the model is rebuilt once at the end
  Bayes bayes(*store, clock, bayes_opts);
  StoreImapProgress progress(*store);
  ImapOptions options;
  options.max_message_bytes = static_cast<size_t>(config->limits.max_message_bytes);
  MessageLimits limits;
  limits.max_bytes = options.max_message_bytes;

  // Learned into the global database: an IMAP folder is one user's view, not one domain's.
  ImapMessageSink sink = [&](const std::string& raw, bool is_spam, const std::string&, uint32_t) {
    Message message = parse_message(raw, limits);
    LearnOutcome outcome = bayes.learn(message, is_spam ? MessageClass::spam : MessageClass::ham);
    return outcome == LearnOutcome::learned || outcome == LearnOutcome::moved;
  };

  bool failed = false;
  uint64_t total = 0;
  for (const auto& account : config->imap) {
    std::vector<ImapFolderReport> reports;
    try {
      reports = learn_imap_account(account, progress, sink, options);
    } catch (const std::exception& e) {  // ImapError, StoreError: this account stops here
      std::cerr << "spamward: learn-imap: " << e.what() << "\n";
      failed = true;
    }
    for (const auto& r : reports) {
      if (!r.error.empty()) {
        std::cerr << "spamward: learn-imap: " << account.user << " " << r.folder << ": " << r.error
                  << "\n";
        failed = true;
        continue;
      }
      std::cout << account.user << " " << r.folder << ": " << r.fetched << " new";
      if (r.restarted) std::cout << " (UIDVALIDITY changed: read again from the start)";
      std::cout << "\n";
      total += r.fetched;
    }
    try {  // what this account taught, and its progress, before the next one
      bayes.commit();
      store->flush();
    } catch (const StoreError& e) {
      std::cerr << "spamward: learn-imap: cannot save what was learned: " << e.what() << "\n";
      return 1;
    }
  }
  try {
    bayes.expire();  // rare, stale tokens; the size bound
    if (total > 0 || !bayes.model_info().present) bayes.rebuild();  // docs/bayes.md
    store->flush();
  } catch (const StoreError& e) {
    std::cerr << "spamward: learn-imap: expiring old tokens or rebuilding the model failed: "
              << e.what() << "\n";
    failed = true;
  }
  std::cout << "total: " << total << " new\n";
  return failed ? 1 : 0;
}

}  // namespace spamward::cli
