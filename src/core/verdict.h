// Verdict: the Engine's answer for one transaction at one stage. Protocol servers translate
// it to wire replies (DESIGN §3.5) and never change it.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/symbol.h"

namespace spamward {

// Ordered by severity: a cap "at most tempfail" is a std::min.
enum class Action { accept = 0, tag = 1, greylist = 2, tempfail = 3, reject = 4 };

std::string_view to_string(Action a);

// Why a refusal stands on its own (DESIGN §1), or none for a score-based action.
enum class Standalone { none, denylist, ban, unknown_recipient, gtube, backscatter };

struct Verdict {
  Action action = Action::accept;
  double score = 0.0;
  std::vector<Symbol> symbols;
  std::vector<Family> families;  // families that each added >= 1.0 (the evidence for reject)
  Standalone standalone = Standalone::none;
  bool permanent_ban = false;       // a ban past `permanent_after`: reject instead of tempfail
  bool trusted = false;             // client in [network] trusted: nothing was checked
  bool dry_run = false;             // [actions] dry_run: `action` is what would have happened
  Action applied = Action::accept;  // what the protocol must do (== action unless dry_run)
  std::vector<std::string> failed_checks;  // checks that failed open
  std::string reason;                      // one human-readable sentence
  // For the protocol layer: the enhanced status text after the code, e.g.
  // "Greylisted, please retry in 5 minutes". Empty: the server's default text.
  std::string reply_text;
};

}  // namespace spamward
